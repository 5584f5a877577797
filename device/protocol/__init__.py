"""The device wire protocol: COBS frames with CRC-16, nine message types (docs/protocol.md).

Pure Python, standard library only.

- `encode(message, seq) -> bytes`: one frame, trailing 0x00 included.
- `decode(frame) -> (message, seq)`: one frame; raises `ProtocolError` subclasses only.
- `StreamDecoder(max_frame_bytes).feed(data) -> [(message, seq), ...]`: never raises, bounded
  memory, counts bad frames in `.stats` (`DecoderStats`).
- Messages (frozen dataclasses): `Hello`, `Ping`, `Pong`, `Event`, `Command`, `Ack`, `Nack`,
  `Log`, `Boot`; `Message` is their union. `fit_event` shortens an EVENT's text to fit a frame.
- Tables: `MsgType`, `EVENT_TYPES` (telemetry name -> id), `COMMAND_IDS`, `NACK_CODES`,
  `LogLevel`; constants `PROTOCOL_VERSION`, `MAX_FRAME_BYTES`.
"""

from device.protocol.codec import decode, decode_payload, encode, fit_event, wire_value
from device.protocol.errors import CrcError, FrameError, MessageError, ProtocolError
from device.protocol.framing import (
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    cobs_decode,
    cobs_encode,
    crc16,
    max_encoded_bytes,
)
from device.protocol.messages import (
    COMMAND_IDS,
    EVENT_TYPES,
    NACK_CODES,
    Ack,
    Boot,
    Command,
    Event,
    FieldValue,
    Hello,
    Log,
    LogLevel,
    Message,
    MsgType,
    Nack,
    Ping,
    Pong,
)
from device.protocol.stream import DecoderStats, StreamDecoder

__all__ = [
    "COMMAND_IDS",
    "EVENT_TYPES",
    "MAX_FRAME_BYTES",
    "NACK_CODES",
    "PROTOCOL_VERSION",
    "Ack",
    "Boot",
    "Command",
    "CrcError",
    "DecoderStats",
    "Event",
    "FieldValue",
    "FrameError",
    "Hello",
    "Log",
    "LogLevel",
    "Message",
    "MessageError",
    "MsgType",
    "Nack",
    "Ping",
    "Pong",
    "ProtocolError",
    "StreamDecoder",
    "cobs_decode",
    "cobs_encode",
    "crc16",
    "decode",
    "decode_payload",
    "encode",
    "fit_event",
    "max_encoded_bytes",
    "wire_value",
]
