"""`tympan report OUT`: re-render from saved data; exit 2 with one line for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.report.results import load_results

ROOT = Path(__file__).resolve().parents[2]


def tympan(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TYMPAN_ALLURE": "/nonexistent/allure.js"}  # tympan's page only
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_report_rerenders_from_results(run_copy):
    (run_copy / "report.html").write_text("old")
    done = tympan("report", str(run_copy), "--no-allure")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:2] == ["metric", "n"]
    p95 = load_results(run_copy)["summary"]["ttfa_ms"]["p95"]
    assert any(x.startswith("ttfa_ms") and f"{p95:.1f}" in x for x in lines)
    assert "worst ttfa_ms:" in done.stdout and "worst stop_latency_ms:" in done.stdout
    assert f"report: {run_copy / 'report.html'}" in done.stdout
    assert 'id="latency-table"' in (run_copy / "report.html").read_text()


def test_report_of_an_interrupted_run(run_copy):
    """A run killed before finish(): no budgets, still a report from the turns."""
    res = json.loads((run_copy / "results.json").read_text())
    res["summary"] = {}
    res["run"]["finished"] = None
    (run_copy / "results.json").write_text(json.dumps(res))
    done = tympan("report", str(run_copy), "--no-allure")
    assert done.returncode == 0, done.stderr
    assert "ttfa_ms" in done.stdout and "PASS" not in done.stdout


@pytest.mark.parametrize(
    ("setup", "expect"),
    [
        ("missing-dir", "no such folder"),
        ("missing-json", "results.json: no such file"),
        ("malformed", "not readable JSON"),
        ("bad-turn", "turn 0 is malformed"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, setup, expect):
    out = tmp_path / "out"
    if setup != "missing-dir":
        out.mkdir()
    if setup == "malformed":
        (out / "results.json").write_text('{"schema_version": 1, "turns": [')
    if setup == "bad-turn":
        (out / "results.json").write_text('{"schema_version": 1, "run": {}, "turns": [7]}')
    if setup == "missing-json":  # once through the real command: exit status, no traceback
        done = tympan("report", str(out))
        assert done.returncode == 2
        assert expect in done.stderr and str(out) in done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
        return
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert expect in err and str(out) in err and len(err.strip().splitlines()) == 1


def test_baseline_regression_exits_1(run_copy, tmp_path):
    """--baseline: a run 300 ms slower on every turn is a regression (exit 1, says by how
    much); the run against itself is not (exit 0)."""
    base = json.loads((run_copy / "results.json").read_text())
    turns = base["turns"]
    # five copies: every metric has the 5 turns a comparison needs
    base["turns"] = [dict(t, turn=f"{t['turn']}#{k}") for k in range(5) for t in turns]
    base["turns"] = json.loads(json.dumps(base["turns"]))
    for i, t in enumerate(base["turns"]):  # a tight clean distribution from 500 ms
        t["metrics"]["ttfa_ms"] = 500.0 + 10.0 * i
    slow = json.loads(json.dumps(base))
    for t in slow["turns"]:
        t["metrics"]["ttfa_ms"] += 300.0
    (tmp_path / "base.json").write_text(json.dumps(base))
    (run_copy / "results.json").write_text(json.dumps(slow))
    done = tympan("report", str(run_copy), "--no-allure", "--baseline", str(tmp_path / "base.json"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "regressions against" in done.stdout and "ttfa_ms p50 +300 ms" in done.stdout
    assert "Regressions against the baseline" in (run_copy / "report.html").read_text()
    (run_copy / "results.json").write_text(json.dumps(base))
    done = tympan("report", str(run_copy), "--no-allure", "--baseline", str(tmp_path / "base.json"))
    assert done.returncode == 0 and "no regression" in done.stdout


def test_baseline_with_too_few_turns_is_inconclusive_exit_3(run_copy, tmp_path):
    """A metric with too few turns in the baseline is not compared: said per metric, in
    results.json and report.html, and the status is 3 (not 0: "no regression" only covers
    what was compared)."""
    base = json.loads((run_copy / "results.json").read_text())
    few = json.loads(json.dumps(base))
    few["turns"] = [t for t in few["turns"] if t["metrics"].get("barge_in_onset_s") is None]
    (tmp_path / "few.json").write_text(json.dumps(few))
    done = tympan("report", str(run_copy), "--no-allure", "--baseline", str(tmp_path / "few.json"))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "not compared: stop_latency_ms has" in done.stdout and "5 needed" in done.stdout
    assert "in what was compared" in done.stdout
    html = (run_copy / "report.html").read_text()
    assert "Not compared with the baseline" in html


@pytest.mark.parametrize(
    ("args", "expect"),
    [(["--worst", "-1"], "--worst -1"), (["--history", "FILE"], "is not a folder")],
)
def test_bad_options_exit_2(run_copy, tmp_path, capsys, args, expect):
    args = [str(tmp_path / "f.txt") if a == "FILE" else a for a in args]
    (tmp_path / "f.txt").write_text("x")
    assert main(["report", str(run_copy), "--no-allure", *args]) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("field", "value"), [("ttfa_ms", "fast"), ("ttfa_ms", float("nan")), ("stop_latency_ms", True)]
)
def test_a_figure_that_is_not_a_number_is_refused_by_name(run_copy, capsys, field, value):
    """A results.json whose ttfa_ms is a string or NaN was read, and the turn silently left
    out of the percentiles; now the file, the turn and the field are named (exit 2)."""
    res = json.loads((run_copy / "results.json").read_text())
    res["turns"][1]["metrics"][field] = value
    (run_copy / "results.json").write_text(json.dumps(res))  # NaN is written as NaN
    assert main(["report", str(run_copy), "--no-allure"]) == 2
    err = capsys.readouterr().err
    name = res["turns"][1]["turn"]
    assert f"turn 1 ({name}): metrics.{field} = " in err and "results.json" in err
    assert len(err.strip().splitlines()) == 1
