"""How long a process's threads waited for a CPU: the kernel's own account, sampled.

Linux keeps, per thread, the time it spent runnable but not running (waiting on a CPU's run
queue: `/proc/PID/task/TID/schedstat`, second field, ns). A thread that is late because the
host gave its CPU to someone else (other processes, the hypervisor) accrues it; one that is
late because another thread of its process held the GIL sleeps on a lock and accrues none;
one busy in its own code runs. So the run-queue wait of a process's threads over an interval
is evidence, from the kernel and not from the process, of how much of a lag the host caused.

`RunQueueSampler` reads every thread of a process group every `period_s` and answers
`starved_spans(start, end)`: the stretches (host monotonic s) during which the process's
most-waiting thread sat on a run queue. The harness samples its own process (is a stall of
its probe the host's?) and a DUT it started (is a lag the DUT reports the host's?).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections import deque
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


def _run_queue_ns(pids: list[int]) -> dict[int, int]:
    """Run-queue wait so far of every thread of `pids`, ns, by thread id."""
    waits: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{pid}/task"):
                path = f"/proc/{pid}/task/{task.name}/schedstat"
                with contextlib.suppress(OSError, ValueError, IndexError), open(path) as fh:
                    waits[int(task.name)] = int(fh.read().split()[1])
    return waits


def available() -> bool:
    """Whether this kernel keeps per-thread schedstat (CONFIG_SCHED_INFO)."""
    return bool(_run_queue_ns([os.getpid()]))


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
        self._samples: deque[tuple[float, dict[int, int]]] = deque(
            maxlen=max(2, int(history_s / period_s))
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
        pids, scanned = [self.pid], 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if self.group and now - scanned > 1.0:
                pids, scanned = (_pids_in_group(self.pid) or [self.pid]), now
            waits = _run_queue_ns(pids)
            with self._lock:
                self._samples.append((time.monotonic(), waits))
            if not waits and not self.group:
                return  # the process is gone
            self._stop.wait(self.period_s)

    def starved_spans(self, start: float, end: float) -> list[tuple[float, float]]:
        """Stretches within [start, end] (host monotonic s) when the most-waiting thread of
        the process waited on a run queue: one per sampling window whose wait was at least
        `MIN_WAIT_MS`, as long as that wait, ending where the window ends."""
        with self._lock:
            samples = [s for s in self._samples if start - self.period_s <= s[0] <= end + 1.0]
        spans = []
        for (t0, w0), (t1, w1) in itertools.pairwise(samples):
            if t1 < start or t0 > end:
                continue
            worst = max((w1[k] - w0[k] for k in w1.keys() & w0.keys()), default=0) / 1e9
            if worst * 1000.0 >= MIN_WAIT_MS:
                spans.append((max(t0, t1 - worst), t1))
        return spans
