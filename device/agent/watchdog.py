"""The reference agent's event-loop watchdog: a ``loop_stall`` event when the loop was blocked.

A lag alone does not say whose it is: a blocking call on the loop (the agent's mistake), or
a host that did not run this process (the CPU taken by other processes or the hypervisor;
the GIL held by another thread's C code, in process by the harness). A probe thread
sleeping in the same steps (`device.lagprobe.LagProbe`) tells them apart: when it was held
up over the same window the host was (``starved_ms``, its longest delay there); when it ran
on time, the loop was blocked by its own code.
"""

from __future__ import annotations

import asyncio
import time

from device.agent.events import Telemetry
from device.lagprobe import LagProbe


async def watch_event_loop(telemetry: Telemetry, stall_ms: float, period_s: float = 0.01) -> None:
    """Run until cancelled: emit ``loop_stall`` (``lag_ms``, ``starved_ms``) for every
    sleep of `period_s` that woke up more than `stall_ms` late."""
    threshold = stall_ms / 1000.0
    probe = LagProbe(period_s, 20.0, clock=time.perf_counter, name="loop-lag-probe")
    probe.start()
    try:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(period_s)
            after = time.perf_counter()
            lag = after - before - period_s
            if lag > threshold:
                starved = min(lag, probe.worst_lag_s(before, after))
                telemetry.emit(
                    "loop_stall",
                    lag_ms=round(lag * 1000.0, 1),
                    starved_ms=round(starved * 1000.0, 1),
                )
    finally:
        probe.stop()
