"""Was the host keeping up? A probe thread that measures how late its own wake-ups are.

A turn's latencies mean something only if the machine ran the harness (and, on the sim, the
in-process DUT) when it had to. On a shared VM the hypervisor can take the CPU away for
hundreds of milliseconds (steal), and other processes or a thread holding the GIL do the
same on a small scale. A thread that sleeps 10 ms at a time and notes how late it woke up
sees all of that: in a quiet process it is late by a millisecond or two; when it is late by
a quarter of a second, so was everything else in the process, the DUT's clock included.

The session (`harness.session`) plays a turn again when the host stalled during it, as it
does after an xrun that lost audio, and records the figure either way.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class HostProbe:
    """A daemon thread sleeping `period_s` at a time; keeps the last ~`history_s` of
    wake-ups as (asleep_at, woke_at) in `time.monotonic` seconds."""

    def __init__(self, period_s: float = 0.01, history_s: float = 120.0) -> None:
        self.period_s = period_s
        self._spans: deque[tuple[float, float]] = deque(maxlen=int(history_s / period_s))
        self._asleep_at: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> HostProbe:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tympan-host-probe", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            with self._lock:
                self._asleep_at = t0
            time.sleep(self.period_s)
            t1 = time.monotonic()
            with self._lock:
                self._spans.append((t0, t1))
                self._asleep_at = None

    def worst_lag_ms(self, start: float, end: float) -> float:
        """The longest the probe woke up late over [start, end] (`time.monotonic` s), ms,
        counting a sleep that is still waiting to be woken."""
        now = time.monotonic()
        with self._lock:
            spans = [s for s in self._spans if s[1] > start and s[0] < end]
            if self._asleep_at is not None and self._asleep_at < end:
                spans.append((self._asleep_at, now))
        return max((t1 - t0 - self.period_s for t0, t1 in spans), default=0.0) * 1000.0
