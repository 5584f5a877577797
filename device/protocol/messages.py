"""Message types, the event and command vocabularies, and NACK codes.

Every message is a frozen dataclass; `Message` is their union. The numeric ids here are the
wire format: never renumber one, only add (see docs/protocol.md, "Versioning").
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

FieldValue = int | float | str | bool | None
"""An EVENT field value: on the wire null, bool, i32/i64, f64 or a UTF-8 string."""


class MsgType(enum.IntEnum):
    """The ``type`` byte of the frame header."""

    HELLO = 1
    PING = 2
    PONG = 3
    EVENT = 4
    CMD = 5
    ACK = 6
    NACK = 7
    LOG = 8
    BOOT = 9


EVENT_TYPES: dict[str, int] = {
    "session_start": 1,
    "session_end": 2,
    "vad_speech_start": 3,
    "vad_speech_end": 4,
    "asr_partial": 5,
    "asr_final": 6,
    "llm_request": 7,
    "llm_first_token": 8,
    "llm_token": 9,
    "llm_done": 10,
    "tts_chunk": 11,
    "tts_first_audio": 12,
    "playback_start": 13,
    "playback_end": 14,
    "playback_underrun": 15,
    "barge_in": 16,
    "cancel_done": 17,
    "state": 18,
    "queue_depth": 19,
    "input_overrun": 20,
    "loop_stall": 21,
    "turn_summary": 22,
    "speculation": 23,
    "earcon": 24,
}
"""Reference-agent telemetry name -> EVENT type id (u8). Ids 128..254 are for vendors' own
events; an id without a name here decodes as ``"event_<id>"`` (and encodes back)."""

EVENT_NAMES_BY_ID: dict[int, str] = {v: k for k, v in EVENT_TYPES.items()}

COMMAND_IDS: dict[str, int] = {
    "reset": 1,
    "configure": 2,
    "start_session": 3,
    "stop_session": 4,
    "set_volume": 5,
}
"""CMD names -> command id (u8). Id 0 carries any other command by name (a string)."""

COMMAND_NAMES_BY_ID: dict[int, str] = {v: k for k, v in COMMAND_IDS.items()}

NACK_CODES: dict[str, int] = {
    "unknown_command": 1,
    "bad_argument": 2,
    "busy": 3,
    "not_supported": 4,
    "failed": 5,
    "version_mismatch": 6,
    "bad_frame": 7,
}
"""Why a device refused a CMD (NACK ``code``, u8). 0 is never sent."""

NACK_NAMES_BY_CODE: dict[int, str] = {v: k for k, v in NACK_CODES.items()}


class LogLevel(enum.IntEnum):
    """LOG levels (u8), the same numbers as Python's `logging`."""

    DEBUG = 10
    INFO = 20
    WARNING = 30
    ERROR = 40


@dataclass(frozen=True)
class Hello:
    """Device (or host) identity; sent after BOOT and in reply to a host HELLO.

    ``clock_hz`` is the rate of the device's timestamp counter (1_000_000 for microseconds).
    """

    firmware: str
    firmware_version: str
    protocol_version: int
    capabilities: tuple[str, ...] = ()
    clock_hz: int = 1_000_000


@dataclass(frozen=True)
class Ping:
    """Host -> device: ``t_host_us`` is the host's send time (host monotonic clock, µs)."""

    t_host_us: int


@dataclass(frozen=True)
class Pong:
    """Device -> host: the PING's ``t_host_us`` echoed, device receive and send times (µs)."""

    t_host_us: int
    t_device_rx_us: int
    t_device_tx_us: int


@dataclass(frozen=True)
class Event:
    """Telemetry: ``name`` from `EVENT_TYPES`, device time ``t_device_us``, named ``fields``."""

    name: str
    t_device_us: int
    fields: Mapping[str, FieldValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Command:
    """Host -> device: ``name`` (see `COMMAND_IDS`) with string ``args`` (key=value)."""

    name: str
    args: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Ack:
    """Device -> host: the CMD with sequence number ``ack_seq`` was done."""

    ack_seq: int


@dataclass(frozen=True)
class Nack:
    """Device -> host: the CMD ``ack_seq`` was refused; ``code`` from `NACK_CODES`."""

    ack_seq: int
    code: int
    text: str = ""


@dataclass(frozen=True)
class Log:
    """Free text from the device; ``level`` as in `LogLevel`."""

    level: int
    text: str


@dataclass(frozen=True)
class Boot:
    """The device (re)started: ``reason`` (e.g. "power_on", "reset", "watchdog") and its clock."""

    reason: str
    t_device_us: int


Message = Hello | Ping | Pong | Event | Command | Ack | Nack | Log | Boot
"""Any protocol message."""

MESSAGE_TYPES: dict[type, MsgType] = {
    Hello: MsgType.HELLO,
    Ping: MsgType.PING,
    Pong: MsgType.PONG,
    Event: MsgType.EVENT,
    Command: MsgType.CMD,
    Ack: MsgType.ACK,
    Nack: MsgType.NACK,
    Log: MsgType.LOG,
    Boot: MsgType.BOOT,
}
