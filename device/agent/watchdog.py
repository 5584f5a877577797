"""The reference agent's event-loop watchdog: a ``loop_stall`` event when the loop was blocked.

A lag alone does not say whose it is: a blocking call on the loop (the agent's mistake), or
a host that did not run this process (the CPU taken by other processes or the hypervisor;
the GIL held by another thread's C code, in process by the harness). A probe thread
sleeping in the same steps (`device.lagprobe.LagProbe`) tells them apart: when it was held
up over the same window the host was (``starved_ms``, its longest delay there); when it ran
on time, the loop was blocked by its own code.

What the loop was doing when it stalled: a sampler thread looks at the loop thread's stack
once it has not come back for `stall_ms` and the event carries the innermost frames
(``where``: "file:line function" from outermost to innermost). When the loop thread
itself holds the GIL the sampler only gets it once the loop lets go (the stack is then
where it let go); when it waits on a lock or a system call, the stack is where it waits.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback

from device.agent.events import Telemetry
from device.lagprobe import LagProbe

STACK_FRAMES = 6
"""How many of the loop thread's innermost frames a ``loop_stall`` names."""


class StallSampler:
    """A daemon thread that, while the loop thread has not ticked for `threshold_s`, takes
    its stack (once per tick)."""

    def __init__(self, loop_thread_id: int, threshold_s: float, period_s: float) -> None:
        self.loop_thread_id = loop_thread_id
        self.threshold_s = threshold_s
        self.period_s = period_s
        self.ticked_at = time.perf_counter()
        self.tick = 0
        self._taken: tuple[int, str] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loop-stall-sampler", daemon=True)

    def start(self) -> StallSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)

    def ticked(self, at: float) -> None:
        self.ticked_at, self.tick = at, self.tick + 1

    def where(self) -> str | None:
        """The stack taken during the tick that just ended, if one was."""
        taken = self._taken
        return taken[1] if taken is not None and taken[0] == self.tick - 1 else None

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            tick = self.tick
            late = time.perf_counter() - self.ticked_at > self.threshold_s
            if not late or (self._taken is not None and self._taken[0] == tick):
                continue
            frame = sys._current_frames().get(self.loop_thread_id)
            if frame is None:
                continue
            # innermost first, no source lines read: cheap, inside a stalled process
            inner = traceback.StackSummary.extract(
                traceback.walk_stack(frame), limit=STACK_FRAMES, lookup_lines=False
            )
            stack = list(reversed(inner))
            self._taken = (
                tick,
                " < ".join(f"{s.filename.rsplit('/', 2)[-1]}:{s.lineno} {s.name}" for s in stack),
            )


async def watch_event_loop(telemetry: Telemetry, stall_ms: float, period_s: float = 0.01) -> None:
    """Run until cancelled: emit ``loop_stall`` (``lag_ms``, ``starved_ms``, ``where``) for
    every sleep of `period_s` that woke up more than `stall_ms` late."""
    threshold = stall_ms / 1000.0
    probe = LagProbe(period_s, 20.0, clock=time.perf_counter, name="loop-lag-probe")
    probe.start()
    sampler = StallSampler(threading.get_ident(), threshold, period_s).start()
    try:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(period_s)
            after = time.perf_counter()
            sampler.ticked(after)
            lag = after - before - period_s
            if lag > threshold:
                starved = min(lag, probe.worst_lag_s(before, after))
                telemetry.emit(
                    "loop_stall",
                    lag_ms=round(lag * 1000.0, 1),
                    starved_ms=round(starved * 1000.0, 1),
                    where=sampler.where(),
                )
    finally:
        sampler.stop()
        probe.stop()
