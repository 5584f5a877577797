"""The one shape of a judged turn, and what every room computes from it.

`Check` (one rule on one turn), `TurnRecord` (everything kept about a turn: one object of
results.json "turns"), the contract names, the percentiles, and `metric_values` (a turn's
figures, the same for the pytest run's budget verdicts, results.json's summary, the
baseline comparison and the report). The assertions, the budgets, the session and the
report all take these from here, so one run cannot get two verdicts.

Pure: the standard library and numpy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CONTRACTS: tuple[str, ...] = ("budget", "chunking", "cancellation", "turn-taking", "infrastructure")
"""The contracts a check belongs to; a failure message starts with "[contract]"."""

VERDICTS = ("passed", "failed", "discarded", "error")

PERCENTILES: dict[str, float] = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "max": 100.0}
"""Percentiles the summary reports and budgets may name (numpy's "linear" method)."""

TURNS_NEEDED: dict[str, int] = {"p50": 2, "p90": 10, "p95": 20, "p99": 100, "max": 1}
"""How many measured turns a percentile needs before a budget on it is judged: enough that
at least one turn lies beyond it (100 / (100 - p), rounded up). Fewer, and a p95 is the
top of a handful of turns, not the tail of the agent's latency: a budget that holds on them
is "not judged"; one they already break fails."""

CORE_METRICS = ("ttfa_ms", "stop_latency_ms", "residual_ms", "max_gap_ms")
"""Metrics measured from the audio; the telemetry stages (stages_ms keys) follow them."""


def percentile(values: Iterable[float | None], name: str) -> float | None:
    """The named percentile ("p95", "max", ...) of `values` (numpy "linear"), leaving out
    None and non-finite values; None when nothing is left."""
    if name not in PERCENTILES:
        raise ValueError(
            f"percentile: unknown percentile {name!r}; expected one of {', '.join(PERCENTILES)}"
        )
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None
    return float(np.percentile(np.asarray(xs), PERCENTILES[name], method="linear"))


def check_id(contract: str, name: str) -> str:
    """The stable id of a check: "contract.rule_in_snake_case" (e.g.
    "infrastructure.the_host_kept_up")."""
    return f"{contract}.{re.sub(r'[^a-z0-9]+', '_', name.lower()).strip('_')}"


@dataclass(frozen=True)
class Check:
    """One rule checked on one turn (or on a whole run for budgets).

    contract: one of `CONTRACTS`. name: the rule, e.g. "first chunk before LLM done".
    passed: held or not. message: what was seen (a person can act on it; in a record, a
    failed check's message starts with "[contract]", which the Allure categories match
    on). applicable: False when the evidence needed is missing (the check then passes and
    says why). over_ms: for a rule on a duration (a stall, a stop latency), how far past its
    limit the turn went, ms; interval_s: the capture-timeline interval (s) that duration
    was measured over. A host that stalled the harness inside that interval for longer
    than `over_ms` can explain the failure (`assertions.not_measured_under_stall`); None
    for rules not about time.
    `id` (`check_id`): what code keys on; the name and message are for people.
    """

    contract: str
    name: str
    passed: bool
    message: str = ""
    applicable: bool = True
    over_ms: float | None = None
    interval_s: tuple[float, float] | None = None

    @property
    def id(self) -> str:
        return check_id(self.contract, self.name)

    def __str__(self) -> str:
        mark = "ok" if self.passed else "FAILED"
        return f"[{self.contract}] {self.name}: {mark} - {self.message}"

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "contract": self.contract,
            "name": self.name,
            "passed": self.passed,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Check:
        return cls(str(d["contract"]), str(d["name"]), bool(d["passed"]), str(d.get("message", "")))


@dataclass
class TurnRecord:
    """Everything tympan keeps about one turn (one JSON object in results.json "turns").

    Times: `metrics` holds `harness.analysis.TurnMetrics.to_json()` (seconds on the capture
    timeline, latencies in ms); `stages_ms` the telemetry breakdown in ms (None: not
    measured); `stage_spans` (label, start_s, end_s) on the capture timeline; `events` device
    telemetry mapped onto the capture ({"event": name, "t_s": seconds, ...}). `evidence`
    maps capture_wav / metrics_json / timeline_png / events_jsonl to paths relative to OUT.
    `wall_s` is the turn's wall time, `audio_s` the capture's length, both seconds.
    """

    test: str
    turn: str
    utterance: str = ""
    category: str = ""
    transcript: str = ""
    rig: str = ""
    dut: str = ""
    repeat: int = 0
    barge_in_offset_ms: float | None = None
    metrics: dict = field(default_factory=dict)
    stages_ms: dict[str, float | None] = field(default_factory=dict)
    stage_spans: list[tuple[str, float, float]] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    verdict: str = "passed"
    discard: str | None = None
    xruns: int = 0
    wall_s: float = 0.0
    audio_s: float = 0.0
    evidence: dict[str, str] = field(default_factory=dict)

    @property
    def discarded(self) -> bool:
        """True when the measurement was not trusted: it counts, but not in percentiles."""
        return self.verdict == "discarded" or self.discard is not None

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict:
        """A JSON-ready dict (floats rounded to 1 µs / 0.001 ms; NaN and inf become null)."""
        return clean_json(
            {
                "test": self.test,
                "turn": self.turn,
                "utterance": self.utterance,
                "category": self.category,
                "transcript": self.transcript,
                "rig": self.rig,
                "dut": self.dut,
                "repeat": int(self.repeat),
                "barge_in_offset_ms": self.barge_in_offset_ms,
                "verdict": self.verdict,
                "discard": self.discard,
                "metrics": dict(self.metrics),
                "stages_ms": dict(self.stages_ms),
                "stage_spans": [[str(a), float(b), float(c)] for a, b, c in self.stage_spans],
                "events": [dict(e) for e in self.events],
                "checks": [c.to_dict() for c in self.checks],
                "xruns": int(self.xruns),
                "wall_s": self.wall_s,
                "audio_s": self.audio_s,
                "evidence": dict(self.evidence),
            }
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TurnRecord:
        """The inverse of `to_dict`; raises KeyError/TypeError/ValueError on a bad record."""
        return cls(
            test=str(d["test"]),
            turn=str(d["turn"]),
            utterance=str(d.get("utterance", "")),
            category=str(d.get("category", "")),
            transcript=str(d.get("transcript", "")),
            rig=str(d.get("rig", "")),
            dut=str(d.get("dut", "")),
            repeat=int(d.get("repeat", 0)),
            barge_in_offset_ms=_opt_float(d.get("barge_in_offset_ms")),
            metrics=dict(d.get("metrics") or {}),
            stages_ms={str(k): _opt_float(v) for k, v in (d.get("stages_ms") or {}).items()},
            stage_spans=[(str(a), float(b), float(c)) for a, b, c in d.get("stage_spans") or []],
            events=[dict(e) for e in d.get("events") or []],
            checks=[Check.from_dict(c) for c in d.get("checks") or []],
            verdict=str(d.get("verdict", "passed")),
            discard=None if d.get("discard") is None else str(d["discard"]),
            xruns=int(d.get("xruns", 0)),
            wall_s=float(d.get("wall_s") or 0.0),
            audio_s=float(d.get("audio_s") or 0.0),
            evidence={str(k): str(v) for k, v in (d.get("evidence") or {}).items()},
        )


def _opt_float(v: object) -> float | None:
    return None if v is None else float(v)  # type: ignore[arg-type]


def clean_json(v: object) -> object:
    """Round floats to 6 decimals, NaN/inf -> None, numpy scalars -> Python, through containers."""
    if isinstance(v, dict):
        return {str(k): clean_json(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [clean_json(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return round(v, 6) if math.isfinite(v) else None
    return v


def metric_values(record: TurnRecord) -> dict[str, float]:
    """The summary metrics of one turn (ms), only those it has a number for.

    ttfa_ms, ttfa_content_ms (the answer after a filler; the same as ttfa_ms without one),
    stop_latency_ms, residual_ms from the analysis; max_gap_ms the longest silence
    inside the reply (0 when the reply is one segment; absent without a reply; with a
    barge-in only the gaps before its onset); and every telemetry stage in `stages_ms`.
    """
    out: dict[str, float] = {}
    m = record.metrics
    for key in ("ttfa_ms", "ttfa_content_ms", "stop_latency_ms", "residual_ms"):
        v = m.get(key)
        if isinstance(v, int | float) and math.isfinite(v):
            out[key] = float(v)
    gaps = [float(g) for g in m.get("gaps_ms") or []]
    segments = m.get("segments") or []
    barge = m.get("barge_in_onset_s")
    if isinstance(barge, int | float) and len(segments) == len(gaps) + 1:
        # After a barge-in the silence is the user's turn, not a stall: only gaps that end
        # before the barge-in onset count.
        gaps = [g for g, seg in zip(gaps, segments[1:], strict=True) if seg[0] <= barge]
    if gaps:
        out["max_gap_ms"] = max(gaps)
    elif segments:
        out["max_gap_ms"] = 0.0
    for key, v in record.stages_ms.items():
        if isinstance(v, int | float) and math.isfinite(v):
            out[key] = float(v)
    return out


def metric_order(names: Iterable[str]) -> list[str]:
    """The audio metrics first (`CORE_METRICS`), then the rest by name."""
    names = set(names)
    core = [m for m in CORE_METRICS if m in names]
    return core + sorted(names - set(core))


@dataclass(frozen=True)
class Sample:
    """One value of a metric from one turn, with where to look (None: the turn was
    discarded, so it is counted but left out of the percentiles)."""

    value: float | None
    turn: str
    evidence: str = ""


def samples(records: Sequence[TurnRecord]) -> dict[str, list[Sample]]:
    """Every metric's values over `records` (`metric_values`), each with its turn; a
    discarded turn (the analysis refused it, or the host stalled through it) is a None in
    every metric, so budgets count it and leave it out, as results.json's summary does."""
    per_turn = [metric_values(r) for r in records]
    names = metric_order({k for v in per_turn for k in v})
    out: dict[str, list[Sample]] = {}
    for r, values in zip(records, per_turn, strict=True):
        evidence = r.evidence.get("capture_wav", "")
        for name in names:
            if r.discarded:
                out.setdefault(name, []).append(Sample(None, r.turn, evidence))
            elif name in values:
                out.setdefault(name, []).append(Sample(values[name], r.turn, evidence))
    return out


@dataclass
class CheckRate:
    """How often one check failed: `failed` of the `applicable` turns; `label` for people
    ("[contract] rule")."""

    label: str
    failed: int = 0
    applicable: int = 0


def check_rates(checks_per_turn: Iterable[Iterable[Check]]) -> dict[str, CheckRate]:
    """Every check's failures over the turns (where it applied), by its stable id
    (`Check.id`): flakiness."""
    rates: dict[str, CheckRate] = {}
    for checks in checks_per_turn:
        for c in checks:
            if not c.applicable:
                continue
            r = rates.setdefault(c.id, CheckRate(f"[{c.contract}] {c.name}"))
            r.failed += not c.passed
            r.applicable += 1
    return rates


def discard_reasons(metrics_per_turn: Iterable[Any]) -> dict[str, int]:
    """How many turns were discarded, by reason (`TurnMetrics.discard_reason`, else the
    first word of the discard)."""
    out: dict[str, int] = {}
    for m in metrics_per_turn:
        if m.discard:
            reason = m.discard_reason or m.discard.split()[0].rstrip(":")
            out[reason] = out.get(reason, 0) + 1
    return out
