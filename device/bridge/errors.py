"""The bridge's errors: one base class, a few specific kinds, each naming the port.

`PortError` is the user's input being wrong (no such port, a bad URL, no permission): the
CLI turns it into one line and exit status 2. The others are the device misbehaving or the
link failing; their messages point at the raw traffic log (the evidence).
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error `device.bridge` raises on purpose. ``port`` is the URL."""

    def __init__(self, message: str, port: str = "") -> None:
        super().__init__(message)
        self.port = port


class PortError(BridgeError):
    """The port cannot be opened: no such device or host, bad URL, permission, busy."""


class DeviceTimeout(BridgeError):
    """The device did not answer (a CMD, PING or HELLO) in time, retries included."""


class CommandRejected(BridgeError):
    """The device refused a CMD with a NACK: ``code`` (number), ``code_name``, ``text``."""

    def __init__(self, message: str, port: str, code: int, code_name: str, text: str) -> None:
        super().__init__(message, port)
        self.code = code
        self.code_name = code_name
        self.text = text


class NotSynced(BridgeError):
    """No clock fit for that device boot yet (`DeviceBridge.sync` has not succeeded)."""


class BridgeClosed(BridgeError):
    """The bridge is closed (or was never opened)."""
