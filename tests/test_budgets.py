"""Budget files: merged over the defaults, strict about keys, percentiles as numpy's."""

from __future__ import annotations

import numpy as np
import pytest

from harness.budgets import Budget, evaluate, load_budgets, percentile
from harness.errors import InputError


def test_defaults_hold_the_seed_budgets():
    b = load_budgets()
    limits = b.as_mapping()
    assert limits["ttfa_ms"]["p95"] == 1500.0
    assert limits["stop_latency_ms"]["p95"] == 200.0
    assert b.chunking.max_gap_ms == 400.0


def test_a_user_file_overrides_only_what_it_names(tmp_path):
    f = tmp_path / "b.toml"
    f.write_text("[latency.ttfa_ms]\np95 = 900\n[chunking]\nmin_tokens = 3\n")
    b = load_budgets(f)
    assert b.as_mapping()["ttfa_ms"] == {"p50": 1000.0, "p95": 900.0}
    assert b.as_mapping()["stop_latency_ms"]["p95"] == 200.0
    assert b.chunking.min_tokens == 3 and isinstance(b.chunking.min_tokens, int)
    assert b.source == str(f)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[latency.ttfa_ms]\np96 = 1\n", ["p96", "p95"]),
        ("[chunking]\nmax_gaps_ms = 1\n", ["chunking.max_gaps_ms", "max_gap_ms"]),
        ("[latency.ttfa_ms]\np95 = -5\n", ["ttfa_ms.p95", ">= 0", "-5"]),
        ("[latency.ttfa_ms]\np95 = 'fast'\n", ["expected a number", "fast"]),
        ("[budgets]\n", ["unknown section [budgets]"]),
        ("[latency\n", ["not valid TOML"]),
    ],
)
def test_bad_files_name_the_key(tmp_path, text, words):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(InputError) as err:
        load_budgets(f)
    assert str(f) in str(err.value)
    for w in words:
        assert w in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="budget file not found"):
        load_budgets(tmp_path / "nope.toml")


def test_percentile_matches_numpy_and_skips_missing_values():
    rng = np.random.default_rng(3)
    xs = list(rng.normal(800, 100, 57))
    assert percentile(xs, "p95") == pytest.approx(np.percentile(xs, 95))
    assert percentile(xs, "max") == pytest.approx(max(xs))
    result = evaluate(Budget("ttfa_ms", "p95", 1000.0), [*xs, None, None])
    assert result.n == 57 and result.passed
    assert not evaluate(Budget("ttfa_ms", "p50", 700.0), xs).passed
    assert not evaluate(Budget("ttfa_ms", "p50", 700.0), []).passed  # nothing measured


def test_marker_override():
    b = load_budgets().with_limit("ttfa_ms", "p95", 1200)
    assert b.as_mapping()["ttfa_ms"]["p95"] == 1200.0
    with pytest.raises(InputError, match="p97"):
        b.with_limit("ttfa_ms", "p97", 1)
