"""Budgets over the whole run: each latency budget's percentile over every turn played so
far (run this module last), and the turn-taking rates (missing replies, pause traps failed).
Discarded turns are counted and named but left out of the percentiles."""

from __future__ import annotations

import pytest

from harness.assertions import ContractError, check_budget
from harness.budgets import load_budgets
from harness.fusion import STAGES


def _budget_ids():
    # the shipped defaults name the cases; the run's own file decides the limits
    return [
        pytest.param(b.metric, b.percentile, id=f"{b.metric}-{b.percentile}")
        for b in load_budgets().latency
    ]


@pytest.mark.parametrize(("metric", "percentile"), _budget_ids())
def test_latency_budget(tympan_session, budgets, metric, percentile):
    samples = tympan_session.samples().get(metric, [])
    if not tympan_session.outcomes:
        pytest.skip("no turns were played in this run (select the suite's turn tests too)")
    if not samples:
        pytest.skip(f"no turn of this run measures {metric} (no such turn)")
    if metric in STAGES and all(s.value is None for s in samples):
        pytest.skip(f"{metric} comes from device telemetry, and this DUT sent none")
    limits = [b for b in budgets.for_metric(metric) if b.percentile == percentile]
    if not limits:
        pytest.skip(f"{budgets.source} has no {metric} {percentile} budget")
    check = check_budget(limits[0], samples)
    if not check.applicable:  # held on too few turns: said, not passed
        pytest.skip(check.message)
    if not check.passed:
        raise ContractError(f"[budget] {check.message}")


def test_turn_taking_rates(tympan_session, budgets):
    if not tympan_session.outcomes:
        pytest.skip("no turns were played in this run")
    rules = budgets.turn_taking
    rates = tympan_session.check_rates()
    problems = []
    for check_id, limit in (
        ("turn-taking.a_reply_is_heard", rules.max_missing_rate),
        ("turn-taking.no_reply_inside_a_mid_sentence_pause", rules.max_cut_off_rate),
    ):
        rate = rates.get(check_id)
        if rate is None or not rate.applicable:
            continue
        bad, n = rate.failed, rate.applicable
        if bad / n > limit:
            problems.append(
                f"{rate.label}: failed in {bad} of {n} turns ({bad / n:.0%} > {limit:.0%})"
            )
    if problems:
        raise ContractError("[turn-taking] " + "; ".join(problems))
