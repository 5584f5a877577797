"""How long a process's threads waited for a CPU: the kernel's own account, sampled.

Linux keeps, per thread, the time it spent runnable but not running (waiting on a CPU's run
queue: `/proc/PID/task/TID/schedstat`, second field, ns). A thread that is late because the
host gave its CPU to someone else (other processes, the hypervisor) accrues it; one that is
late because another thread of its process held the GIL sleeps on a lock and accrues none;
one busy in its own code runs. So the run-queue wait of a process's threads over an interval
is evidence, from the kernel and not from the process, of how much of a lag the host caused.

A virtual machine's host may also take the whole virtual CPU away (steal): the guest kernel
then counts the thread on it as running, so its run-queue wait stays flat. The kernel counts
that too, per CPU (`/proc/stat`, the eighth figure); a thread that was running or runnable in a
window is charged the steal of the CPU it was on (`/proc/PID/task/TID/stat`, field 39). Both
are the host's, neither is the process's own doing.

`RunQueueSampler` reads every thread of a process group every `period_s` and answers
`starved_spans(start, end)`: the stretches (host monotonic s) during which the host kept the
process's most-kept-back thread from running (run-queue wait, steal of its CPU). The harness
samples its own process (is a stall of its probe the host's?) and a DUT it started (is a lag
the DUT reports the host's?).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MIN_WAIT_MS = 5.0
"""A window whose most-waiting thread waited less than this is not a starved stretch."""


def _pids_in_group(pgid: int) -> list[int]:
    """Every process of process group `pgid` (one `/proc` scan)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid:  # state, ppid, pgrp
                pids.append(int(entry.name))
    return pids


@dataclass(frozen=True)
class ThreadSample:
    """One thread's counters at one instant: ns run, ns waited on a run queue, whether it
    was running or runnable ('R'), and the CPU it was last on."""

    run_ns: int
    wait_ns: int
    runnable: bool
    cpu: int


_TICK_NS = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") or 100)


def _threads(pids: list[int]) -> dict[int, ThreadSample]:
    """The counters of every thread of `pids`, by thread id."""
    threads: dict[int, ThreadSample] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{pid}/task"):
                base = f"/proc/{pid}/task/{task.name}"
                with contextlib.suppress(OSError, ValueError, IndexError):
                    with open(base + "/schedstat") as fh:
                        run_ns, wait_ns = (int(v) for v in fh.read().split()[:2])
                    with open(base + "/stat") as fh:
                        stat = fh.read()
                    fields = stat[stat.rindex(")") + 2 :].split()  # field 3 (state) onwards
                    threads[int(task.name)] = ThreadSample(
                        run_ns, wait_ns, fields[0] == "R", int(fields[36])
                    )
    return threads


def _steal_ns() -> dict[int, int]:
    """Time the hypervisor took each CPU away so far, ns, by CPU (empty off a VM)."""
    steal: dict[int, int] = {}
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/stat") as fh:
        for line in fh:
            name, *values = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and len(values) >= 8:
                steal[int(name[3:])] = int(values[7]) * _TICK_NS
    return steal


STEAL_MIN_MS = 20.0
"""Steal below this in a window is not counted: /proc/stat counts it in ticks (10 ms at
USER_HZ 100), so one tick crossing a window's edge is noise, not a stolen CPU."""


def lost_ms(
    before: ThreadSample, after: ThreadSample, steal: Mapping[int, int], window_ms: float
) -> float:
    """How long one thread was kept from running in a window by the host, ms: its run-queue
    wait, plus the steal of its CPU (`steal`: ns in the window, by CPU) when it wanted a CPU
    through the window (runnable at both ends, or running or waiting for half of it); never
    more than the window."""
    waited = (after.wait_ns - before.wait_ns) / 1e6
    ran = (after.run_ns - before.run_ns) / 1e6
    wanted = (before.runnable and after.runnable) or ran + waited >= 0.5 * window_ms
    stolen = steal.get(after.cpu, 0) / 1e6 if wanted else 0.0
    return min(window_ms, waited + (stolen if stolen >= STEAL_MIN_MS else 0.0))


def available() -> bool:
    """Whether this kernel keeps per-thread schedstat (CONFIG_SCHED_INFO)."""
    return bool(_threads([os.getpid()]))


class RunQueueSampler:
    """A daemon thread sampling the run-queue wait of every thread of process `pid` (and,
    with `group`, of every process in its process group, rescanned each second), every
    `period_s`, for the last `history_s`."""

    def __init__(
        self, pid: int, *, group: bool = False, period_s: float = 0.05, history_s: float = 90.0
    ) -> None:
        self.pid = pid
        self.group = group
        self.period_s = period_s
        self._samples: deque[tuple[float, dict[int, ThreadSample], dict[int, int]]] = deque(
            maxlen=max(2, int(history_s / period_s))
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._own_tid: int | None = None

    def start(self) -> RunQueueSampler:
        if self._thread is None and available():
            self._thread = threading.Thread(target=self._run, name="tympan-runqueue", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None

    def _run(self) -> None:
        # this thread is running whenever it reads its own counters: never evidence
        self._own_tid = threading.get_native_id()
        pids, scanned = [self.pid], 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if self.group and now - scanned > 1.0:
                pids, scanned = (_pids_in_group(self.pid) or [self.pid]), now
            threads, steal = _threads(pids), _steal_ns()
            with self._lock:
                self._samples.append((time.monotonic(), threads, steal))
            if not threads and not self.group:
                return  # the process is gone
            self._stop.wait(self.period_s)

    def starved_spans(self, start: float, end: float) -> list[tuple[float, float]]:
        """Stretches within [start, end] (host monotonic s) when the host kept the process's
        most-kept-back thread from running (run-queue wait, steal of its CPU: `lost_ms`): one
        per sampling window where that was at least `MIN_WAIT_MS`, as long as it was, ending
        where the window ends."""
        with self._lock:
            samples = [s for s in self._samples if start - self.period_s <= s[0] <= end + 1.0]
        spans = []
        for (t0, th0, st0), (t1, th1, st1) in itertools.pairwise(samples):
            if t1 < start or t0 > end:
                continue
            steal = {cpu: st1[cpu] - st0.get(cpu, st1[cpu]) for cpu in st1}
            window_ms = (t1 - t0) * 1000.0
            tids = (th1.keys() & th0.keys()) - {self._own_tid}
            worst_ms = max((lost_ms(th0[k], th1[k], steal, window_ms) for k in tids), default=0.0)
            if worst_ms >= MIN_WAIT_MS:
                spans.append((max(t0, t1 - worst_ms / 1000.0), t1))
        return spans
