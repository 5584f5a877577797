"""Run history (one line per run) and the bootstrap baseline comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.report.baseline import compare_to_baseline, not_compared
from harness.report.history import append_history, load_history
from harness.report.results import ResultsWriter, TurnRecord, load_results


def _run(ttfa_ms, stop_ms=None) -> list[TurnRecord]:
    recs = []
    for i, v in enumerate(ttfa_ms):
        m = {"ttfa_ms": float(v)}
        if stop_ms is not None:
            m["stop_latency_ms"] = float(stop_ms[i])
        recs.append(TurnRecord(test="t", turn=f"u{i}", metrics=m))
    return recs


def _ttfa(rng, n=40, shift_ms=0.0):
    """TTFA of a clean agent: ~520 ms median, a right tail (log-normal), like the reference
    agent's p50 472 / p95 589 ms."""
    return shift_ms + 400.0 + rng.lognormal(np.log(120.0), 0.35, n)


def test_append_and_load_history(tmp_path, run_dir):
    res = load_results(run_dir)
    path = append_history(tmp_path, res)
    append_history(tmp_path, res)  # the same run again: not a second line
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["started"] == res["run"]["started"] and entry["turns"] == len(res["turns"])
    assert entry["summary"]["ttfa_ms"]["p95"] == res["summary"]["ttfa_ms"]["p95"]
    assert sum(entry["verdicts"].values()) == len(res["turns"])
    res["run"]["started"] = "2099-01-01T00:00:00+00:00"
    append_history(tmp_path, res)
    with open(path, "a") as f:
        f.write('{"started": "half a line')  # a run killed mid-write
    hist = load_history(tmp_path)
    assert [h["started"] for h in hist][-1] == "2099-01-01T00:00:00+00:00" and len(hist) == 2
    assert load_history(tmp_path, limit=1) == hist[-1:]
    assert load_history(tmp_path / "none") == []


def test_same_distribution_is_no_regression():
    """Ten pairs of clean runs drawn from one distribution: never a regression."""
    for seed in range(10):
        rng = np.random.default_rng(seed)
        base, cur = _run(_ttfa(rng)), _run(_ttfa(rng))
        assert compare_to_baseline(cur, base, seed=seed) == [], seed


def test_200ms_slower_is_a_regression_with_how_much_and_how_sure():
    rng = np.random.default_rng(7)
    base = _run(_ttfa(rng), stop_ms=rng.normal(90, 10, 40))
    cur = _run(_ttfa(rng, shift_ms=200.0), stop_ms=rng.normal(90, 10, 40))
    regs = compare_to_baseline(cur, base)
    assert {(r.metric, r.percentile) for r in regs} == {("ttfa_ms", "p50"), ("ttfa_ms", "p95")}
    for r in regs:
        assert r.ci_low_ms > r.noise_floor_ms and r.ci_low_ms <= r.diff_ms <= r.ci_high_ms
        assert 100 < r.diff_ms < 300
    p50 = next(r for r in regs if r.percentile == "p50")
    msg = p50.message
    assert msg.startswith(f"ttfa_ms p50 +{p50.diff_ms:.0f} ms (95% CI +")
    assert f"baseline {p50.baseline_ms:.0f} ms -> {p50.current_ms:.0f} ms" in msg
    # the comparison is reproducible (seeded) and symmetric: faster is not a regression
    assert compare_to_baseline(cur, base) == regs
    assert compare_to_baseline(base, cur) == []


def test_small_shift_under_noise_floor_and_too_few_turns():
    rng = np.random.default_rng(3)
    x = _ttfa(rng, n=200)
    assert compare_to_baseline(_run(x + 8.0), _run(x)) == []  # sure, but under 10 ms
    assert compare_to_baseline(_run(x[:4] + 500), _run(x[:4])) == []  # 4 turns: no verdict
    regs = compare_to_baseline(_run(x[:5] + 500), _run(x[:5]), percentiles=("p50",))
    assert [r.metric for r in regs] == ["ttfa_ms"]


def test_a_comparison_that_did_not_compare_says_so_per_metric():
    """Too few turns of a metric in either run: no verdict, and a line that says which
    metric, how many turns and how many are needed (before, the run said "no regression")."""
    rng = np.random.default_rng(4)
    x = _ttfa(rng, n=20)
    cur = _run(x, stop_ms=[100.0] * 20)[:17] + _run(x[:3], stop_ms=[900.0] * 3)
    for r in cur[:17]:
        del r.metrics["stop_latency_ms"]
    base = _run(x, stop_ms=rng.normal(90, 15, 20))
    assert compare_to_baseline(cur, base) == []  # stop latency 900 ms, but 3 turns: no verdict
    (row,) = not_compared(cur, base)
    assert (row.metric, row.n_current, row.n_baseline, row.needed) == ("stop_latency_ms", 3, 20, 5)
    assert (
        row.message
        == "not compared: stop_latency_ms has 3 turn(s) in this run, 5 needed (use --repeat)"
    )
    assert not_compared(base, base) == []


def test_compares_results_files(tmp_path):
    """Accepts results.json dicts (as loaded) and skips discarded turns."""
    rng = np.random.default_rng(11)
    runs = {}
    for name, shift in (("base", 0.0), ("slow", 250.0)):
        w = ResultsWriter(tmp_path / name, run_info={"dut": name})
        for r in _run(_ttfa(rng, n=20, shift_ms=shift)):
            w.add(r)
        # a discarded turn with an absurd number must not move anything
        w.add(TurnRecord(test="t", turn="d", metrics={"ttfa_ms": 1e6}, verdict="discarded"))
        w.finish()
        runs[name] = load_results(tmp_path / name)
    assert compare_to_baseline(runs["base"], runs["base"]) == []
    regs = compare_to_baseline(runs["slow"], runs["base"])
    assert regs and all(r.n_current == 20 for r in regs)
    raw = json.loads((tmp_path / "slow" / "results.json").read_text())
    assert compare_to_baseline(raw, runs["base"]) == regs


@pytest.mark.parametrize("pct", ["p50", "p95"])
def test_stop_latency_regression(pct):
    rng = np.random.default_rng(5)
    ttfa = _ttfa(rng)
    base = _run(ttfa, stop_ms=rng.normal(90, 15, 40))
    cur = _run(ttfa, stop_ms=rng.normal(400, 15, 40))  # no-cancel: the reply plays on
    regs = compare_to_baseline(cur, base, percentiles=(pct,))
    assert [(r.metric, r.percentile) for r in regs] == [("stop_latency_ms", pct)]


def test_finish_run_leaves_everything(tmp_path, run_dir):
    """finish_run: summary, regressions in results.json, history line, categories,
    environment, report.html, and the text the plugin prints."""
    from harness.report.run import finish_run

    rng = np.random.default_rng(2)
    base_dir = tmp_path / "base"
    w = ResultsWriter(base_dir, run_info={"rig": "sim", "dut": "clean"})
    for r in _run(_ttfa(rng, n=20)):
        w.add(r)
    w.finish()
    out = tmp_path / "slow"
    (out / "allure-results").mkdir(parents=True)
    w = ResultsWriter(out, run_info={"rig": "sim", "dut": "reference:fault=serialized-llm"})
    for r in _run(_ttfa(rng, n=20, shift_ms=400.0)):
        w.add(r)
    done = finish_run(
        w,
        {"ttfa_ms": {"p95": 1500.0}},
        baseline=base_dir,
        environment={"rig": "sim", "DUT firmware": "1.0"},
        use_allure=False,
    )
    assert done.regressions and done.report_path == out / "report.html"
    saved = load_results(out)
    assert saved["regressions"] == [r.message for r in done.regressions]
    assert saved["run"]["finished"] and saved["summary"]["ttfa_ms"]["budget"] == {"p95": 1500.0}
    assert len(load_history(out / "history")) == 1
    assert (out / "allure-results" / "categories.json").is_file()
    assert "DUT\\ firmware=1.0" in (out / "allure-results" / "environment.properties").read_text()
    assert "Regressions against the baseline" in done.report_path.read_text()
    assert done.text.splitlines()[0].startswith("metric")
    assert "regressions against" in done.text and f"report: {out / 'report.html'}" in done.text
