"""encode/decode: golden bytes, round trips of every message type, and clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.agent.events import EVENT_NAMES
from device.protocol import (
    EVENT_TYPES,
    MAX_FRAME_BYTES,
    Ack,
    Boot,
    Command,
    CrcError,
    Event,
    FrameError,
    Hello,
    MessageError,
    MsgType,
    Nack,
    Ping,
    ProtocolError,
    cobs_decode,
    cobs_encode,
    crc16,
    decode,
    encode,
    fit_event,
)
from tests.protocol import strategies as S

ROOT = Path(__file__).resolve().parents[2]


def test_crc16_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (b"", b"\x01"),
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
        (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255)) + b"\x01"),
        (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
        (bytes(range(0, 256)), b"\x01\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    ],
)
def test_cobs_wikipedia_vectors(raw, encoded):
    assert cobs_encode(raw) == encoded
    assert cobs_decode(encoded) == raw


@given(st.binary(max_size=1200))
def test_cobs_round_trip_and_no_zero(raw):
    enc = cobs_encode(raw)
    assert 0 not in enc
    assert len(enc) <= len(raw) + len(raw) // 254 + 1
    assert cobs_decode(enc) == raw


def test_golden_ping_frame():
    # header 01 02 0500, payload u64 LE, crc LE; COBS turns the zeros into block codes.
    frame = encode(Ping(0x0102030405060708), 5)
    raw = bytes([1, 2, 5, 0, 8, 7, 6, 5, 4, 3, 2, 1])
    raw += crc16(raw).to_bytes(2, "little")
    assert frame == cobs_encode(raw) + b"\x00"
    assert frame[-1] == 0 and 0 not in frame[:-1]
    assert decode(frame) == (Ping(0x0102030405060708), 5)
    assert decode(frame[:-1]) == (Ping(0x0102030405060708), 5)


def test_event_field_encoding_picks_i32_then_i64():
    small = encode(Event("state", 1, {"v": 2**31 - 1}), 0)
    big = encode(Event("state", 1, {"v": 2**31}), 0)
    assert len(big) == len(small) + 4
    assert decode(big)[0].fields["v"] == 2**31
    assert decode(small)[0].fields == {"v": 2**31 - 1}
    flag = decode(encode(Event("state", 1, {"b": True, "i": 1}), 0))[0].fields
    assert flag["b"] is True and type(flag["i"]) is int


@settings(max_examples=400)
@given(S.messages, S.u16)
def test_round_trip_every_message_type(message, seq):
    frame = encode(message, seq)
    assert frame.endswith(b"\x00") and 0 not in frame[:-1]
    assert decode(frame) == (message, seq)


@pytest.mark.parametrize("message", S.SAMPLE_MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip_samples(message):
    assert decode(encode(message, 9)) == (message, 9)


def test_event_types_cover_the_agents_vocabulary():
    assert set(EVENT_TYPES) == set(EVENT_NAMES)
    assert len(set(EVENT_TYPES.values())) == len(EVENT_TYPES)
    assert all(1 <= v <= 127 for v in EVENT_TYPES.values())


def test_protocol_doc_lists_every_event_with_its_id():
    doc = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    rows = dict(
        (name, int(i)) for i, name in re.findall(r"^\| (\d+) \| ([a-z_]+) \|", doc, re.MULTILINE)
    )
    for name, type_id in EVENT_TYPES.items():
        assert rows.get(name) == type_id, f"docs/protocol.md: event {name} should be id {type_id}"
    for kind in MsgType:
        assert f"| {kind.value} | {kind.name} |" in doc


def test_unknown_event_id_is_kept_by_number():
    message = Event("event_200", 5, {"x": 1})
    assert decode(encode(message, 1))[0] == message
    with pytest.raises(MessageError, match="unknown event name 'bogus'"):
        encode(Event("bogus", 0), 0)
    with pytest.raises(MessageError, match="unknown event name 'event_3'"):
        encode(Event("event_3", 0), 0)  # 3 has a name: vad_speech_start


def test_generic_and_named_commands():
    assert decode(encode(Command("blink", {"n": "3"}), 4))[0] == Command("blink", {"n": "3"})
    assert decode(encode(Command("command_42"), 4))[0] == Command("command_42")
    # A known name travels as its id: 2 bytes for "reset" with no args.
    assert len(encode(Command("reset"), 0)) < len(encode(Command("blink"), 0))


@pytest.mark.parametrize(
    ("message", "seq", "match"),
    [
        (Ping(-1), 0, r"PING t_host_us: -1 is outside 0\.\.18446744073709551615"),
        (Ping(1), 70000, r"seq: 70000 is outside 0\.\.65535"),
        (Event("state", 0, {"s": "x" * 256}), 0, r"field 's': 256 UTF-8 bytes, at most 255"),
        (Event("state", 0, {"s": [1]}), 0, r"expected int, float, str, bool or None, got list"),
        (Event("state", 0, {"s": 2**64}), 0, r"does not fit 64 bits"),
        (Event("state", 0, {"a": "\ud800"}), 0, r"not encodable as UTF-8"),
        (Nack(1, 300, ""), 0, r"NACK code: 300 is outside 0\.\.255"),
        (Hello("fw", "1", 1, (), -5), 0, r"HELLO clock_hz"),
        ("hello", 0, r"not a protocol message: str"),
    ],
)
def test_encode_errors_name_the_field(message, seq, match):
    with pytest.raises(MessageError, match=match):
        encode(message, seq)


def test_oversize_event_is_refused_and_fit_event_cuts_it():
    fields = {f"t{i}": "é" * 120 for i in range(4)}  # 4 x 240 bytes of text
    event = Event("llm_done", 10, fields)
    with pytest.raises(MessageError, match=r"EVENT frame would be \d+ bytes, the maximum is 512"):
        encode(event, 0)
    fitted = fit_event(event)
    frame = encode(fitted, 0)
    assert len(frame) <= MAX_FRAME_BYTES + MAX_FRAME_BYTES // 254 + 2
    assert fitted.fields["truncated"] is True
    assert all(fields[k].startswith(v) for k, v in fitted.fields.items() if k != "truncated")
    assert sum(len(v) for k, v in fitted.fields.items() if k != "truncated") > 150
    short = Event("asr_final", 1, {"text": "fits"})
    assert fit_event(short) is short
    long_one = fit_event(Event("asr_final", 1, {"text": "a" * 1000}))
    assert long_one.fields["text"] == "a" * 255 and long_one.fields["truncated"] is True


def test_decode_errors_are_specific():
    frame = bytearray(encode(Ack(3), 1))
    with pytest.raises(FrameError, match="empty frame"):
        decode(b"\x00")
    with pytest.raises(FrameError, match="COBS"):
        decode(b"\x05\x01")
    bad_crc = cobs_decode(bytes(frame[:-1]))
    bad_crc = bad_crc[:-1] + bytes([bad_crc[-1] ^ 1])
    with pytest.raises(CrcError, match="CRC mismatch"):
        decode(cobs_encode(bad_crc))
    v2 = bytes([2]) + cobs_decode(bytes(frame[:-1]))[1:-2]
    with pytest.raises(FrameError, match="protocol version 2 in frame header"):
        decode(cobs_encode(v2 + crc16(v2).to_bytes(2, "little")))
    trailing = bytes([1, MsgType.ACK, 0, 0, 3, 0, 99])
    with pytest.raises(MessageError, match="ACK: 1 unparsed bytes"):
        decode(cobs_encode(trailing + crc16(trailing).to_bytes(2, "little")))
    unknown = bytes([1, 77, 0, 0])
    with pytest.raises(MessageError, match="unknown message type 77"):
        decode(cobs_encode(unknown + crc16(unknown).to_bytes(2, "little")))
    with pytest.raises(FrameError, match="expected bytes, got str"):
        decode("frame")  # type: ignore[arg-type]


@settings(max_examples=1000)
@given(st.binary(max_size=700))
def test_decode_of_arbitrary_bytes_raises_only_protocol_errors(data):
    try:
        message, seq = decode(data)
    except ProtocolError:
        return
    assert 0 <= seq <= 0xFFFF
    assert decode(encode(message, seq)) == (message, seq)


@settings(max_examples=300)
@given(S.messages, S.u16, st.data())
def test_any_single_bit_flip_is_rejected(message, seq, data):
    raw = bytearray(cobs_decode(encode(message, seq)[:-1]))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ProtocolError):
        decode(cobs_encode(bytes(raw)))


def test_boot_and_hello_fields():
    hello = Hello("fw", "2.1", 1, ("events", "ping"), 32768)
    assert decode(encode(hello, 0))[0] == hello
    assert decode(encode(Boot("watchdog", 17), 0))[0] == Boot("watchdog", 17)


def test_numpy_numbers_travel_by_value():
    np = pytest.importorskip("numpy")
    fields = {"depth": np.int64(5), "gain": np.float32(0.5)}
    message, _ = decode(encode(Event("queue_depth", 1, fields), 0))
    assert message.fields == {"depth": 5, "gain": 0.5}
    assert type(message.fields["depth"]) is int and type(message.fields["gain"]) is float


def test_protocol_doc_lists_the_fields_the_agent_emits():
    """Every keyword of every ``telemetry.emit(NAME, ...)`` in the reference agent appears in
    that event's row of docs/protocol.md (a new field must be documented)."""
    import ast

    doc = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| \d+ \| ([a-z_]+) \| (.*)$", doc, re.MULTILINE)
    }
    # the pipeline and its stages, speculation and watchdog: every module that emits
    modules = sorted((ROOT / "device" / "agent").glob("*.py"))
    trees = [ast.parse(m.read_text(encoding="utf-8")) for m in modules]
    seen = set()
    for node in (n for tree in trees for n in ast.walk(tree)):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "emit"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            continue
        name = node.args[0].value
        seen.add(name)
        for kw in node.keywords:
            if kw.arg is not None:
                assert f"`{kw.arg}`" in rows[name], f"docs/protocol.md: {name} lacks `{kw.arg}`"
    assert len(seen) >= 20
