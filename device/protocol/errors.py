"""The protocol's errors: one base class, three specific ones."""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every error `device.protocol` raises."""


class FrameError(ProtocolError):
    """The frame itself is bad: COBS structure, length, a stray 0x00, or the protocol version."""


class CrcError(ProtocolError):
    """The frame's CRC-16 does not match its header and payload (corrupted on the wire)."""


class MessageError(ProtocolError):
    """The payload does not parse as its message type, or a message cannot be encoded."""
