"""A turn measured while the host stalled is played again, and only the stalls tympan saw
itself, inside what a rule measured, excuse it: the probe thread, the session's replay with
the harness's process really stopped and continued (as the hypervisor or another tenant
would keep it off the CPU), and a thread of its own holding the GIL (as an in-process DUT's
C call would)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness.hostprobe import HostProbe
from harness.session import HarnessSession, RunSettings
from tests.gil import BACKTRACK, gil_holding_text

REPO = Path(__file__).resolve().parents[2]


def stall() -> str:
    """A string whose match holds the GIL for >= 0.3 s on this machine."""
    return gil_holding_text(0.3)


def test_the_probe_sees_a_stall_where_it_happened():
    text = stall()
    probe = HostProbe().start()
    try:
        time.sleep(0.2)
        quiet_until = time.monotonic()
        BACKTRACK.match(text)  # the GIL held inside the regex engine
        stalled_until = time.monotonic()
        held_ms = (stalled_until - quiet_until) * 1000
        time.sleep(0.05)
        during = probe.worst_lag_ms(quiet_until, stalled_until)
        assert during > 0.8 * held_ms - 20, (during, held_ms)
        assert probe.worst_lag_ms(quiet_until - 0.15, quiet_until - 0.05) < during
    finally:
        probe.stop()


def real_time_sim(tmp_path: Path) -> str:
    """The sim profile with its scripted DUT paced to the wall clock: the host's stalls
    touch it as they would a real DUT running in the harness's process."""
    text = (REPO / "fixtures" / "sim.toml").read_text()
    text = text.replace("# real_time = false", "real_time = true")
    # a short reply: a paced turn lasts as long as its audio
    text = text.replace('reply = "corpus:lq07_sky_blue"', 'reply = "tone:440:0.6"')
    assert "real_time = true" in text and "tone:440" in text
    path = tmp_path / "sim_real_time.toml"
    path.write_text(text)
    return str(path)


# A host stall, for real: the process stopped (SIGSTOP) by another process and continued,
# as the hypervisor or a busier tenant keeps a process off the CPU. Stops until `until`
# exists; always continues the process it stopped.
STALLER = """
import os, signal, sys, time
pid, stop_s, run_s, until = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
time.sleep(run_s)
while not os.path.exists(until):
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(stop_s)
    finally:
        os.kill(pid, signal.SIGCONT)
    time.sleep(run_s)
"""


@contextlib.contextmanager
def host_stalls(until: Path, *, stop_s: float = 0.2, run_s: float = 0.3):
    child = subprocess.Popen(
        [sys.executable, "-c", STALLER, str(os.getpid()), str(stop_s), str(run_s), str(until)]
    )
    try:
        yield
    finally:
        until.parent.mkdir(parents=True, exist_ok=True)
        until.touch()
        child.wait(timeout=10)


def check(outcome, name):
    return next(c for c in outcome.checks if c.name == name)


def test_a_turn_during_a_host_stall_is_played_again(tmp_path):
    settings = RunSettings(rig=real_time_sim(tmp_path), dut="scripted", out_dir=tmp_path / "out")
    first_capture = tmp_path / "out" / "turns" / "sq01_time" / "capture.wav"
    with HarnessSession(settings) as session, host_stalls(first_capture):
        outcome = session.turn("sq01_time")
    kept, replayed = check(outcome, "the host kept up"), check(outcome, "no audio glitches")
    assert "attempt 1: the host stalled the harness for" in replayed.message, replayed
    assert kept.passed, kept.message  # the second attempt ran on a host that kept up
    assert first_capture.is_file()  # evidence
    assert (tmp_path / "out" / "turns" / "sq01_time.attempt2" / "capture.wav").is_file()
    assert outcome.metrics.ttfa_ms is not None


def test_a_turn_stalled_through_every_attempt_is_not_measured(tmp_path):
    settings = RunSettings(rig=real_time_sim(tmp_path), dut="scripted", out_dir=tmp_path / "out")
    with HarnessSession(settings) as session:
        session.turn("sq03_timer")
        with host_stalls(tmp_path / "enough"):
            outcome = session.turn("sq01_time")
        # The pytest run's budget values and results.json's summary are the same: the
        # stalled turn is counted in both and in the percentiles of neither.
        ttfa = session.samples()["ttfa_ms"]
        summary = session.summary()["ttfa_ms"]
        assert [s.value is None for s in ttfa] == [False, True]
        assert summary["n"] == 1 and summary["discarded"] == 1
        assert summary["p50"] == ttfa[0].value
    kept = check(outcome, "the host kept up")
    assert not kept.passed and "after 3 attempt(s)" in kept.message
    assert "inside the TTFA interval" in kept.message
    # the stalls are placed on the capture, in its timeline, and none after it ended
    assert outcome.stalls.over(150.0)
    assert all(
        s.end_s > 0.0 and s.start_s < outcome.stalls.capture_end_s for s in outcome.stalls.stalls
    )
    assert not any(s.in_process for s in outcome.stalls.stalls)  # the process got no CPU
    # a rule on a duration is excused only by the stalls inside its own interval
    for c in outcome.checks:
        if not c.passed and c.interval_s is not None:
            assert c.over_ms > outcome.stalls.overlap_ms(*c.interval_s), c
    # kept as evidence, out of the percentiles: a discard with the reason
    assert outcome.record.discard.startswith("host_stalled: the host stalled the harness")
    assert (tmp_path / "out" / "turns" / "sq01_time.attempt3" / "capture.wav").is_file()


def test_a_stall_of_the_process_the_dut_shares_excuses_nothing(tmp_path):
    """A thread of the harness's own process holding the GIL (what the in-process DUT's
    blocking C call would look like) is not the host: no replay, no excuse, and the
    record says why."""
    settings = RunSettings(rig=real_time_sim(tmp_path), dut="scripted", out_dir=tmp_path / "out")
    stop = threading.Event()

    def keep_stalling() -> None:
        while not stop.is_set():
            BACKTRACK.match(stall())
            time.sleep(0.1)

    with HarnessSession(settings) as session:
        stall()  # calibrated before the turn
        hog = threading.Thread(target=keep_stalling, daemon=True)
        hog.start()
        try:
            outcome = session.turn("sq01_time")
        finally:
            stop.set()
            hog.join()
    kept = check(outcome, "the host kept up")
    assert "while the DUT ran in it: maybe the DUT's own" in kept.message, kept.message
    assert outcome.stalls.unattributed  # the hog's stalls: seen, and not put on the host
    assert not any(s.in_process for s in outcome.stalls.excusing)
    # On a quiet host nothing else stalled the turn: no replay and no discard. A busy host
    # (its run queue long while the hog ran) may add stalls of its own, which do count.
    if not outcome.stalls.over(150.0):
        assert outcome.record.discard is None and kept.passed


def test_a_rig_faster_than_real_time_is_not_replayed_for_a_stall(tmp_path):
    """The scripted sim runs as fast as the CPU allows: a stall cannot change a figure."""
    settings = RunSettings(rig="sim", dut="scripted", out_dir=tmp_path / "out")
    with HarnessSession(settings) as session, host_stalls(tmp_path / "enough", run_s=0.1):
        outcome = session.turn("sq01_time")
    kept = check(outcome, "the host kept up")
    assert kept.passed and "faster than real time" in kept.message
    assert not (tmp_path / "out" / "turns" / "sq01_time.attempt2").exists()


def test_tympan_run_tells_unmeasured_turns_from_broken_contracts():
    from harness.cli.run import _failed_checks

    def turn(name, *checks):
        return {
            "turn": name,
            "checks": [
                dict(zip(("contract", "passed", "message"), c, strict=True)) for c in checks
            ],
        }

    results = {
        "turns": [
            turn(
                "a",
                ("infrastructure", False, "[infrastructure] the host stalled ..."),
                ("budget", True, ""),
            ),
            turn("b", ("cancellation", False, "[cancellation] stop latency 480 ms")),
        ],
        "summary": {"ttfa_ms": {"passed": False, "budget": {"p95": 1500.0}}},
    }
    assert _failed_checks(results) == [
        "b: [cancellation] stop latency 480 ms",
        "budget ttfa_ms: {'p95': 1500.0}",
    ]
    assert _failed_checks(results, infrastructure=True) == [
        "a: [infrastructure] the host stalled ..."
    ]
