"""StreamDecoder: split streams, garbage, resync, bounded memory, never raises; a short fuzz."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.protocol import (
    MAX_FRAME_BYTES,
    Ack,
    Boot,
    CrcError,
    Event,
    FrameError,
    Ping,
    ProtocolError,
    StreamDecoder,
    encode,
    max_encoded_bytes,
)
from tests.protocol import strategies as S
from tests.protocol.fuzz import fuzz_run


@settings(max_examples=200)
@given(st.lists(S.messages, min_size=1, max_size=12), st.data())
def test_stream_round_trip_in_arbitrary_pieces(messages, data):
    stream = b"".join(encode(m, i) for i, m in enumerate(messages))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = StreamDecoder()
    got = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += decoder.feed(stream[a:b])
    assert got == [(m, i) for i, m in enumerate(messages)]
    assert decoder.stats.frames == len(messages)
    assert decoder.stats.bad_frames == 0 and decoder.stats.bytes_discarded == 0
    assert decoder.buffered_bytes == 0


@settings(max_examples=500)
@given(st.lists(st.binary(max_size=2000), max_size=8))
def test_arbitrary_bytes_never_raise_and_memory_stays_bounded(chunks):
    decoder = StreamDecoder()
    for chunk in chunks:
        for message, seq in decoder.feed(chunk):
            assert 0 <= seq <= 0xFFFF
            assert decoder.stats.frames > 0
            del message
        assert decoder.buffered_bytes <= decoder.max_buffer_bytes
        assert len(decoder.errors) <= 32
    total = sum(len(c) for c in chunks)
    assert decoder.stats.bytes_discarded + decoder.buffered_bytes <= total


@settings(max_examples=200)
@given(st.binary(max_size=600), S.messages, S.u16)
def test_resync_after_garbage(garbage, message, seq):
    # Whatever garbage came before, the frame after the next 0x00 decodes.
    decoder = StreamDecoder()
    got = decoder.feed(garbage + b"\x00" + encode(message, seq))
    assert got[-1] == (message, seq)


def test_feed_takes_any_bytes_like():
    frame = encode(Ping(1), 1)
    decoder = StreamDecoder()
    assert decoder.feed(bytearray(frame[:3])) == []
    assert decoder.feed(memoryview(frame)[3:]) == [(Ping(1), 1)]


def test_garbage_is_counted_by_kind():
    decoder = StreamDecoder()
    good = encode(Ack(1), 1)
    corrupt = bytearray(good)
    corrupt[3] ^= 0x40
    stream = b"\x07\x01\x00" + bytes(corrupt) + good + b"\x00\x00" + b"\x55" * 900 + b"\x00"
    got = decoder.feed(stream + encode(Ack(2), 2))
    assert got == [(Ack(1), 1), (Ack(2), 2)]
    s = decoder.stats
    assert (s.frames, s.framing_errors, s.crc_errors, s.oversize) == (2, 1, 1, 1)
    assert s.bytes_discarded == 3 + len(corrupt) + 901
    assert [type(e) for e in decoder.errors] == [FrameError, CrcError, FrameError]
    assert "no 0x00 delimiter within 515 bytes" in str(decoder.errors[-1])


def test_oversize_run_fed_byte_by_byte_is_skipped_with_bounded_buffer():
    decoder = StreamDecoder()
    peak = 0
    for byte in b"\x42" * 5000:
        decoder.feed(bytes([byte]))
        peak = max(peak, decoder.buffered_bytes)
    assert peak <= max_encoded_bytes(MAX_FRAME_BYTES) == 515
    assert decoder.feed(b"\x00" + encode(Ping(9), 3)) == [(Ping(9), 3)]
    assert decoder.stats.oversize == 1
    assert decoder.stats.bytes_discarded == 5001


def test_seq_gaps_and_boot_restart():
    decoder = StreamDecoder()
    seqs = [65534, 65535, 0, 3, 1]
    frames = [encode(Ack(0), s) for s in seqs] + [encode(Boot("reset", 5), 0), encode(Ack(0), 1)]
    decoder.feed(b"".join(frames))
    # 65535 -> 0 wraps fine; 0 -> 3 skips 2; 3 -> 1 goes back (a gap, nothing counted as
    # missing); BOOT restarts the count without a gap.
    assert decoder.stats.seq_gaps == 2
    assert decoder.stats.seq_missing == 2
    assert decoder.last_seq == 1


def test_small_max_frame_rejects_big_frames():
    decoder = StreamDecoder(max_frame_bytes=32)
    big = encode(Event("asr_final", 1, {"text": "x" * 60}), 1)
    small = encode(Ack(1), 2)
    assert decoder.feed(big + small) == [(Ack(1), 2)]
    assert decoder.stats.oversize + decoder.stats.framing_errors == 1
    with pytest.raises(ValueError, match="max_frame_bytes must be >= 6"):
        StreamDecoder(max_frame_bytes=3)


def test_errors_kept_are_bounded_and_protocol_errors():
    decoder = StreamDecoder()
    decoder.feed(b"\x09\x00" * 1000)
    assert decoder.stats.framing_errors == 1000
    assert len(decoder.errors) == 32
    assert all(isinstance(e, ProtocolError) for e in decoder.errors)


def test_fuzz_mutated_streams_lose_only_touched_frames():
    """1% of bytes flipped/inserted/deleted in 3,000 frames: nothing bad accepted."""
    for seed in (1, 2):
        result = fuzz_run(n_frames=3000, corruption_rate=0.01, seed=seed)
        assert result.bad_accepted == 0, result
        assert result.lost_untouched == 0, result
        assert 0 < result.frames_lost <= result.frames_touched, result
        assert result.frames_received == result.frames - result.frames_lost
        assert result.max_buffered_bytes <= 515


def test_fuzz_random_streams_with_embedded_frames():
    rng = random.Random(7)
    decoder = StreamDecoder()
    want = []
    stream = bytearray()
    for i in range(400):
        stream += rng.randbytes(rng.randrange(0, 300))
        message = Event("state", i, {"state": "speaking", "i": i})
        stream += b"\x00" + encode(message, i)
        want.append((message, i))
    got = []
    for start in range(0, len(stream), 777):
        got += decoder.feed(bytes(stream[start : start + 777]))
    # Every real frame arrives; random garbage virtually never passes COBS+CRC+parse.
    assert [g for g in got if g in want] == want
    assert len(got) == len(want)
