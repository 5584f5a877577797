"""A turn measured while the host stalled is played again: the probe thread, and the
session's replay, with a real thread holding the GIL (as C code in the harness's process,
another tenant's load or the hypervisor would)."""

from __future__ import annotations

import re
import threading
import time

from harness.hostprobe import HostProbe
from harness.session import HarnessSession, RunSettings
from tests.gil import BACKTRACK, gil_holding_text


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


def test_a_turn_during_a_host_stall_is_played_again(tmp_path):
    settings = RunSettings(rig="sim", dut="scripted", out_dir=tmp_path / "out")
    first_capture = tmp_path / "out" / "turns" / "sq01_time" / "capture.wav"

    def stall_until_the_first_attempt_is_saved() -> None:
        while not first_capture.exists():
            BACKTRACK.match(stall())
            time.sleep(0.02)

    with HarnessSession(settings) as session:
        session.turn("sq03_timer")  # engines and rig up before the stall is timed
        hog = threading.Thread(target=stall_until_the_first_attempt_is_saved, daemon=True)
        hog.start()
        outcome = session.turn("sq01_time")
        hog.join()
    kept = next(c for c in outcome.checks if c.name == "the host kept up")
    replayed = next(c for c in outcome.checks if c.name == "no audio glitches")
    assert "attempt 1: the host stalled the harness for" in replayed.message, replayed
    assert kept.passed, kept.message  # the second attempt ran on a host that kept up
    assert (tmp_path / "out" / "turns" / "sq01_time" / "capture.wav").is_file()  # evidence
    assert (tmp_path / "out" / "turns" / "sq01_time.attempt2" / "capture.wav").is_file()
    assert outcome.metrics.ttfa_ms is not None


def test_a_turn_stalled_through_every_attempt_is_not_measured(tmp_path):
    settings = RunSettings(rig="sim", dut="scripted", out_dir=tmp_path / "out")
    with HarnessSession(settings) as session:
        session.turn("sq03_timer")
        stop = threading.Event()

        def keep_stalling() -> None:
            while not stop.is_set():
                BACKTRACK.match(stall())
                time.sleep(0.05)

        hog = threading.Thread(target=keep_stalling, daemon=True)
        hog.start()
        try:
            outcome = session.turn("sq01_time")
        finally:
            stop.set()
            hog.join()
        # The pytest run's budget values and results.json's summary are the same: the
        # stalled turn is counted in both and in the percentiles of neither.
        ttfa = session.samples()["ttfa_ms"]
        summary = session.summary()["ttfa_ms"]
        assert [s.value is None for s in ttfa] == [False, True]
        assert summary["n"] == 1 and summary["discarded"] == 1
        assert summary["p50"] == ttfa[0].value
    kept = next(c for c in outcome.checks if c.name == "the host kept up")
    assert not kept.passed and "after 3 attempt(s)" in kept.message
    # a rule on a duration it missed by less than the stall is not measured, not failed
    stall_ms = float(re.search(r"stalled the harness for (\d+) ms", kept.message).group(1))
    assert not [
        c
        for c in outcome.checks
        if not c.passed and c.over_ms is not None and c.over_ms <= stall_ms
    ]
    # kept as evidence, out of the percentiles: a discard with the reason
    assert outcome.record.discard.startswith("host_stalled: the host stalled the harness")
    assert (tmp_path / "out" / "turns" / "sq01_time.attempt3" / "capture.wav").is_file()


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
