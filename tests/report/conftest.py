"""A real run for the report tests: four synthetic turns (one barge-in), measured by
harness.analysis and written by ResultsWriter, built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.report.plots import timeline_png
from harness.report.results import ResultsWriter
from tests.report.helpers import HOSTILE, real_turn

BUDGETS = {
    "ttfa_ms": {"p50": 1000.0, "p95": 1500.0},
    "stop_latency_ms": {"p95": 200.0},
    "residual_ms": {"max": 400.0},
}
# (seed, barge-in): seeds 1 and 2 give short turns (5-7 s); 5 a barge-in turn.
TURNS = ((1, False), (2, False), (5, True), (3, False))


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, sources) -> Path:
    """OUT of a finished run: results.json/.jsonl/.csv, captures, metrics, timelines."""
    out = tmp_path_factory.mktemp("run") / "out"
    w = ResultsWriter(out, run_info={"rig": "sim", "dut": "reference", "note": HOSTILE})
    for i, (seed, barge) in enumerate(TURNS):
        r = real_turn(sources, out, seed, barge_in=barge, transcript=HOSTILE)
        if i < 2:  # the other turns get their timeline drawn by the report itself
            rel = str(Path(r.evidence["capture_wav"]).with_name("timeline.png"))
            timeline_png(out / rel, out / r.evidence["capture_wav"], None, r)
            r.evidence["timeline_png"] = rel
        w.add(r)
    w.finish(BUDGETS)
    return out


@pytest.fixture
def run_copy(run_dir, tmp_path) -> Path:
    """A private copy of the run, for tests that write into OUT."""
    dest = tmp_path / "out"
    shutil.copytree(run_dir, dest)
    return dest
