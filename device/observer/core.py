"""`Observer`: a framework's events as EVENT frames, to whichever harness is connected.

The events use the reference agent's vocabulary (docs/protocol.md, "Event vocabulary") so the
harness fuses them onto the capture timeline as it fuses the reference agent's: ``turn``
counts the user's turns from 1; ``turn_summary``'s ``end_of_speech_to_playback_ms`` is the
framework's own figure for that turn's latency, and its other fields (``framework``, the
per-service figures the framework reported, ms) ride along: fields are open.

`emit` only stamps and queues (host monotonic µs, the device clock the bridge synchronises
to); a sender thread writes. A framework's event loop must never wait on the harness.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from typing import Any

from device.emulator.device import VirtualDevice
from device.observer.socketlink import SocketLink
from device.protocol import EVENT_TYPES, FieldValue, wire_value

_current: Observer | None = None


def current() -> Observer | None:
    """The observer `launch` started for this process (None when run outside tympan)."""
    return _current


def set_current(observer: Observer | None) -> None:
    global _current
    _current = observer


class Observer:
    """Listens on ``host:port`` (0: any free port; the harness learns it from `url`), answers
    the harness's HELLO and PINGs, and sends `emit`'s events.

    framework, version: what the HELLO names (e.g. "pipecat", "1.14.0").
    """

    def __init__(
        self,
        framework: str,
        version: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_queued: int = 65536,
    ) -> None:
        self.framework = framework
        self.link = SocketLink(self._on_data, host=host, port=port)
        self.device = VirtualDevice(
            self.link.write,
            firmware=f"{framework}-observer",
            firmware_version=version,
            capabilities=("events", "ping"),
        )
        # the device clock is host monotonic µs (no drift, boot at the observer's start):
        # the bridge's clock sync maps it, as it maps any device's
        self.skipped = 0  # events whose names the protocol has no id for
        self.overflowed = 0
        self.turn = 0
        self._queue: queue.Queue[tuple[str, dict[str, FieldValue], int] | None] = queue.Queue(
            max_queued
        )
        self._thread = threading.Thread(target=self._send_loop, name="observer-tx", daemon=True)

    @property
    def url(self) -> str:
        return self.link.url

    def open(self) -> Observer:
        self.link.open()
        self._thread.start()
        return self

    def close(self) -> None:
        """Send what is queued (up to 2 s), then stop."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=2.0)
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self.link.close()

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def emit(self, name: str, t_us: int | None = None, **fields: Any) -> None:
        """Queue event `name` that happened at host monotonic µs `t_us` (now)."""
        if name not in EVENT_TYPES:
            self.skipped += 1
            return
        stamp = time.monotonic_ns() // 1000 if t_us is None else int(t_us)
        item = (name, {k: wire_value(v) for k, v in fields.items()}, stamp)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.overflowed += 1

    def new_turn(self) -> int:
        """The user started a new turn: its number (from 1)."""
        self.turn += 1
        return self.turn

    def _on_data(self, data: bytes, t_rx_host_us: int) -> None:
        self.device.feed(data, t_rx_host_us)

    def _send_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            name, fields, t_us = item
            self.device.emit(name, fields, t_host_us=t_us)
