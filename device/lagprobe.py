"""How late does this process get to run? A probe thread that measures its own wake-ups.

A thread that sleeps a few milliseconds at a time and notes how late it woke up sees
everything that takes the CPU away from its process: the hypervisor (steal), other
processes, a thread holding the GIL. In a quiet process it is late by a millisecond or
two; when it is late by a quarter of a second, so was everything else in the process.

One probe for both ends: the harness's (`harness.hostprobe.HostProbe`: was the host
keeping up during a turn?) and the reference agent's watchdog (was an event-loop lag the
loop's own code, or the host?). Standard library only.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class LagProbe:
    """A daemon thread sleeping `period_s` at a time; keeps the last ~`history_s` of
    wake-ups as (asleep_at, woke_at, process CPU s at each) on `clock` (seconds:
    `time.monotonic` by default).

    The process CPU time tells whose a late wake-up was: while the host kept this process
    off the CPU (steal, other processes, a stopped process) it hardly advances; while a
    thread of this process held the GIL in C code it advances with the wall clock.
    """

    def __init__(
        self,
        period_s: float = 0.01,
        history_s: float = 120.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        name: str = "lag-probe",
    ) -> None:
        self.period_s = period_s
        self.clock = clock
        self.name = name
        self._spans: deque[tuple[float, float, float, float]] = deque(
            maxlen=max(1, int(history_s / period_s))
        )
        self._asleep_at: tuple[float, float] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LagProbe:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            t0, c0 = self.clock(), time.process_time()
            with self._lock:
                self._asleep_at = (t0, c0)
            time.sleep(self.period_s)
            t1, c1 = self.clock(), time.process_time()
            with self._lock:
                self._spans.append((t0, t1, c0, c1))
                self._asleep_at = None

    def sleeps(self, start: float, end: float) -> list[tuple[float, float, float, float]]:
        """Every sleep overlapping [start, end] (`clock` s) as (asleep_at, woke_at, process
        CPU s at each), the one still waiting to be woken ending now."""
        now, cpu = self.clock(), time.process_time()
        with self._lock:
            spans = [s for s in self._spans if s[1] > start and s[0] < end]
            if self._asleep_at is not None and self._asleep_at[0] < end:
                spans.append((self._asleep_at[0], now, self._asleep_at[1], cpu))
        return spans

    def worst_lag_s(self, start: float, end: float) -> float:
        """The longest the probe woke up late over sleeps overlapping [start, end] (`clock`
        seconds), counting a sleep still waiting to be woken, s."""
        spans = self.sleeps(start, end)
        return max((t1 - t0 - self.period_s for t0, t1, _, _ in spans), default=0.0)
