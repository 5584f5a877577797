"""Fuzzing a byte stream of frames: flip, insert and delete bytes, then check what survived.

Used by the fuzz test (a few seconds) and by benchmarks/bench_protocol.py (longer runs).
"""

from __future__ import annotations

import random
from bisect import bisect_left
from dataclasses import dataclass

from device.protocol import Event, StreamDecoder, encode

_TEXTS = ["hi", "Sure, I can help with that.", "héllo wörld", "", "0" * 120]


def random_event(rng: random.Random, i: int) -> Event:
    """A varied EVENT (names, field types, lengths) numbered ``i`` in field ``n``."""
    return Event(
        rng.choice(["tts_chunk", "asr_partial", "state", "queue_depth", "turn_summary"]),
        rng.randrange(2**63),
        {
            "n": i,
            "text": rng.choice(_TEXTS),
            "x": rng.random() * 1000,
            "flag": rng.random() < 0.5,
            "big": rng.randrange(-(2**62), 2**62),
            "none": None,
        },
    )


@dataclass
class FuzzResult:
    """What one fuzz run saw. ``bad_accepted`` must be 0; ``lost_untouched`` must be 0."""

    frames: int
    stream_bytes: int
    mutations: int
    frames_touched: int
    frames_received: int
    frames_lost: int
    lost_untouched: int
    bad_accepted: int
    max_buffered_bytes: int


def fuzz_run(
    n_frames: int, corruption_rate: float, seed: int, chunk_bytes: int = 4096
) -> FuzzResult:
    """Encode ``n_frames`` events, mutate ``corruption_rate`` of the bytes, decode, compare.

    Each mutation is a flip (XOR with a random non-zero byte, so it may also create or
    destroy a 0x00), an insertion of a random byte, or a deletion, with equal odds. A frame is
    *touched* if a mutation hit one of its bytes or its delimiter, or the delimiter before it
    (a lost delimiter merges two frames). Every received frame must equal the original with
    its seq; every lost frame must be touched.
    """
    rng = random.Random(seed)
    originals = [random_event(rng, i) for i in range(n_frames)]
    frames = [encode(m, i & 0xFFFF) for i, m in enumerate(originals)]
    ends: list[int] = []  # index of each frame's delimiter in the clean stream
    pos = 0
    for f in frames:
        pos += len(f)
        ends.append(pos - 1)
    clean = b"".join(frames)

    touched: set[int] = set()
    out = bytearray()
    mutations = 0
    for i, byte in enumerate(clean):
        if rng.random() >= corruption_rate:
            out.append(byte)
            continue
        mutations += 1
        k = bisect_left(ends, i)  # the frame this byte belongs to
        touched.add(k)
        if byte == 0 and k + 1 < n_frames:
            touched.add(k + 1)
        op = rng.randrange(3)
        if op == 0:
            out.append(byte ^ rng.randrange(1, 256))
        elif op == 1:
            out.append(rng.randrange(256))
            out.append(byte)
        # op == 2: delete

    decoder = StreamDecoder()
    received = []
    max_buffered = 0
    for start in range(0, len(out), chunk_bytes):
        received += decoder.feed(bytes(out[start : start + chunk_bytes]))
        max_buffered = max(max_buffered, decoder.buffered_bytes)

    bad = 0
    seen: set[int] = set()
    for message, seq in received:
        n = message.fields.get("n") if isinstance(message, Event) else None
        if not isinstance(n, int) or not 0 <= n < n_frames or n & 0xFFFF != seq:
            bad += 1
            continue
        if message != originals[n] or n in seen:
            bad += 1
            continue
        seen.add(n)
    lost = set(range(n_frames)) - seen
    return FuzzResult(
        frames=n_frames,
        stream_bytes=len(clean),
        mutations=mutations,
        frames_touched=len(touched),
        frames_received=len(received),
        frames_lost=len(lost),
        lost_untouched=len(lost - touched),
        bad_accepted=bad,
        max_buffered_bytes=max_buffered,
    )
