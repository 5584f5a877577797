"""The event queue of a `DeviceBridge`: EVENTs as received, stamped with host time when they
are taken (through the clock fit of their boot at that moment), handed out once, in order,
to whichever of `drain`, `events` or `aevents` takes them. Right after a reboot, events of
the new boot wait (up to `hold_s`) for its fit. The queue is never trimmed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from device.bridge.clockkeeper import ClockKeeper
from device.bridge.events import DeviceEvent, now_us
from device.bridge.link import Shared
from device.protocol import Event


@dataclass
class RawEvent:
    """An EVENT as received, before it is stamped with host time and handed out."""

    event: Event
    seq: int
    boot: int
    t_rx_us: int


class EventQueue:
    """Received events, taken once (`clock` gives each its host time)."""

    def __init__(self, shared: Shared, clock: ClockKeeper, hold_s: float) -> None:
        self.s = shared
        self.clock = clock
        self.hold_s = hold_s
        self.queue: collections.deque[RawEvent] = collections.deque()
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def __len__(self) -> int:
        return len(self.queue)

    def put(self, raw: RawEvent) -> None:
        # caller holds the lock (and notifies)
        self.queue.append(raw)

    def drain(self) -> list[DeviceEvent]:
        with self.s.lock:
            return self._take(None)

    def events(
        self, timeout_s: float | None = None, count: int | None = None
    ) -> Iterator[DeviceEvent]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        given = 0
        while count is None or given < count:
            with self.s.cond:
                while True:
                    got = self._take(1)
                    if got:
                        break
                    if self.s.closed:
                        return
                    wait = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                    if wait <= 0:
                        return
                    self.s.cond.wait(wait)
            given += 1
            yield got[0]

    async def aevents(
        self, timeout_s: float | None = None, count: int | None = None
    ) -> AsyncIterator[DeviceEvent]:
        loop = asyncio.get_running_loop()
        flag = asyncio.Event()
        entry = (loop, flag)
        deadline = None if timeout_s is None else loop.time() + timeout_s
        given = 0
        with self.s.lock:
            self._async_waiters.add(entry)
        try:
            while count is None or given < count:
                flag.clear()
                with self.s.lock:
                    got = self._take(1)
                    closed = self.s.closed
                if got:
                    given += 1
                    yield got[0]
                    continue
                if closed:
                    return
                wait = 0.1 if deadline is None else min(0.1, deadline - loop.time())
                if wait <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(flag.wait(), wait)
        finally:
            with self.s.lock:
                self._async_waiters.discard(entry)

    def notify_async(self) -> None:
        """Wake the asyncio takers (from any thread)."""
        with self.s.lock:
            waiters = list(self._async_waiters)
        for loop, flag in waiters:
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(flag.set)

    def _take(self, max_n: int | None) -> list[DeviceEvent]:
        # caller holds the lock
        out: list[DeviceEvent] = []
        now = now_us()
        while self.queue and (max_n is None or len(out) < max_n):
            raw = self.queue[0]
            fit = self.clock.fits.get(raw.boot)
            if fit is None and self._waiting_for_fit(raw, now):
                break
            self.queue.popleft()
            ev = raw.event
            out.append(
                DeviceEvent(
                    name=ev.name,
                    t_device_us=ev.t_device_us,
                    t_host_us=fit.to_host_us(ev.t_device_us) if fit is not None else None,
                    fields=ev.fields,
                    seq=raw.seq,
                    boot=raw.boot,
                    t_received_us=raw.t_rx_us,
                )
            )
        return out

    def _waiting_for_fit(self, raw: RawEvent, now: int) -> bool:
        return (
            self.clock.sync_enabled
            and not self.s.closed
            and raw.boot == self.clock.boot
            and now - raw.t_rx_us < self.hold_s * 1e6
        )
