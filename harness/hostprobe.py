"""Was the host keeping up? The harness's probe thread (`device.lagprobe.LagProbe`).

A turn's latencies mean something only if the machine ran the harness (and, on the sim, the
in-process DUT) when it had to. On a shared VM the hypervisor can take the CPU away for
hundreds of milliseconds (steal), and other processes or a thread holding the GIL do the
same on a small scale; the probe sees all of that.

The session (`harness.session`) plays a turn again when the host stalled during it, as it
does after an xrun that lost audio, and records the figure either way.
"""

from __future__ import annotations

from device.lagprobe import LagProbe


class HostProbe(LagProbe):
    """The harness's probe: 10 ms sleeps, the last 2 minutes, on `time.monotonic`."""

    def __init__(self, period_s: float = 0.01, history_s: float = 120.0) -> None:
        super().__init__(period_s, history_s, name="tympan-host-probe")

    def start(self) -> HostProbe:
        super().start()
        return self

    def worst_lag_ms(self, start: float, end: float) -> float:
        """The longest the probe woke up late over [start, end] (`time.monotonic` s), ms,
        counting a sleep that is still waiting to be woken."""
        return self.worst_lag_s(start, end) * 1000.0
