"""`ProtocolSink`: the reference agent's telemetry, sent as EVENT frames.

An ``device.agent.events.EventSink``: each `TelemetryEvent` (host monotonic ``t_us``) is
restamped on the device clock, its fields made wire-safe, long text cut to fit a frame
(`device.protocol.fit_event` marks it ``truncated``), and sent. With ``truth=True`` the
agent's own host timestamp rides along as field ``t_true_us``, so a test can check the
bridge's clock mapping end to end.
"""

from __future__ import annotations

import queue
import threading
import time

from device.agent.events import TelemetryEvent
from device.emulator.device import VirtualDevice
from device.protocol import EVENT_TYPES, FieldValue, wire_value


class ProtocolSink:
    """Sends every telemetry event through ``device``, from its own thread.

    `emit` runs inside the agent (its event loop, or the audio callback's thread), so it only
    stamps and queues: a host that stops reading must never stall the pipeline. When the
    queue is full (``max_queued`` events) an event is dropped and counted in `overflowed`,
    as firmware with a full TX buffer would.
    """

    def __init__(
        self, device: VirtualDevice, *, truth: bool = False, max_queued: int = 65536
    ) -> None:
        self.device = device
        self.truth = truth
        self.skipped = 0  # events whose names the protocol has no id for
        self.overflowed = 0
        self._queue: queue.Queue[tuple[str, dict[str, FieldValue], int] | None] = queue.Queue(
            max_queued
        )
        self._thread = threading.Thread(target=self._send_loop, name="event-tx", daemon=True)
        self._thread.start()

    def emit(self, event: TelemetryEvent) -> None:
        if event.event not in EVENT_TYPES:
            self.skipped += 1
            return
        fields = {str(k): wire_value(v) for k, v in event.fields.items()}
        if self.truth:
            fields["t_true_us"] = event.t_us
        try:
            self._queue.put_nowait((event.event, fields, event.t_us))
        except queue.Full:
            self.overflowed += 1

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until everything queued so far was sent (or ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.001)

    def close(self) -> None:
        """Send what is queued, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5.0)

    def _send_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                name, fields, t_us = item
                # the device time of the moment the agent stamped it, not of the sending
                self.device.emit(name, fields, t_host_us=t_us)
            finally:
                self._queue.task_done()
