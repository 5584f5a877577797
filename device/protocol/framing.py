"""Byte-level framing: COBS with a 0x00 delimiter and CRC-16/CCITT-FALSE.

A frame on the wire is ``COBS(header | payload | crc16) + b"\\x00"``. The decoded frame
(header, payload and CRC) is at most `MAX_FRAME_BYTES` long. See docs/protocol.md.
"""

from __future__ import annotations

import binascii
import struct

from device.protocol.errors import CrcError, FrameError

PROTOCOL_VERSION: int = 1
"""Wire format version carried in every frame header (and in HELLO)."""

MAX_FRAME_BYTES: int = 512
"""Largest decoded frame, bytes: 4-byte header + payload + 2-byte CRC."""

HEADER = struct.Struct("<BBH")  # version u8, type u8, seq u16
HEADER_BYTES: int = HEADER.size
CRC_BYTES: int = 2
MIN_FRAME_BYTES: int = HEADER_BYTES + CRC_BYTES
MAX_PAYLOAD_BYTES: int = MAX_FRAME_BYTES - MIN_FRAME_BYTES


def max_encoded_bytes(max_frame_bytes: int = MAX_FRAME_BYTES) -> int:
    """Longest COBS encoding of a ``max_frame_bytes`` frame, without the 0x00 delimiter."""
    return max_frame_bytes + max_frame_bytes // 254 + 1


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor).

    ``crc16(b"123456789") == 0x29B1``. `binascii.crc_hqx` is exactly this CRC with the
    initial value passed in, and runs in C.
    """
    return binascii.crc_hqx(data, 0xFFFF)


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode ``data`` (no delimiter appended); the result contains no 0x00.

    Byte-identical to the classic pointer-based encoder (and to the C library): a run of 254
    non-zero bytes closes a 0xFF block, so data ending in such a run ends with a 0x01 code.
    """
    out = bytearray()
    for piece in data.split(b"\x00"):
        while len(piece) >= 254:
            out.append(0xFF)
            out += piece[:254]
            piece = piece[254:]
        out.append(len(piece) + 1)
        out += piece
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Decode one COBS block sequence (no delimiter). Raises `FrameError` if malformed."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameError(f"COBS: 0x00 inside a frame at byte {i} of {n}")
        end = i + code
        if end > n:
            raise FrameError(
                f"COBS: block at byte {i} says {code - 1} data bytes, only {n - i - 1} left"
            )
        block = data[i + 1 : end]
        if 0 in block:
            raise FrameError(f"COBS: 0x00 inside a frame within bytes {i + 1}..{end - 1}")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def build_frame(msg_type: int, seq: int, payload: bytes) -> bytes:
    """Header + payload + CRC, COBS-encoded, with the trailing 0x00 delimiter."""
    body = HEADER.pack(PROTOCOL_VERSION, msg_type, seq) + payload
    raw = body + crc16(body).to_bytes(2, "little")
    return cobs_encode(raw) + b"\x00"


def open_frame(frame: bytes, max_frame_bytes: int = MAX_FRAME_BYTES) -> tuple[int, int, bytes]:
    """Check one wire frame (with or without its trailing 0x00) -> ``(type, seq, payload)``.

    Raises `FrameError` (COBS, length, version) or `CrcError`.
    """
    if frame.endswith(b"\x00"):
        frame = frame[:-1]
    if not frame:
        raise FrameError("empty frame")
    if len(frame) > max_encoded_bytes(max_frame_bytes):
        raise FrameError(
            f"frame of {len(frame)} encoded bytes exceeds the maximum "
            f"{max_encoded_bytes(max_frame_bytes)} ({max_frame_bytes} decoded)"
        )
    raw = cobs_decode(frame)
    if len(raw) < MIN_FRAME_BYTES:
        raise FrameError(f"frame of {len(raw)} bytes is shorter than {MIN_FRAME_BYTES}")
    if len(raw) > max_frame_bytes:
        raise FrameError(f"frame of {len(raw)} bytes exceeds the maximum {max_frame_bytes}")
    body = raw[:-CRC_BYTES]
    crc_seen = int.from_bytes(raw[-CRC_BYTES:], "little")
    crc_expected = crc16(body)
    if crc_seen != crc_expected:
        raise CrcError(
            f"CRC mismatch in a {len(raw)}-byte frame: computed 0x{crc_expected:04X}, "
            f"frame carries 0x{crc_seen:04X}"
        )
    version, msg_type, seq = HEADER.unpack_from(body)
    if version != PROTOCOL_VERSION:
        raise FrameError(
            f"protocol version {version} in frame header, this host speaks {PROTOCOL_VERSION}"
        )
    return msg_type, seq, bytes(body[HEADER_BYTES:])
