"""One shape of a judged turn (harness.records): the pytest run's budget verdicts and
results.json's summary are made of the same values, so they agree, also on a run with a
turn the analysis discarded and one the host stalled through."""

from __future__ import annotations

import pytest

from harness.assertions import check_budget
from harness.budgets import Budget, Budgets
from harness.records import (
    TURNS_NEEDED,
    Check,
    TurnRecord,
    check_id,
    metric_values,
    percentile,
    samples,
)
from harness.report.results import summarize


def _record(name: str, ttfa_ms: float | None, **kw) -> TurnRecord:
    metrics = {
        "ttfa_ms": ttfa_ms,
        "ttfa_content_ms": ttfa_ms,
        "segments": [[2.0, 3.0], [3.5, 5.0]] if ttfa_ms is not None else [],
        "gaps_ms": [500.0] if ttfa_ms is not None else [],
    }
    metrics.update(kw.pop("metrics", {}))
    return TurnRecord(
        test=f"t::{name}",
        turn=name,
        metrics=metrics,
        evidence={"capture_wav": f"turns/{name}/capture.wav"},
        **kw,
    )


def _run() -> list[TurnRecord]:
    return [
        _record("a", 600.0, stages_ms={"llm_ttft_ms": 150.0}),
        _record("b", 900.0, stages_ms={"llm_ttft_ms": 160.0}),
        _record("c", 1400.0, stages_ms={"llm_ttft_ms": 170.0}),
        # the analysis refused it: counted, not in the percentiles
        _record("refused", None, discard="too_noisy: reply only 5.0 dB above the noise floor"),
        # the host stalled through every attempt: its figures are there, but not trusted
        _record(
            "stalled",
            2900.0,
            stages_ms={"llm_ttft_ms": 2000.0},
            discard="host_stalled: the host stalled the harness for 400 ms during the turn",
        ),
        # a barge-in: the silence after the interruption is the user's turn, not a stall
        _record(
            "barge",
            700.0,
            metrics={
                "barge_in_onset_s": 3.2,
                "stop_latency_ms": 120.0,
                "residual_ms": 0.0,
                "segments": [[2.0, 2.6], [2.8, 3.3], [5.0, 6.0]],
                "gaps_ms": [200.0, 1700.0],
            },
        ),
    ]


BUDGETS = Budgets(
    latency=(
        Budget("ttfa_ms", "p50", 1000.0),
        Budget("ttfa_ms", "p95", 1300.0),
        Budget("max_gap_ms", "max", 600.0),
        Budget("stop_latency_ms", "p95", 200.0),
        Budget("llm_ttft_ms", "p95", 600.0),
    )
)


def test_budget_verdicts_of_the_pytest_run_and_the_summary_agree():
    records = _run()
    per_metric = samples(records)
    summary = summarize(records, BUDGETS.as_mapping())
    verdicts: dict[str, list[bool]] = {}
    for budget in BUDGETS.latency:
        check = check_budget(budget, per_metric[budget.metric])
        row = summary[budget.metric]
        assert check.passed == (row[budget.percentile] <= budget.limit), (budget, check, row)
        got = percentile([s.value for s in per_metric[budget.metric]], budget.percentile)
        assert got == pytest.approx(row[budget.percentile]), budget
        assert f"{row['discarded']} turn(s) discarded" in check.message
        # held on fewer turns than the percentile needs: not judged, in both
        verdicts.setdefault(budget.metric, []).append(check.passed if check.applicable else None)
    for metric, seen in verdicts.items():
        expected = False if False in seen else None if None in seen else True
        assert expected == summary[metric]["passed"], (metric, seen, summary[metric])
    # what each verdict is made of: the stalled turn's 2900 ms is in neither
    assert summary["ttfa_ms"]["n"] == 4 and summary["ttfa_ms"]["max"] == 1400.0
    assert not check_budget(BUDGETS.latency[1], per_metric["ttfa_ms"]).passed  # p95 1355
    assert summary["llm_ttft_ms"]["max"] == 170.0
    # the barge-in's 1700 ms silence after the interruption is not a gap; 500 ms ones are
    assert summary["max_gap_ms"]["max"] == 500.0 and summary["max_gap_ms"]["passed"]
    assert per_metric["stop_latency_ms"][0].turn == "refused"  # counted, as None
    assert [s.value for s in per_metric["stop_latency_ms"]] == [None, None, 120.0]


def test_metric_values_are_the_record_s_own_figures():
    (a, *_, barge) = _run()
    assert metric_values(a) == {
        "ttfa_ms": 600.0,
        "ttfa_content_ms": 600.0,
        "max_gap_ms": 500.0,
        "llm_ttft_ms": 150.0,
    }
    assert metric_values(barge)["max_gap_ms"] == 200.0


def test_a_check_has_a_stable_id_and_round_trips_through_json():
    c = Check("infrastructure", "the host kept up", False, "[infrastructure] stalled 400 ms")
    assert c.id == "infrastructure.the_host_kept_up" == check_id(c.contract, c.name)
    d = c.to_dict()
    assert d["id"] == c.id
    assert Check.from_dict(d) == c
    with pytest.raises(ValueError, match=r"unknown percentile 'p42'"):
        percentile([1.0], "p42")


def test_a_budget_held_on_too_few_turns_is_not_judged():
    """A p95 needs 20 turns, a p99 100: on fewer, a budget that holds is "not judged" (in
    the pytest check and in results.json alike); one the turns already break fails."""

    def turns(n, ms):
        return [_record(f"t{i}", ms + i) for i in range(n)]

    p95 = Budget("ttfa_ms", "p95", 1500.0)
    few = turns(9, 600.0)
    check = check_budget(p95, samples(few)["ttfa_ms"])
    assert check.passed and not check.applicable
    assert check.message.startswith("not judged: ttfa_ms p95 from 9 turn(s), 20 needed")
    row = summarize(few, {"ttfa_ms": {"p50": 1000.0, "p95": 1500.0}})["ttfa_ms"]
    assert row["passed"] is None and row["not_judged"] == ["p95: 9 turn(s), 20 needed"]
    # enough turns: judged
    many = turns(20, 600.0)
    assert check_budget(p95, samples(many)["ttfa_ms"]).applicable
    assert summarize(many, {"ttfa_ms": {"p95": 1500.0}})["ttfa_ms"]["passed"] is True
    # already broken on few turns: a failure, not "not judged"
    slow = turns(3, 1600.0)
    broken = check_budget(p95, samples(slow)["ttfa_ms"])
    assert not broken.passed and broken.applicable
    assert summarize(slow, {"ttfa_ms": {"p95": 1500.0}})["ttfa_ms"]["passed"] is False
    assert [TURNS_NEEDED[p] for p in ("p50", "p90", "p95", "p99", "max")] == [2, 10, 20, 100, 1]
