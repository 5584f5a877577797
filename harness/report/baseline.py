"""Is this run slower than an earlier one, beyond noise? A bootstrap answer.

For each metric and percentile, the turns of each run are resampled with replacement
(seeded, so the answer is reproducible), the percentile difference current - baseline is
computed for every resample, and its central interval (95 % by default) is the confidence
interval. A regression is reported only when the interval's lower bound is above a noise
floor of max(10 ms, 5 % of the baseline value): "worse, and sure of it", not "one number
went up". Too few turns (fewer than `min_turns` in either run) give no verdict rather than
a guess, and `not_compared` says so per metric: a comparison that did not compare must not
read as "no regression".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.report.results import PERCENTILES, TurnRecord, metric_values


@dataclass(frozen=True)
class Regression:
    """One percentile of one metric got worse beyond noise (values in ms)."""

    metric: str
    percentile: str
    baseline_ms: float
    current_ms: float
    diff_ms: float
    ci_low_ms: float
    ci_high_ms: float
    confidence: float
    n_baseline: int
    n_current: int
    noise_floor_ms: float

    @property
    def message(self) -> str:
        return (
            f"{self.metric} {self.percentile} {self.diff_ms:+.0f} ms "
            f"({self.confidence * 100:.0f}% CI {self.ci_low_ms:+.0f}..{self.ci_high_ms:+.0f} ms), "
            f"baseline {self.baseline_ms:.0f} ms -> {self.current_ms:.0f} ms "
            f"(n {self.n_baseline} -> {self.n_current}; noise floor {self.noise_floor_ms:.0f} ms)"
        )

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class NotCompared:
    """A metric the comparison could not judge: too few turns in one run or both."""

    metric: str
    n_baseline: int
    n_current: int
    needed: int

    @property
    def message(self) -> str:
        short = []
        if self.n_current < self.needed:
            short.append(f"{self.n_current} turn(s) in this run")
        if self.n_baseline < self.needed:
            short.append(f"{self.n_baseline} in the baseline")
        return (
            f"not compared: {self.metric} has {' and '.join(short)}, {self.needed} needed "
            "(use --repeat)"
        )

    def __str__(self) -> str:
        return self.message


def not_compared(
    current: Mapping[str, Any] | Sequence[TurnRecord],
    baseline: Mapping[str, Any] | Sequence[TurnRecord],
    *,
    metrics: Iterable[str] | None = None,
    min_turns: int = 5,
) -> list[NotCompared]:
    """The metrics `compare_to_baseline` could not judge (fewer than `min_turns` turns in
    either run): every metric either run measured, or `metrics`."""
    cur, base = _samples(current), _samples(baseline)
    names = list(metrics) if metrics is not None else sorted(set(cur) | set(base))
    out = []
    for metric in names:
        a, b = base.get(metric), cur.get(metric)
        na, nb = (0 if a is None else int(a.size)), (0 if b is None else int(b.size))
        if na < min_turns or nb < min_turns:
            out.append(NotCompared(metric, na, nb, min_turns))
    return out


def _samples(run: Mapping[str, Any] | Sequence[TurnRecord]) -> dict[str, np.ndarray]:
    """metric -> values (ms) of the turns that were not discarded."""
    if isinstance(run, Mapping):
        records = run.get("records")
        if records is None:
            records = [TurnRecord.from_dict(t) for t in run.get("turns") or []]
    else:
        records = list(run)
    values: dict[str, list[float]] = {}
    for r in records:
        if r.discarded:
            continue
        for k, v in metric_values(r).items():
            values.setdefault(k, []).append(v)
    return {k: np.asarray(v, dtype=float) for k, v in values.items()}


def compare_to_baseline(
    current: Mapping[str, Any] | Sequence[TurnRecord],
    baseline: Mapping[str, Any] | Sequence[TurnRecord],
    *,
    metrics: Iterable[str] | None = None,
    percentiles: Sequence[str] = ("p50", "p95"),
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    min_turns: int = 5,
    floor_ms: float = 10.0,
    floor_rel: float = 0.05,
) -> list[Regression]:
    """Regressions of `current` against `baseline` (results.json dicts or TurnRecord lists).

    `metrics`: default every metric both runs measured. A regression needs the lower bound
    of the `confidence` bootstrap interval of (current - baseline) above
    max(`floor_ms`, `floor_rel` * baseline value).
    """
    cur, base = _samples(current), _samples(baseline)
    names = list(metrics) if metrics is not None else [m for m in cur if m in base]
    rng = np.random.default_rng(seed)
    alpha = (1.0 - confidence) / 2.0
    found: list[Regression] = []
    for metric in names:
        a, b = base.get(metric), cur.get(metric)
        if a is None or b is None or a.size < min_turns or b.size < min_turns:
            continue
        ia = rng.integers(0, a.size, size=(n_boot, a.size))
        ib = rng.integers(0, b.size, size=(n_boot, b.size))
        for pct in percentiles:
            q = PERCENTILES[pct]
            pa = float(np.percentile(a, q, method="linear"))
            pb = float(np.percentile(b, q, method="linear"))
            diffs = np.percentile(b[ib], q, axis=1, method="linear") - np.percentile(
                a[ia], q, axis=1, method="linear"
            )
            lo, hi = np.quantile(diffs, [alpha, 1.0 - alpha])
            floor = max(floor_ms, floor_rel * abs(pa))
            if lo > floor:
                found.append(
                    Regression(
                        metric,
                        pct,
                        pa,
                        pb,
                        pb - pa,
                        float(lo),
                        float(hi),
                        confidence,
                        int(a.size),
                        int(b.size),
                        floor,
                    )
                )
    return found
