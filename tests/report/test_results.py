"""results.jsonl / results.json / results.csv: incremental, crash-safe, documented schema."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness.errors import InputError
from harness.report.results import (
    SCHEMA_VERSION,
    Check,
    ResultsWriter,
    TurnRecord,
    load_results,
    metric_values,
    summarize,
)
from tests.report.conftest import BUDGETS, TURNS
from tests.report.helpers import HOSTILE

ROOT = Path(__file__).resolve().parents[2]


def _rec(i: int, ttfa_ms: float | None, **kw) -> TurnRecord:
    metrics = {"ttfa_ms": ttfa_ms, "segments": [[1.0, 2.0]], "gaps_ms": []}
    metrics.update(kw.pop("metrics", {}))
    return TurnRecord(test=f"t::x[{i}]", turn=f"u{i}", utterance=f"u{i}", metrics=metrics, **kw)


def test_run_files_hold_every_turn(run_dir):
    """The finished run: json, jsonl and csv agree on the turns; schema and run info set."""
    res = load_results(run_dir)
    assert res["schema_version"] == SCHEMA_VERSION
    assert res["run"]["rig"] == "sim" and res["run"]["dut"] == "reference"
    assert res["run"]["finished"] and res["run"]["started"] <= res["run"]["finished"]
    assert res["run"]["tympan_version"]
    assert len(res["turns"]) == len(TURNS)
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["schema_version"] == SCHEMA_VERSION
    turns = [json.loads(x)["turn"] for x in lines[1:-1]]
    assert turns == res["turns"]
    assert "summary" in json.loads(lines[-1])
    with open(run_dir / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["turn"] for r in rows] == [t["turn"] for t in res["turns"]]
    assert rows[0]["transcript"] == HOSTILE
    assert float(rows[0]["ttfa_ms"]) == pytest.approx(res["turns"][0]["metrics"]["ttfa_ms"], 1e-3)
    assert "eou_delay_ms" in rows[0]  # one column per telemetry stage
    for t in res["records"]:
        assert (run_dir / t.evidence["capture_wav"]).is_file()


def test_summary_percentiles_match_numpy(run_dir):
    """Summary p50/p95/p99/max are numpy 'linear' percentiles of the kept turns."""
    res = load_results(run_dir)
    ttfa = [r.metrics["ttfa_ms"] for r in res["records"] if not r.discarded]
    row = res["summary"]["ttfa_ms"]
    assert row["n"] == len(ttfa) == 4
    for name, q in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100)):
        assert row[name] == pytest.approx(np.percentile(ttfa, q, method="linear"), abs=1e-6)
    assert row["budget"] == BUDGETS["ttfa_ms"]
    held = row["p50"] <= 1000 and row["p95"] <= 1500
    # four turns are enough for a p50, not for a p95: a budget that held is not judged
    assert row["passed"] is (None if held else False)
    assert not held or row["not_judged"] == ["p95: 4 turn(s), 20 needed"]
    assert res["summary"]["stop_latency_ms"]["n"] == 1  # only the barge-in turn has one


def test_summary_budget_pass_fail_and_discards():
    """Discarded turns are counted but not in percentiles; budgets decide PASS/FAIL; a
    budgeted metric nobody measured is listed with passed None."""
    recs = [_rec(i, v) for i, v in enumerate([400.0, 500.0, 600.0, 700.0])]
    recs.append(_rec(9, 5000.0, verdict="discarded", discard="too noisy"))
    s = summarize(recs, {"ttfa_ms": {"p95": 690.0}, "stop_latency_ms": {"p95": 200.0}})
    assert s["ttfa_ms"]["n"] == 4 and s["ttfa_ms"]["discarded"] == 1
    assert s["ttfa_ms"]["max"] == 700.0  # the discarded 5000 ms is not in it
    assert s["ttfa_ms"]["p95"] == pytest.approx(685.0)
    assert s["ttfa_ms"]["passed"] is None  # held, on 4 turns: a p95 needs 20
    assert summarize(recs, {"ttfa_ms": {"p50": 690.0}})["ttfa_ms"]["passed"] is True
    s = summarize(recs, {"ttfa_ms": {"p95": 680.0}})
    assert s["ttfa_ms"]["passed"] is False
    s = summarize(recs, {"stop_latency_ms": {"p95": 200.0}})
    assert s["stop_latency_ms"]["n"] == 0 and s["stop_latency_ms"]["passed"] is None
    with pytest.raises(InputError, match="p42"):
        summarize(recs, {"ttfa_ms": {"p42": 1.0}})


def test_metric_values_max_gap_ignores_the_barge_in_pause():
    """max_gap_ms: the longest silence inside the reply, not the user's barge-in turn."""
    r = _rec(0, 500.0, metrics={"segments": [[1, 2], [2.2, 3], [5, 6]], "gaps_ms": [200, 2000]})
    assert metric_values(r)["max_gap_ms"] == 2000
    r.metrics["barge_in_onset_s"] = 3.5
    assert metric_values(r)["max_gap_ms"] == 200
    r = _rec(1, None, metrics={"segments": [], "gaps_ms": []})
    assert metric_values(r) == {}


def test_record_round_trip_and_nan():
    """to_dict/from_dict round-trip; NaN and inf become null (strict JSON)."""
    r = _rec(
        0,
        float("nan"),
        stages_ms={"llm_ttft_ms": 123.4567891, "asr_final_ms": float("inf")},
        stage_spans=[("llm", 1.0, 1.5)],
        checks=[Check("budget", "ttfa", False, "[budget] slow")],
        evidence={"capture_wav": "turns/a/capture.wav"},
        barge_in_offset_ms=500.0,
    )
    d = r.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert d["metrics"]["ttfa_ms"] is None and d["stages_ms"]["asr_final_ms"] is None
    back = TurnRecord.from_dict(json.loads(text))
    assert back.to_dict() == d
    assert back.checks[0].message == "[budget] slow" and back.stage_spans == [("llm", 1.0, 1.5)]
    assert math.isclose(back.stages_ms["llm_ttft_ms"], 123.456789)


def test_writer_is_readable_after_every_turn(tmp_path):
    """After each add(): json, jsonl and csv on disk hold every turn so far."""
    w = ResultsWriter(tmp_path, run_info={"rig": "sim"})
    for i in range(3):
        w.add(_rec(i, 500.0 + i))
        res = load_results(tmp_path)
        assert [t.turn for t in res["records"]] == [f"u{j}" for j in range(i + 1)]
        assert res["run"]["finished"] is None
        assert res["summary"]["ttfa_ms"]["n"] == i + 1
        assert len((tmp_path / "results.jsonl").read_text().splitlines()) == i + 2
        assert len((tmp_path / "results.csv").read_text().splitlines()) == i + 2
    w.finish(BUDGETS)
    assert load_results(tmp_path)["run"]["finished"]
    with pytest.raises(RuntimeError):
        w.add(_rec(9, 1.0))
    with pytest.raises(ValueError, match="verdict"):
        ResultsWriter(tmp_path / "x", run_info={}).add(_rec(1, 1.0, verdict="great"))


def test_killed_run_leaves_finished_turns(tmp_path):
    """SIGKILL in the middle of a run: every turn added before it is readable."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from harness.report.results import ResultsWriter, TurnRecord
        w = ResultsWriter({str(tmp_path)!r}, run_info={{"rig": "sim"}})
        for i in range(3):
            w.add(TurnRecord(test="t", turn=f"u{{i}}", metrics={{"ttfa_ms": 500.0 + i}}))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], check=False)
    assert done.returncode == -signal.SIGKILL
    res = load_results(tmp_path)
    assert [t.turn for t in res["records"]] == ["u0", "u1", "u2"]
    assert res["run"]["finished"] is None
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(x)["turn"]["turn"] for x in lines[1:]] == ["u0", "u1", "u2"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_previous_results_are_kept(tmp_path):
    """A new run into the same OUT moves the old results to OUT/previous/, never loses them."""
    w = ResultsWriter(tmp_path, run_info={"rig": "sim", "dut": "first"})
    w.add(_rec(0, 400.0))
    started = w.run["started"]
    w.finish()
    ResultsWriter(tmp_path, run_info={"rig": "sim", "dut": "second"}).finish()
    assert load_results(tmp_path)["run"]["dut"] == "second"
    kept = list((tmp_path / "previous").iterdir())
    assert len(kept) == 1 and kept[0].name.startswith(started[:10])
    old = load_results(kept[0])
    assert old["run"]["dut"] == "first" and len(old["records"]) == 1
    assert (kept[0] / "results.jsonl").exists() and (kept[0] / "results.csv").exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "no such file"),
        ("{not json", "not readable JSON"),
        ("[]", "expected a JSON object"),
        ('{"run": {}, "turns": []}', "missing key.*schema_version"),
        ('{"schema_version": 99, "run": {}, "turns": []}', "schema_version 99"),
        ('{"schema_version": 1, "run": {}, "turns": [{"x": 1}]}', "turn 0 is malformed"),
        ('{"schema_version": 1, "run": {}, "turns": [], "summary": [1]}', "summary"),
        ('{"schema_version": 1, "run": "x", "turns": []}', "'run' should be an object"),
    ],
)
def test_load_results_errors_name_the_file(tmp_path, content, match):
    if content is not None:
        (tmp_path / "results.json").write_text(content)
    with pytest.raises(InputError, match=match) as err:
        load_results(tmp_path)
    assert str(tmp_path / "results.json") in str(err.value)
