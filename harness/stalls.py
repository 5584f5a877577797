"""Where the host stalled the harness during a turn, on the capture timeline, and whose the
stall may have been.

The harness's probe thread (`harness.hostprobe.HostProbe`) notes every sleep it woke up
late from and how much CPU the harness's process used meanwhile. Placed on the capture
timeline through the capture's host clock map, those stalls are the only evidence an excuse
may rest on: a rule is excused by the stalls that overlap the interval it measures, and by
no more than their overlap (`TurnStalls.overlap_ms`); a stall after the capture ended (the
WAV written, the analysis run) overlaps nothing.

Whose a stall was: while the host kept the process off the CPU (steal, a stopped process)
the process hardly ran; while other processes took its CPUs, its threads waited on the
run queue (the kernel's count, `harness.runqueue`); while a thread of its own held the GIL
in C code, the process ran on and nothing of it waited for a CPU. When the DUT runs inside
the harness's process (the reference agent on the sim rig), a stall of that last kind may
be the DUT's own blocking call: it excuses nothing.

A lag the DUT reports of its own event loop is the host's as far as the harness saw the
host stall too, or saw the DUT's own threads wait on the run queue meanwhile (`dut_starved`,
sampled by the harness from the kernel, for a DUT process it started).
A rig running faster than real time (a sim with a scripted DUT) cannot be changed by a
stall at all: none excuses anything there, and none is a reason to play a turn again.

Pure: numbers in, numbers out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

STALL_FLOOR_MS = 20.0
"""A probe sleep woken later than this is a stall (a quiet host wakes it within 1-2 ms)."""

IN_PROCESS_CPU_SHARE = 0.25
"""A stall during which the harness's process used at least this share of a CPU, and its
threads did not wait on a run queue for half of it, was a thread of its own holding the
GIL, not the host keeping it off the CPU."""


@dataclass(frozen=True)
class Stall:
    """One late wake-up of the probe: from when it should have woken (`start_s`) to when it
    did (`end_s`), capture-timeline seconds; `cpu_ms` the process CPU time used meanwhile;
    `queued_ms` how long the process's most-waiting thread waited on a run queue in it."""

    start_s: float
    end_s: float
    cpu_ms: float
    queued_ms: float = 0.0

    @property
    def lag_ms(self) -> float:
        return (self.end_s - self.start_s) * 1000.0

    @property
    def in_process(self) -> bool:
        """The process kept running through it and did not wait for a CPU: a thread of its
        own held the GIL."""
        return (
            self.cpu_ms >= IN_PROCESS_CPU_SHARE * self.lag_ms and self.queued_ms < 0.5 * self.lag_ms
        )

    def overlap_ms(self, start_s: float, end_s: float) -> float:
        return max(0.0, min(self.end_s, end_s) - max(self.start_s, start_s)) * 1000.0


@dataclass(frozen=True)
class TurnStalls:
    """The probe's stalls during one attempt of a turn.

    stalls: inside the capture ([0, capture_end_s]). paced: the rig ran in real time (else
    no stall can change what it measured). dut_shares_process: the DUT runs in the
    harness's process, so a stall of the process's own may be the DUT's. placed: the
    capture had a host clock map to place stalls with (without one nothing is excused).
    dut_starved: stretches when a thread of the DUT's process waited on a run queue
    (capture s; empty when the harness did not start the DUT's process).
    """

    stalls: tuple[Stall, ...] = ()
    capture_end_s: float = 0.0
    paced: bool = True
    dut_shares_process: bool = False
    placed: bool = True
    dut_starved: tuple[tuple[float, float], ...] = ()

    @property
    def excusing(self) -> list[Stall]:
        """The stalls that were not the DUT's doing and could change a measurement."""
        if not (self.paced and self.placed):
            return []
        if self.dut_shares_process:
            return [s for s in self.stalls if not s.in_process]
        return list(self.stalls)

    @property
    def unattributed(self) -> list[Stall]:
        """Stalls inside the harness's process while the DUT shared it: maybe the DUT's."""
        if not (self.paced and self.placed and self.dut_shares_process):
            return []
        return [s for s in self.stalls if s.in_process]

    def worst_ms(self) -> float:
        """The longest excusing stall, ms (0 without one)."""
        return max((s.lag_ms for s in self.excusing), default=0.0)

    def overlap_ms(self, start_s: float, end_s: float) -> float:
        """How much of [start_s, end_s] (capture s) the excusing stalls cover, ms."""
        return sum(s.overlap_ms(start_s, end_s) for s in self.excusing)

    def host_share_ms(self, start_s: float, end_s: float) -> float:
        """How much of a lag the DUT reports over [start_s, end_s] (capture s) the host can
        be shown to have caused: the larger of the excusing stalls over it and the DUT's own
        threads' run-queue waits over it, ms, at most the interval."""
        if not (self.paced and self.placed):
            return 0.0
        starved = sum(
            max(0.0, min(b, end_s) - max(a, start_s)) * 1000.0 for a, b in self.dut_starved
        )
        return min((end_s - start_s) * 1000.0, max(self.overlap_ms(start_s, end_s), starved))

    def over(
        self, limit_ms: float, spans: Iterable[tuple[float, float]] | None = None
    ) -> list[Stall]:
        """Excusing stalls longer than `limit_ms`, overlapping one of `spans` when given."""
        spans = list(spans) if spans is not None else None
        return [
            s
            for s in self.excusing
            if s.lag_ms > limit_ms
            and (spans is None or any(s.overlap_ms(a, b) > 0 for a, b in spans))
        ]


def place_stalls(
    sleeps: Sequence[tuple[float, float, float, float]],
    *,
    period_s: float,
    capture_s_of_host_s: Callable[[float], float] | None,
    capture_end_s: float,
    paced: bool,
    dut_shares_process: bool,
    own_starved: Sequence[tuple[float, float]] = (),
    dut_starved: Sequence[tuple[float, float]] = (),
) -> TurnStalls:
    """The probe's `sleeps` ((asleep_at, woke_at, cpu_at_sleep, cpu_at_wake), host s) as a
    turn's stalls: those late by more than `STALL_FLOOR_MS`, placed on the capture timeline
    by `capture_s_of_host_s`, kept when they overlap [0, capture_end_s]. `own_starved` and
    `dut_starved` (host s): when a thread of the harness's process, or of the DUT's,
    waited on a run queue (`harness.runqueue`)."""
    if capture_s_of_host_s is None:
        return TurnStalls((), capture_end_s, paced, dut_shares_process, placed=False)
    stalls = []
    for t0, t1, c0, c1 in sleeps:
        due = t0 + period_s
        if (t1 - due) * 1000.0 <= STALL_FLOOR_MS:
            continue
        a, b = capture_s_of_host_s(due), capture_s_of_host_s(t1)
        if b <= 0.0 or a >= capture_end_s:
            continue
        queued = sum(max(0.0, min(y, t1) - max(x, due)) for x, y in own_starved) * 1000.0
        stalls.append(Stall(a, b, (c1 - c0) * 1000.0, queued))
    starved = tuple(
        (capture_s_of_host_s(x), capture_s_of_host_s(y))
        for x, y in dut_starved
        if capture_s_of_host_s(y) > 0.0 and capture_s_of_host_s(x) < capture_end_s
    )
    return TurnStalls(tuple(stalls), capture_end_s, paced, dut_shares_process, True, starved)


def describe(stalls: Sequence[Stall], limit: int = 3) -> str:
    """ "300 ms at 1.20 s, 180 ms at 4.05 s" (the longest first)."""
    worst = sorted(stalls, key=lambda s: -s.lag_ms)[:limit]
    more = f" and {len(stalls) - limit} more" if len(stalls) > limit else ""
    return ", ".join(f"{s.lag_ms:.0f} ms at {s.start_s:.2f} s" for s in worst) + more
