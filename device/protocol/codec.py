"""Message <-> frame: `encode` one message, `decode` one frame.

Payloads are little-endian; strings are a u8 byte count then UTF-8 (at most 255 bytes).
The byte layout of each message is in docs/protocol.md.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import struct
from collections.abc import Mapping
from typing import Any

from device.protocol.errors import FrameError, MessageError
from device.protocol.framing import (
    MAX_FRAME_BYTES,
    MIN_FRAME_BYTES,
    build_frame,
    open_frame,
)
from device.protocol.messages import (
    COMMAND_IDS,
    COMMAND_NAMES_BY_ID,
    EVENT_NAMES_BY_ID,
    EVENT_TYPES,
    MESSAGE_TYPES,
    Ack,
    Boot,
    Command,
    Event,
    FieldValue,
    Hello,
    Log,
    Message,
    MsgType,
    Nack,
    Ping,
    Pong,
)

# EVENT field value tags (u8).
TAG_NULL = 0
TAG_FALSE = 1
TAG_TRUE = 2
TAG_I32 = 3
TAG_I64 = 4
TAG_F64 = 5
TAG_STR = 6

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_EVENT_HEAD = struct.Struct("<BQB")  # type id, t_device_us, n_fields
_PONG = struct.Struct("<QQQ")

_GENERIC_EVENT = re.compile(r"event_(\d{1,3})\Z")
_GENERIC_COMMAND = re.compile(r"command_(\d{1,3})\Z")

_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


# ------------------------------------------------------------------ writing


def _str(text: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise MessageError(f"{what}: expected a str, got {type(text).__name__} {text!r}")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MessageError(f"{what}: not encodable as UTF-8 ({exc})") from exc
    if len(raw) > 255:
        raise MessageError(f"{what}: {len(raw)} UTF-8 bytes, at most 255 fit a string field")
    return _U8.pack(len(raw)) + raw


def _uint(value: int, bits: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MessageError(f"{what}: expected an int, got {type(value).__name__} {value!r}")
    if not 0 <= value < (1 << bits):
        raise MessageError(f"{what}: {value} is outside 0..{(1 << bits) - 1} (u{bits})")
    return value


def _field_value(value: FieldValue, what: str) -> bytes:
    if value is None:
        return b"\x00"
    if value is True:
        return b"\x02"
    if value is False:
        return b"\x01"
    if isinstance(value, int):
        if _I32_MIN <= value <= _I32_MAX:
            return b"\x03" + _I32.pack(value)
        if _I64_MIN <= value <= _I64_MAX:
            return b"\x04" + _I64.pack(value)
        raise MessageError(f"{what}: int {value} does not fit 64 bits")
    if isinstance(value, float):
        return b"\x05" + _F64.pack(value)
    if isinstance(value, str):
        return b"\x06" + _str(value, what)
    # numpy scalars and the like: numbers by value (np.bool_ is neither, so it is refused).
    if isinstance(value, numbers.Integral):
        return _field_value(int(value), what)
    if isinstance(value, numbers.Real):
        return _field_value(float(value), what)
    raise MessageError(
        f"{what}: expected int, float, str, bool or None, got {type(value).__name__} {value!r}"
    )


def _event_id(name: str) -> int:
    type_id = EVENT_TYPES.get(name)
    if type_id is not None:
        return type_id
    match = _GENERIC_EVENT.match(name) if isinstance(name, str) else None
    if match and 1 <= int(match.group(1)) <= 254 and int(match.group(1)) not in EVENT_NAMES_BY_ID:
        return int(match.group(1))
    raise MessageError(
        f"unknown event name {name!r}: expected one of {sorted(EVENT_TYPES)} or 'event_<1..254>'"
    )


def _payload(message: Message) -> bytes:
    if isinstance(message, Event):
        fields = message.fields
        if len(fields) > 255:
            raise MessageError(f"event {message.name}: {len(fields)} fields, at most 255")
        parts = [
            _EVENT_HEAD.pack(
                _event_id(message.name),
                _uint(message.t_device_us, 64, f"event {message.name} t_device_us"),
                len(fields),
            )
        ]
        for key, value in fields.items():
            what = f"event {message.name} field {key!r}"
            parts.append(_str(key, what))
            parts.append(_field_value(value, what))
        return b"".join(parts)
    if isinstance(message, Ping):
        return _U64.pack(_uint(message.t_host_us, 64, "PING t_host_us"))
    if isinstance(message, Pong):
        return _PONG.pack(
            _uint(message.t_host_us, 64, "PONG t_host_us"),
            _uint(message.t_device_rx_us, 64, "PONG t_device_rx_us"),
            _uint(message.t_device_tx_us, 64, "PONG t_device_tx_us"),
        )
    if isinstance(message, Hello):
        caps = tuple(message.capabilities)
        if len(caps) > 255:
            raise MessageError(f"HELLO: {len(caps)} capabilities, at most 255")
        return b"".join(
            [
                _U8.pack(_uint(message.protocol_version, 8, "HELLO protocol_version")),
                _U32.pack(_uint(message.clock_hz, 32, "HELLO clock_hz")),
                _str(message.firmware, "HELLO firmware"),
                _str(message.firmware_version, "HELLO firmware_version"),
                _U8.pack(len(caps)),
                *(_str(c, "HELLO capability") for c in caps),
            ]
        )
    if isinstance(message, Command):
        name = message.name
        command_id = COMMAND_IDS.get(name)
        if command_id is None:
            match = _GENERIC_COMMAND.match(name) if isinstance(name, str) else None
            generic_id = int(match.group(1)) if match else 0
            command_id = (
                generic_id
                if 1 <= generic_id <= 255 and generic_id not in COMMAND_NAMES_BY_ID
                else 0
            )
        head = _U8.pack(command_id) + (_str(name, "CMD name") if command_id == 0 else b"")
        args = message.args
        if len(args) > 255:
            raise MessageError(f"CMD {name}: {len(args)} arguments, at most 255")
        parts = [head, _U8.pack(len(args))]
        for key, value in args.items():
            parts.append(_str(key, f"CMD {name} argument key"))
            parts.append(_str(value, f"CMD {name} argument {key!r}"))
        return b"".join(parts)
    if isinstance(message, Ack):
        return _U16.pack(_uint(message.ack_seq, 16, "ACK ack_seq"))
    if isinstance(message, Nack):
        return (
            _U16.pack(_uint(message.ack_seq, 16, "NACK ack_seq"))
            + _U8.pack(_uint(message.code, 8, "NACK code"))
            + _str(message.text, "NACK text")
        )
    if isinstance(message, Log):
        return _U8.pack(_uint(message.level, 8, "LOG level")) + _str(message.text, "LOG text")
    if isinstance(message, Boot):
        return _U64.pack(_uint(message.t_device_us, 64, "BOOT t_device_us")) + _str(
            message.reason, "BOOT reason"
        )
    raise MessageError(f"not a protocol message: {type(message).__name__} {message!r}")


def encode(message: Message, seq: int) -> bytes:
    """One complete wire frame for ``message`` with sequence number ``seq`` (0..65535).

    Returns the COBS-encoded frame including the trailing 0x00. Raises `MessageError` if a
    value does not fit its field or the frame would exceed `MAX_FRAME_BYTES` (see `fit_event`).
    """
    msg_type = MESSAGE_TYPES.get(type(message))
    if msg_type is None:
        raise MessageError(f"not a protocol message: {type(message).__name__} {message!r}")
    _uint(seq, 16, "seq")
    payload = _payload(message)
    if len(payload) + MIN_FRAME_BYTES > MAX_FRAME_BYTES:
        raise MessageError(
            f"{msg_type.name} frame would be {len(payload) + MIN_FRAME_BYTES} bytes, "
            f"the maximum is {MAX_FRAME_BYTES} (shorten strings; fit_event() does it for EVENTs)"
        )
    return build_frame(msg_type, seq, payload)


def fit_event(event: Event, max_frame_bytes: int = MAX_FRAME_BYTES) -> Event:
    """``event`` itself if it fits, else a copy whose string fields are cut to fit.

    Strings are cut at UTF-8 character boundaries (to at most 255 bytes, then the longest
    first) and the copy gets a field ``truncated=True``, so a reader knows text is missing.
    Raises `MessageError` if even empty strings do not fit.
    """
    fields = dict(event.fields)

    def size(f: Mapping[str, FieldValue]) -> int:
        return len(_payload(Event(event.name, event.t_device_us, f))) + MIN_FRAME_BYTES

    def cut(text: str, n_bytes: int) -> str:
        return text.encode("utf-8")[: max(n_bytes, 0)].decode("utf-8", errors="ignore")

    too_long = any(isinstance(v, str) and len(v.encode("utf-8")) > 255 for v in fields.values())
    if not too_long and size(fields) <= max_frame_bytes:
        return event
    fields["truncated"] = True
    for key, value in fields.items():
        if isinstance(value, str):
            fields[key] = cut(value, 255)
    while (excess := size(fields) - max_frame_bytes) > 0:
        strings = {k: len(v.encode("utf-8")) for k, v in fields.items() if isinstance(v, str)}
        longest = max(strings, key=strings.__getitem__, default=None)
        if longest is None or strings[longest] == 0:
            raise MessageError(
                f"event {event.name}: {excess} bytes over {max_frame_bytes} without any text"
            )
        fields[longest] = cut(fields[longest], strings[longest] - excess)  # type: ignore[arg-type]
    return Event(event.name, event.t_device_us, fields)


# ------------------------------------------------------------------ reading


class _Reader:
    """Cursor over a payload; every short read is a `MessageError` naming the message."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, s: struct.Struct) -> tuple:
        if self.pos + s.size > len(self.data):
            raise MessageError(
                f"{self.what}: payload ends at byte {len(self.data)}, "
                f"needed {s.size} more bytes at {self.pos}"
            )
        values = s.unpack_from(self.data, self.pos)
        self.pos += s.size
        return values

    def u8(self) -> int:
        return self.take(_U8)[0]

    def str(self) -> str:
        n = self.u8()
        end = self.pos + n
        if end > len(self.data):
            raise MessageError(
                f"{self.what}: string of {n} bytes at {self.pos} runs past the payload end "
                f"({len(self.data)})"
            )
        raw = self.data[self.pos : end]
        self.pos = end
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(f"{self.what}: string is not UTF-8 ({exc})") from exc

    def value(self) -> FieldValue:
        tag = self.u8()
        if tag == TAG_NULL:
            return None
        if tag == TAG_FALSE:
            return False
        if tag == TAG_TRUE:
            return True
        if tag == TAG_I32:
            return self.take(_I32)[0]
        if tag == TAG_I64:
            return self.take(_I64)[0]
        if tag == TAG_F64:
            return self.take(_F64)[0]
        if tag == TAG_STR:
            return self.str()
        raise MessageError(f"{self.what}: unknown field value tag {tag} (expected 0..6)")

    def end(self) -> None:
        if self.pos != len(self.data):
            raise MessageError(
                f"{self.what}: {len(self.data) - self.pos} unparsed bytes after the message"
            )


def decode_payload(msg_type: int, payload: bytes) -> Message:
    """The message of type ``msg_type`` in ``payload``. Raises `MessageError`."""
    try:
        kind = MsgType(msg_type)
    except ValueError:
        raise MessageError(f"unknown message type {msg_type} (expected 1..9)") from None
    r = _Reader(payload, kind.name)
    message: Message
    if kind is MsgType.EVENT:
        type_id, t_device_us, n_fields = r.take(_EVENT_HEAD)
        name = EVENT_NAMES_BY_ID.get(type_id)
        if name is None:
            if not 1 <= type_id <= 254:
                raise MessageError(f"EVENT: type id {type_id} is reserved")
            name = f"event_{type_id}"
        r.what = f"EVENT {name}"
        fields: dict[str, FieldValue] = {}
        for _ in range(n_fields):
            key = r.str()
            if key in fields:
                raise MessageError(f"EVENT {name}: field {key!r} appears twice")
            fields[key] = r.value()
        message = Event(name, t_device_us, fields)
    elif kind is MsgType.PING:
        message = Ping(*r.take(_U64))
    elif kind is MsgType.PONG:
        message = Pong(*r.take(_PONG))
    elif kind is MsgType.HELLO:
        version = r.u8()
        (clock_hz,) = r.take(_U32)
        firmware = r.str()
        firmware_version = r.str()
        caps = tuple(r.str() for _ in range(r.u8()))
        message = Hello(firmware, firmware_version, version, caps, clock_hz)
    elif kind is MsgType.CMD:
        command_id = r.u8()
        if command_id == 0:
            name = r.str()
        else:
            name = COMMAND_NAMES_BY_ID.get(command_id, f"command_{command_id}")
        args: dict[str, str] = {}
        for _ in range(r.u8()):
            key = r.str()
            if key in args:
                raise MessageError(f"CMD {name}: argument {key!r} appears twice")
            args[key] = r.str()
        message = Command(name, args)
    elif kind is MsgType.ACK:
        message = Ack(*r.take(_U16))
    elif kind is MsgType.NACK:
        (ack_seq,) = r.take(_U16)
        code = r.u8()
        message = Nack(ack_seq, code, r.str())
    elif kind is MsgType.LOG:
        level = r.u8()
        message = Log(level, r.str())
    else:  # BOOT
        (t_device_us,) = r.take(_U64)
        message = Boot(r.str(), t_device_us)
    r.end()
    return message


def decode(frame: bytes, max_frame_bytes: int = MAX_FRAME_BYTES) -> tuple[Message, int]:
    """One wire frame (with or without the trailing 0x00) -> ``(message, seq)``.

    Raises only `ProtocolError` subclasses: `FrameError`, `CrcError`, `MessageError`.
    """
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise FrameError(f"expected bytes, got {type(frame).__name__}")
    msg_type, seq, payload = open_frame(bytes(frame), max_frame_bytes)
    return decode_payload(msg_type, payload), seq


def is_nan_safe_equal(a: Message, b: Message) -> bool:
    """``a == b``, treating NaN float fields as equal to NaN (for round-trip checks)."""
    if isinstance(a, Event) and isinstance(b, Event):

        def norm(v: FieldValue) -> FieldValue:
            return "<nan>" if isinstance(v, float) and math.isnan(v) else v

        return (
            a.name == b.name
            and a.t_device_us == b.t_device_us
            and {k: (type(v), norm(v)) for k, v in a.fields.items()}
            == {k: (type(v), norm(v)) for k, v in b.fields.items()}
        )
    return a == b


def wire_value(value: Any) -> FieldValue:
    """A field value the protocol carries: bool/int/float/str/None as is, else JSON text."""
    if value is None or isinstance(value, bool | int | float | str):
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            return str(value)
        return value
    try:
        return json.dumps(value, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return str(value)
