"""The kernel's count of how long a process's threads waited for a CPU (`harness.runqueue`):
other processes taking the CPUs show as run-queue wait; a thread of the process holding the
GIL does not (the others sleep on the lock)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from harness import runqueue
from harness.runqueue import RunQueueSampler
from harness.stalls import Stall

pytestmark = pytest.mark.skipif(
    not runqueue.available(), reason="this kernel keeps no per-thread schedstat"
)

BUSY = "import time\nend = time.monotonic() + 3\nwhile time.monotonic() < end: pass\n"
GIL = (
    "import threading, time\n"
    "def waiter():\n"
    "    for _ in range(200): time.sleep(0.01)\n"
    "threading.Thread(target=waiter).start()\n"
    "end = time.monotonic() + 3\n"
    "while time.monotonic() < end: sum(range(3_000_000))\n"
)


def waited_ms(code: str, hogs: int) -> float:
    others = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(hogs)]
    child = subprocess.Popen([sys.executable, "-c", code])
    sampler = RunQueueSampler(child.pid).start()
    try:
        time.sleep(0.5)
        began = time.monotonic()
        time.sleep(1.5)
        spans = sampler.starved_spans(began, time.monotonic())
    finally:
        sampler.stop()
        for p in [child, *others]:
            p.kill()
            p.wait(timeout=10)
    return sum(b - a for a, b in spans) * 1000.0


def test_a_process_that_other_processes_crowd_out_waits_on_the_run_queue():
    crowded = waited_ms(BUSY, hogs=3)  # four busy processes on this machine's CPUs
    assert crowded >= 150.0, crowded


def test_a_thread_holding_the_gil_is_not_a_wait_for_the_cpu():
    crowded = waited_ms(BUSY, hogs=3)
    held = waited_ms(GIL, hogs=0)
    assert held < 0.5 * crowded, (held, crowded)


def test_a_stall_the_process_waited_through_is_the_hosts():
    # the process ran (CPU 200 ms of a 250 ms stall) but its threads waited for a CPU
    assert not Stall(1.0, 1.25, cpu_ms=200.0, queued_ms=180.0).in_process
    # the process ran and nothing of it waited: a thread of its own held the GIL
    assert Stall(1.0, 1.25, cpu_ms=200.0, queued_ms=10.0).in_process
    # the process hardly ran: stopped, or the hypervisor took the CPU
    assert not Stall(1.0, 1.25, cpu_ms=2.0).in_process


def test_steal_of_its_cpu_is_charged_to_a_thread_that_was_running_only():
    """The hypervisor taking a virtual CPU away leaves the thread on it 'running' to the
    guest: no run-queue wait. The CPU's steal is the host's share of its lag, and only of a
    thread that was on a CPU or waiting for one; a sleeping thread lost nothing."""
    ran = runqueue.ThreadSample(run_ns=0, wait_ns=0, runnable=True, cpu=1)
    ran_on = runqueue.ThreadSample(run_ns=10_000_000, wait_ns=5_000_000, runnable=True, cpu=1)
    steal = {0: 0, 1: 400_000_000}  # CPU 1 taken away for 400 ms of the window
    assert runqueue.lost_ms(ran, ran_on, steal, window_ms=500.0) == 405.0
    assert runqueue.lost_ms(ran, ran_on, steal, window_ms=300.0) == 300.0  # never more
    on_other = runqueue.ThreadSample(run_ns=10_000_000, wait_ns=5_000_000, runnable=True, cpu=0)
    assert runqueue.lost_ms(ran, on_other, steal, window_ms=500.0) == 5.0
    asleep = runqueue.ThreadSample(run_ns=0, wait_ns=0, runnable=False, cpu=1)
    assert runqueue.lost_ms(asleep, asleep, steal, window_ms=500.0) == 0.0
    # a thread that woke for a moment in the window did not want the CPU through it
    woke = runqueue.ThreadSample(run_ns=2_000_000, wait_ns=0, runnable=True, cpu=1)
    assert runqueue.lost_ms(asleep, woke, steal, window_ms=500.0) == 0.0
    # one 10 ms tick of steal is the counter's granularity, not a stolen CPU
    assert runqueue.lost_ms(ran, ran_on, {1: 10_000_000}, window_ms=50.0) == 5.0


def test_the_sampler_reads_every_thread_and_the_steal_of_every_cpu():
    threads = runqueue._threads([os.getpid()])
    assert threading.get_native_id() in threads
    assert all(0 <= t.cpu < (os.cpu_count() or 1) for t in threads.values())
    steal = runqueue._steal_ns()
    assert not steal or set(steal) == set(range(len(steal)))
