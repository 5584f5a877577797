"""The fault-knob matrix and `--baseline`: each classic pipeline mistake of the reference
agent makes the conformance suite fail, naming the broken contract, with a non-zero exit;
the clean agent passes; a clean run against a clean run shows no regression, and the
deliberately slowed agent (serialized-llm) is flagged as one, with by how much and how sure.

Each run is a real `tympan run` with the reference agent's real engines. The clean runs
play the whole conformance suite (every contract, the budgets included; a few turns of each
behaviour); a fault run plays the suite tests that detect its fault, to keep CI fast. The
three runs that are compared (the clean baseline, the clean rerun and serialized-llm) go one
after the other, each beside two short fault runs (`PHASES`), so they share the machine
alike; two compared runs side by side starved each other (host stalls of 0.8-1.4 s, turns
discarded, too few left for a verdict). The GIL-holding call (a C call on the agent's loop
that every thread of its process waits for, the agent's own watchdog included) is played
on the sim rig, where the agent shares the harness's process, and on the JACK loopback,
where it does not, each once beside the other runs and once beside a CPU hog. Sharing the
host on purpose, the runs judge latency on the shipped budgets doubled
(`shared_host_budgets.toml`); the loopback suite of `make test` judges the shipped ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

# the fixture plays every run of the module (about 5 minutes on 2 cores)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

STREAMING = "test_01_streaming"
BARGE_IN = "test_02_barge_in and 500ms"
GIL_TEST = "test_no_stalls"  # one long question: a GIL hold per clause
# The whole suite at --limit 1: a long question, the longest reply (back-pressure), three
# barge-ins, a short question, a pause trap, the budgets and turn-taking rates: seven turns
# (a baseline verdict needs five; long replies show serialisation most).
CLEAN = "test_"
CLEAN_LIMIT = 1
BUDGETS = Path(__file__).with_name("shared_host_budgets.toml")

FAULTS = {
    "token-tts": (STREAMING, "[chunking] no chunk below the minimum"),
    "unbounded-queue": (STREAMING, "[chunking] TTS queue bounded (back-pressure)"),
    "blocking-call": (STREAMING, "[chunking] no event-loop stall"),
    "gil-holding-call": (GIL_TEST, "[chunking] no event-loop stall"),
    "partial-to-llm": (STREAMING, "[turn-taking] LLM waits for the end of utterance"),
    "no-cancel": (BARGE_IN, "[cancellation] device cancels LLM and TTS"),
    "stale-audio": (BARGE_IN, "[cancellation] reply stops on barge-in"),
}
"""Fault -> (selection, the contract and rule its failure names). serialized-llm is checked
with the baseline below."""

GIL_RUNS = {
    "gil-loopback": ("loopback", False),
    "gil-sim-hog": ("sim", True),
    "gil-loopback-hog": ("loopback", True),
}
"""The GIL-holding call's other runs (its plain sim run is in `FAULTS`): name -> (rig,
beside a CPU hog)."""

HOG = "while True:\n    pass\n"


def tympan_run(
    out: Path,
    dut: str,
    selection: str,
    limit: int = 1,
    baseline: Path | None = None,
    rig: str = "sim",
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "harness.cli", "run", "--rig", rig, "--dut", dut]
    cmd += ["--out", str(out), "--limit", str(limit), "--budgets", str(BUDGETS)]
    if baseline is not None:
        cmd += ["--baseline", str(baseline)]
    cmd += ["--", "-k", selection]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, check=False, env=dict(os.environ)
    )


def failed_checks(out: Path) -> list[str]:
    turns = json.loads((out / "results.json").read_text())["turns"]
    return [c["message"] for t in turns for c in t["checks"] if not c["passed"]]


def output(done: subprocess.CompletedProcess) -> str:
    return done.stdout[-4000:] + done.stderr[-2000:]


def assert_clean(done: subprocess.CompletedProcess[str]) -> None:
    """Every contract held. Exit 3 says something could not be judged: a turn could not be
    measured on this host (it stalled through all three attempts, `[infrastructure]`: out of
    the percentiles and the baseline, the rest were judged), a budget's percentile had too
    few turns (nine turns judge no p95), or a metric had too few turns to compare with the
    baseline ("not compared"); the output says which."""
    assert done.returncode == 3, output(done)  # nine turns judge no p95 budget
    assert "every contract held on what could be judged" in done.stdout, output(done)
    assert "budgets NOT JUDGED on too few turns" in done.stdout, output(done)
    if "could not measure:" in done.stdout:
        lines = done.stdout.split("could not measure:", 1)[1].split("tympan run:", 1)[0]
        warnings.warn(f"clean run partly unmeasured on this host:{lines}", stacklevel=2)


@dataclass
class Matrix:
    """Every run of the module: (out folder, finished `tympan run`) by name."""

    clean: tuple[Path, subprocess.CompletedProcess[str]]
    rerun: tuple[Path, subprocess.CompletedProcess[str]]
    slow: tuple[Path, subprocess.CompletedProcess[str]]
    faults: dict[str, tuple[Path, subprocess.CompletedProcess[str]]]


PHASES = (
    ("clean", ("token-tts", "unbounded-queue", "gil-holding-call")),
    ("rerun", ("blocking-call", "no-cancel")),
    ("slow", ("partial-to-llm", "stale-audio", "gil-loopback")),
)
"""Each compared run (7 turns, ~100 s) with the fault runs (1-2 turns, 20-65 s each) that
play one after the other beside it; a phase ends when all its runs have. The GIL runs
beside a CPU hog play last, two at a time. The loopback GIL fault plays beside the slowed
agent, not beside the clean rerun: beside it, twice (a fresh clone at 15e767e, and at
f0f7dbd), the clean agent's loop lagged 363-534 ms on its 200 ms barge-in turn with neither
tympan's probe nor the kernel's run-queue and steal counts showing the host's hand (six
more trials of that turn beside it: under 70 ms). What it waited on is not known; the
agent's loop_stall now names where its loop was (``where``)."""


@contextlib.contextmanager
def cpu_hog():
    """A process that keeps one core busy for as long as the block runs (stopped by PID)."""
    hog = subprocess.Popen([sys.executable, "-c", HOG])
    try:
        yield hog
    finally:
        hog.kill()
        hog.wait(timeout=10)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Matrix:
    """All the runs, in `PHASES`: the clean baseline, then the clean rerun, then
    serialized-llm (both against the baseline), each beside two fault runs."""
    names = ("clean", "rerun", "slow", *FAULTS, *GIL_RUNS)
    outs = {name: tmp_path_factory.mktemp(name) for name in names}
    baseline = outs["clean"] / "results.json"
    compared = {
        "clean": ("reference", None),
        "rerun": ("reference", baseline),
        "slow": ("reference:fault=serialized-llm", baseline),
    }

    def fault_run(n: str) -> subprocess.CompletedProcess[str]:
        if n in GIL_RUNS:
            rig = GIL_RUNS[n][0]
            return tympan_run(outs[n], "reference:fault=gil-holding-call", GIL_TEST, rig=rig)
        return tympan_run(outs[n], f"reference:fault={n}", FAULTS[n][0])

    def faults(names: tuple[str, ...]) -> dict[str, subprocess.CompletedProcess[str]]:
        return {n: fault_run(n) for n in names}

    done: dict[str, subprocess.CompletedProcess[str]] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for name, beside in PHASES:
            dut, against = compared[name]
            run = pool.submit(tympan_run, outs[name], dut, CLEAN, CLEAN_LIMIT, against)
            side = pool.submit(faults, beside)
            done[name] = run.result()
            done |= side.result()
        hogged = [n for n, (_, hog) in GIL_RUNS.items() if hog]
        with cpu_hog():
            done |= dict(zip(hogged, pool.map(fault_run, hogged), strict=True))
    return Matrix(
        clean=(outs["clean"], done["clean"]),
        rerun=(outs["rerun"], done["rerun"]),
        slow=(outs["slow"], done["slow"]),
        faults={name: (outs[name], done[name]) for name in (*FAULTS, *GIL_RUNS)},
    )


def test_the_clean_agent_passes_and_a_clean_rerun_is_no_regression(matrix):
    assert_clean(matrix.clean[1])
    out, again = matrix.rerun
    assert_clean(again)
    assert "no regression against" in again.stdout
    # Its 3 barge-in turns are too few to compare stop latency: said per metric, recorded,
    # and the run is inconclusive (exit 3), never a plain "no regression".
    results = json.loads((out / "results.json").read_text())
    stop = [n for n in results["not_compared"] if n.startswith("not compared: stop_latency_ms")]
    assert stop and "5 needed (use --repeat)" in stop[0], results["not_compared"]
    assert stop[0] in again.stdout
    assert "NOT COMPARED with the baseline" in again.stdout, output(again)
    assert again.returncode == 3 and "in what was compared" in again.stdout, output(again)


def test_serialized_llm_breaks_chunking_and_is_a_regression(matrix):
    out, slow = matrix.slow
    assert slow.returncode == 1, output(slow)
    assert "[chunking] first chunk reaches TTS before the LLM is done" in slow.stdout
    regressions = json.loads((out / "results.json").read_text())["regressions"]
    # the stage the fault slows is flagged every time (60 -> 180 ms at p50 in CI); TTFA
    # moves by as much, but on mostly one-sentence replies that shift is within the noise
    # of eight turns on a shared host, so it is flagged on some runs and not on others
    assert any(r.startswith("first_chunk_ms") for r in regressions), regressions
    assert all("95% CI" in r for r in regressions)  # how sure, not a bare threshold
    assert "REGRESSIONS against" in slow.stdout


def test_the_clean_runs_cover_every_contract(matrix):
    """The clean runs' "every contract held" covers every rule of the suite: each check
    that applies to a turn of the loopback's full suite applied to a turn here too."""
    out, _ = matrix.clean
    results = json.loads((out / "results.json").read_text())
    applied = {c["id"] for t in results["turns"] for c in t["checks"]}
    for rule in (
        "turn-taking.a_reply_is_heard",
        "turn-taking.no_reply_inside_a_mid_sentence_pause",
        "chunking.no_event_loop_stall",
        "chunking.tts_queue_bounded_back_pressure",
        "cancellation.reply_stops_on_barge_in",
        "cancellation.the_barge_in_is_answered",
        "cancellation.a_stop_request_is_met_with_silence",
    ):
        assert rule in applied, sorted(applied)
    categories = {t["category"] for t in results["turns"]}
    assert {"long_question", "short_question", "pause"} <= categories, categories
    assert results["summary"]["ttfa_ms"]["budget"], results["summary"]["ttfa_ms"]
    offsets = {t.get("barge_in_offset_ms") for t in results["turns"]} - {None}
    assert offsets == {200.0, 500.0, 1000.0}, offsets


@pytest.mark.parametrize("fault", [*FAULTS, *GIL_RUNS])
def test_each_fault_breaks_its_contract(matrix, fault):
    _, contract = FAULTS.get(fault) or FAULTS["gil-holding-call"]
    out, done = matrix.faults[fault]
    assert done.returncode == 1, output(done)
    # pytest's failure names the contract and the rule; the turn's record keeps it too
    assert contract in done.stdout, output(done)
    tag = contract.split(" ", 1)[0]
    assert any(m.startswith(tag) for m in failed_checks(out))
    assert "FAILED (exit 1)" in done.stdout
