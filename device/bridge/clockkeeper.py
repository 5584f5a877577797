"""The clock keeper of a `DeviceBridge`: which boot of the device this is (a BOOT, or its clock
going back or jumping, means a restart), the sync bursts and clock fit of every boot, and the
maintainer thread that re-syncs periodically, after a reboot and after a reconnect.

State changes happen under the bridge's lock (`link.Shared`); the PING/PONG exchanges of a
burst are the bridge's (`DeviceBridge.sync`), which hands the burst to `add_burst`.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

from device.bridge.clock import ClockFit, ClockFitError, PingSample, fit_bursts
from device.bridge.errors import BridgeClosed, BridgeError
from device.bridge.events import Reboot, now_us
from device.bridge.link import Shared
from device.protocol import Boot, Pong

MAX_BURSTS_PER_BOOT = 32  # sync bursts kept for the drift fit (periodic resyncs extend it)
CLOCK_BACK_TOLERANCE_US = 100_000  # a PONG this far before the last device time = a reboot
CLOCK_JUMP_MARGIN_US = 5_000  # a PONG this far off the fit (beyond its bounds) = a reboot


class ClockKeeper:
    """Boots, reboots and clock fits of one device."""

    def __init__(self, shared: Shared) -> None:
        self.s = shared
        self.boot = 0
        self.last_device_us: int | None = None
        self.bursts: dict[int, collections.deque[list[PingSample]]] = {}
        self.fits: dict[int, ClockFit] = {}
        self.need_sync = False
        self.sync_enabled = False
        self.reboots: list[Reboot] = []
        self.maintainer: threading.Thread | None = None
        # set by `start`: what the maintainer runs
        self._sync: Callable[[int | None], ClockFit] | None = None
        self._connected = threading.Event()
        self._interval_s: float | None = None
        self._first_pings = 0

    # ------------------------------------------------------------------ what arrives
    # (each called under the lock)

    def saw_event(self, t_device_us: int, t_rx: int) -> None:
        if (
            self.last_device_us is not None
            and t_device_us < self.last_device_us - CLOCK_BACK_TOLERANCE_US
        ):
            self.rebooted(t_rx, "device clock went back (BOOT missed)", None)

    def after_event(self, t_device_us: int) -> None:
        if self.last_device_us is None or t_device_us > self.last_device_us:
            self.last_device_us = t_device_us

    def saw_pong(self, pong: Pong, t_rx: int) -> None:
        if (
            self.last_device_us is not None
            and pong.t_device_rx_us < self.last_device_us - CLOCK_BACK_TOLERANCE_US
        ):
            self.rebooted(t_rx, "device clock went back (BOOT missed)", None)
        elif self._clock_jumped(pong, t_rx):
            self.rebooted(t_rx, "device clock jumped (BOOT missed)", None)
        self.last_device_us = max(self.last_device_us or 0, pong.t_device_tx_us)

    def saw_boot(self, boot: Boot, t_rx: int, *, session_began: bool) -> None:
        if not session_began and not self.fits and self.last_device_us is None:
            # the device's own start, still buffered in the port when we opened it:
            # nothing of this session happened before it, so it is no reboot
            self.last_device_us = boot.t_device_us
            self.s.note(t_rx, f"device booted before the session: {boot.reason}")
        else:
            self.rebooted(t_rx, boot.reason, boot.t_device_us)

    def _clock_jumped(self, pong: Pong, t_rx: int) -> bool:
        """True when a PONG's device time is far from what the current fit predicts: the
        device restarted unseen (its BOOT went out while the port was gone, say)."""
        fit = self.fits.get(self.boot)
        if fit is None or pong.t_host_us > t_rx:
            return False
        host_mid = (pong.t_host_us + t_rx) / 2.0
        predicted = fit.to_device_us(round(host_mid))
        # the PONG's own window, the fit's bound there, and 200 ppm of drift beyond it
        tolerance = (
            (t_rx - pong.t_host_us) / 2.0
            + fit.uncertainty_at_us(predicted)
            + abs(host_mid - fit.t_ref_host_us) * 200e-6
            + CLOCK_JUMP_MARGIN_US
        )
        return abs(pong.t_device_rx_us - predicted) > tolerance

    def rebooted(self, t_rx: int, reason: str, t_device_us: int | None) -> None:
        self.boot += 1
        self.last_device_us = t_device_us
        self.reboots.append(Reboot(t_rx, self.boot, reason, t_device_us))
        self.need_sync = self.sync_enabled
        self.s.cond.notify_all()
        self.s.note(t_rx, f"device reboot -> boot {self.boot}: {reason}")

    # ------------------------------------------------------------------ fits

    def add_burst(self, boot: int, samples: list[PingSample]) -> ClockFit:
        """Refit `boot`'s clock with one more burst (the fastest quarter of each burst of
        this boot so far, up to `MAX_BURSTS_PER_BOOT`)."""
        with self.s.cond:
            bursts = self.bursts.setdefault(boot, collections.deque(maxlen=MAX_BURSTS_PER_BOOT))
            bursts.append(samples)
            try:
                fit = fit_bursts(list(bursts))
            except ClockFitError as exc:
                raise BridgeError(f"{self.s.url}: {exc}", self.s.url) from exc
            self.fits[boot] = fit
            self.s.counts["syncs"] += 1
            self.s.cond.notify_all()
        return fit

    def ask_for_sync(self) -> None:
        with self.s.cond:
            self.ask_for_sync_locked()

    def ask_for_sync_locked(self) -> None:
        """`ask_for_sync` for a caller that holds the lock (after a reconnect)."""
        self.need_sync = True
        self.s.cond.notify_all()

    # ------------------------------------------------------------------ upkeep

    def start(
        self,
        sync: Callable[[int | None], ClockFit],
        connected: threading.Event,
        interval_s: float | None,
        first_pings: int,
    ) -> None:
        """Start the maintainer: `sync(pings)` runs a burst (None: a periodic one) while
        `connected` is set; every `interval_s` (None: only when asked), `first_pings` long
        after a reboot or a reconnect."""
        self._sync, self._connected = sync, connected
        self._interval_s, self._first_pings = interval_s, first_pings
        self.maintainer = threading.Thread(
            target=self._maintain_loop, name="bridge-sync", daemon=True
        )
        self.maintainer.start()

    def _maintain_loop(self) -> None:
        sync, connected = self._sync, self._connected
        assert sync is not None
        interval_s, first_pings = self._interval_s, self._first_pings
        s = self.s
        next_sync = None if interval_s is None else time.monotonic() + interval_s
        while True:
            with s.cond:
                while not s.closed and not self.need_sync:
                    if next_sync is not None and time.monotonic() >= next_sync:
                        break
                    wait = 0.5 if next_sync is None else max(0.0, next_sync - time.monotonic())
                    s.cond.wait(min(wait, 0.5))
                if s.closed:
                    return
                urgent = self.need_sync
                self.need_sync = False
            if not connected.wait(0.5):
                with s.cond:
                    self.need_sync = self.need_sync or urgent
                continue
            if not self.sync_enabled:
                continue
            try:
                # after a reboot or reconnect: a full first burst; periodic: a short one
                sync(first_pings if urgent else None)
            except BridgeClosed:
                return
            except BridgeError as exc:
                s.note(now_us(), f"resync failed: {exc}")
                with s.cond:
                    self.need_sync = self.need_sync or urgent
                time.sleep(0.2)
                continue
            if interval_s is not None:
                next_sync = time.monotonic() + interval_s
