"""Hypothesis strategies for every protocol message, and a fixed list of sample messages."""

from __future__ import annotations

from hypothesis import strategies as st

from device.protocol import (
    COMMAND_IDS,
    EVENT_TYPES,
    Ack,
    Boot,
    Command,
    Event,
    Hello,
    Log,
    Nack,
    Ping,
    Pong,
)

u8 = st.integers(0, 2**8 - 1)
u16 = st.integers(0, 2**16 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)


def short_text(max_bytes: int = 40) -> st.SearchStrategy[str]:
    """Text whose UTF-8 form is at most ``max_bytes`` (a str field holds 255)."""
    return st.text(max_size=max_bytes).filter(lambda s: len(s.encode("utf-8")) <= max_bytes)


field_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    short_text(),
)
event_names = st.sampled_from(sorted(EVENT_TYPES)) | st.sampled_from(["event_200", "event_128"])
command_names = st.sampled_from(sorted(COMMAND_IDS)) | st.sampled_from(["blink", "command_42"])

hellos = st.builds(
    Hello, short_text(), short_text(), u8, st.lists(short_text(16), max_size=6).map(tuple), u32
)
pings = st.builds(Ping, u64)
pongs = st.builds(Pong, u64, u64, u64)
events = st.builds(
    Event, event_names, u64, st.dictionaries(short_text(16), field_values, max_size=8)
)
commands = st.builds(
    Command, command_names, st.dictionaries(short_text(16), short_text(16), max_size=6)
)
acks = st.builds(Ack, u16)
nacks = st.builds(Nack, u16, u8, short_text())
logs = st.builds(Log, u8, short_text(200))
boots = st.builds(Boot, short_text(), u64)
messages = st.one_of(hellos, pings, pongs, events, commands, acks, nacks, logs, boots)

SAMPLE_MESSAGES = [
    Boot("power_on", 12),
    Hello("tympan-c-example", "1.0.0", 1, ("events", "commands", "ping"), 1_000_000),
    Ping(1_234_567_890_123),
    Pong(1_234_567_890_123, 5_000_001, 5_000_042),
    Event("session_start", 1_000, {"input_rate_hz": 16000}),
    Event("vad_speech_start", 1_500_000, {"turn": 1, "input_s": 1.5}),
    Event(
        "tts_chunk", 2_000_000, {"turn": 1, "text": "Sure, héllo!", "tokens": 3, "reason": "clause"}
    ),
    Event("queue_depth", 2_000_001, {"queue": "tts", "depth": 2, "bound": None}),
    Event(
        "llm_request", 2**40, {"turn": 2, "partial": False, "speculative": True, "big": -(2**40)}
    ),
    Event("cancel_done", 2**63, {"turn": 2, "merged_with_previous": False, "output_s": -0.25}),
    Command("configure", {"vad_threshold": "0.5", "lang": "en"}),
    Command("set_volume", {"volume_db": "-6.0"}),
    Command("blink", {}),
    Ack(65535),
    Nack(7, 2, "bad volume_db: 'loud'"),
    Log(30, "x" * 254),
    Event("llm_done", 7, {"text": "y" * 253}),  # a 254-byte COBS run inside
]
"""Messages both implementations must encode identically (the C dump prints the same list)."""
