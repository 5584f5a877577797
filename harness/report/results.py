"""Per-turn records and the run's results files: results.jsonl, results.json, results.csv.

The pytest plugin fills one `TurnRecord` per turn and hands it to `ResultsWriter.add`, which
writes it at once: a JSON line appended to ``OUT/results.jsonl`` (flushed and fsynced) and
``OUT/results.json`` / ``OUT/results.csv`` rewritten atomically (temporary file +
``os.replace``). A crash or Ctrl-C in the middle of a run therefore leaves every finished
turn readable. `ResultsWriter.finish` adds the per-metric summary against the budgets. The
schema is documented in docs/results.md; `SCHEMA_VERSION` changes when a field changes
meaning or goes away (new fields may appear without a change).

Map:
    Check, TurnRecord     the data (with to_dict / from_dict, JSON-stable)
    ResultsWriter         incremental writer for one run
    metric_values         the summary metrics of one record (ttfa_ms, max_gap_ms, stages ...)
    summarize             per-metric percentiles over records, against budgets
    load_results          read and validate OUT/results.json (InputError naming the file)
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import io
import json
import math
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness import __version__
from harness.errors import InputError

SCHEMA_VERSION = 1
"""Version of results.json / results.jsonl (docs/results.md)."""

CONTRACTS = ("budget", "chunking", "cancellation", "turn-taking", "infrastructure")
"""The contracts a check belongs to; a failure message starts with "[contract]"."""

VERDICTS = ("passed", "failed", "discarded", "error")

PERCENTILES: dict[str, float] = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "max": 100.0}
"""Percentiles the summary reports and budgets may name (numpy's "linear" method)."""

CORE_METRICS = ("ttfa_ms", "stop_latency_ms", "residual_ms", "max_gap_ms")
"""Metrics measured from the audio; the telemetry stages (stages_ms keys) follow them."""

EVIDENCE_KEYS = ("capture_wav", "metrics_json", "timeline_png", "events_jsonl")


@dataclass(frozen=True)
class Check:
    """One check on a turn: which contract, which rule, whether it held, and why not.

    `message` of a failed check starts with "[contract]" (e.g. "[budget] ttfa_ms ..."),
    which the Allure categories match on.
    """

    contract: str
    name: str
    passed: bool
    message: str = ""

    def to_dict(self) -> dict:
        return {
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
        return _clean(
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


def _clean(v: object) -> object:
    """Round floats to 6 decimals, NaN/inf -> None, numpy scalars -> Python, through containers."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return round(v, 6) if math.isfinite(v) else None
    return v


# ---- metrics and summary -----------------------------------------------------------------


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


def _metric_order(names: Iterable[str]) -> list[str]:
    names = set(names)
    core = [m for m in CORE_METRICS if m in names]
    return core + sorted(names - set(core))


def summarize(
    records: Sequence[TurnRecord], budgets: Mapping[str, Mapping[str, float]] | None = None
) -> dict[str, dict]:
    """Per-metric percentiles over the turns that were not discarded, against `budgets`.

    `budgets`: metric -> {"p50"/"p90"/"p95"/"p99"/"max": limit}. Returns metric ->
    {"n", "discarded", "p50", "p90", "p95", "p99", "max", "budget", "passed"}: n counts the
    values used, discarded the turns left out; `passed` is True/False when the metric has a
    budget and at least one value, None otherwise (no budget, or nothing measured).
    Percentiles use numpy's "linear" method. A budgeted metric no turn measured still
    appears (n 0), so a missing measurement is visible rather than silently passing.
    """
    budgets = budgets or {}
    for metric, limits in budgets.items():
        bad = sorted(set(limits) - set(PERCENTILES))
        if bad:
            raise InputError(
                f"budget for {metric}: unknown percentile(s) {', '.join(bad)}; "
                f"expected one of {', '.join(PERCENTILES)}"
            )
    values: dict[str, list[float]] = {}
    n_discarded = sum(1 for r in records if r.discarded)
    for r in records:
        if r.discarded:
            continue
        for k, v in metric_values(r).items():
            values.setdefault(k, []).append(v)
    summary: dict[str, dict] = {}
    for metric in _metric_order(set(values) | set(budgets)):
        vals = np.asarray(values.get(metric, []), dtype=float)
        row: dict[str, Any] = {"n": int(vals.size), "discarded": n_discarded}
        for name, q in PERCENTILES.items():
            row[name] = float(np.percentile(vals, q, method="linear")) if vals.size else None
        limits = {k: float(v) for k, v in (budgets.get(metric) or {}).items()}
        row["budget"] = limits
        if limits and vals.size:
            row["passed"] = all(row[p] <= lim for p, lim in limits.items())
        else:
            row["passed"] = None
        summary[metric] = _clean(row)  # type: ignore[assignment]
    return summary


# ---- run info ----------------------------------------------------------------------------


def _now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def git_commit(repo: Path | None = None) -> str | None:
    """The checkout's commit (with "-dirty" when it has local changes), or None outside git."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "") if head else None


# ---- writing -----------------------------------------------------------------------------


def _atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so a reader sees the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


CSV_FIXED = [
    "test",
    "turn",
    "utterance",
    "category",
    "rig",
    "dut",
    "repeat",
    "barge_in_offset_ms",
    "verdict",
    "discard",
    "confidence",
    "ttfa_ms",
    "stop_latency_ms",
    "residual_ms",
    "max_gap_ms",
]
CSV_TAIL = ["xruns", "wall_s", "audio_s", "failed_checks", "transcript", "capture_wav"]


def results_csv(records: Sequence[TurnRecord]) -> str:
    """One row per turn: the fixed columns, one column per telemetry stage, then the tail.

    Missing numbers are empty cells; failed_checks is "contract/name; ..." of failed checks.
    """
    stages = sorted({k for r in records for k in r.stages_ms})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIXED + stages + CSV_TAIL)
    for r in records:
        vals = metric_values(r)
        row: list[object] = [
            r.test,
            r.turn,
            r.utterance,
            r.category,
            r.rig,
            r.dut,
            r.repeat,
            _cell(r.barge_in_offset_ms),
            r.verdict,
            r.discard or "",
            _cell(r.metrics.get("confidence")),
        ]
        row += [_cell(vals.get(k)) for k in CORE_METRICS]
        row += [_cell(r.stages_ms.get(k)) for k in stages]
        row += [
            r.xruns,
            _cell(r.wall_s),
            _cell(r.audio_s),
            "; ".join(f"{c.contract}/{c.name}" for c in r.failed_checks),
            r.transcript,
            r.evidence.get("capture_wav", ""),
        ]
        w.writerow(row)
    return buf.getvalue()


def _cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}" if math.isfinite(v) else ""
    return str(v)


class ResultsWriter:
    """Writes one run's results into OUT as turns finish.

    >>> w = ResultsWriter(out, run_info={"rig": "sim", "dut": "reference"})
    >>> w.add(record)            # after every turn: results.jsonl/.json/.csv on disk
    >>> w.finish(budgets)        # summary against budgets; returns the results dict

    Results already in OUT from an earlier run are moved to OUT/previous/<their start time>/
    first, never overwritten. `run_info` goes into results.json "run" with started,
    finished (None until `finish`), tympan_version and git_commit added.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        run_info: Mapping[str, Any] | None = None,
        budgets: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._keep_previous()
        self.records: list[TurnRecord] = []
        self.budgets: Mapping[str, Mapping[str, float]] = budgets or {}
        self.run: dict[str, Any] = {
            "started": _now_iso(),
            "finished": None,
            "tympan_version": __version__,
            "git_commit": git_commit(),
        }
        self.run.update(dict(run_info or {}))
        self.finished = False
        self._jsonl = open(self.out_dir / "results.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self._write_line({"schema_version": SCHEMA_VERSION, "run": _clean(self.run)})
        self._rewrite()

    @property
    def json_path(self) -> Path:
        return self.out_dir / "results.json"

    def _keep_previous(self) -> None:
        old = [self.out_dir / n for n in ("results.json", "results.jsonl", "results.csv")]
        old = [p for p in old if p.exists()]
        if not old:
            return
        stamp = "unknown"
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, IndexError):
            if old[0].name == "results.json":
                stamp = json.loads(old[0].read_text(encoding="utf-8"))["run"]["started"]
            else:  # only the jsonl survived: its first line holds the run
                first = old[0].read_text(encoding="utf-8").splitlines()[0]
                stamp = json.loads(first)["run"]["started"]
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in str(stamp))
        dest = self.out_dir / "previous" / safe
        i = 1
        while dest.exists():
            i += 1
            dest = self.out_dir / "previous" / f"{safe}.{i}"
        dest.mkdir(parents=True)
        for p in old:
            os.replace(p, dest / p.name)

    def _write_line(self, obj: Mapping[str, Any]) -> None:
        self._jsonl.write(json.dumps(obj, allow_nan=False, ensure_ascii=False) + "\n")
        self._jsonl.flush()
        os.fsync(self._jsonl.fileno())

    def results(self) -> dict:
        """The results.json object as it stands now."""
        return {
            "schema_version": SCHEMA_VERSION,
            "run": _clean(self.run),
            "turns": [r.to_dict() for r in self.records],
            "summary": summarize(self.records, self.budgets),
        }

    def _rewrite(self) -> dict:
        results = self.results()
        text = json.dumps(results, indent=1, allow_nan=False, ensure_ascii=False)
        _atomic_write_text(self.json_path, text + "\n")
        _atomic_write_text(self.out_dir / "results.csv", results_csv(self.records))
        return results

    def add(self, record: TurnRecord) -> None:
        """Record one finished turn on disk now (jsonl line fsynced, json and csv replaced)."""
        if self.finished:
            raise RuntimeError("ResultsWriter.add after finish")
        if record.verdict not in VERDICTS:
            raise ValueError(f"turn {record.turn}: verdict {record.verdict!r} not in {VERDICTS}")
        self.records.append(record)
        self._write_line({"turn": record.to_dict()})
        self._rewrite()

    def finish(self, budgets: Mapping[str, Mapping[str, float]] | None = None) -> dict:
        """Close the run: summary against `budgets` (metric -> {percentile: limit}), finished
        time; returns the final results dict (also in OUT/results.json)."""
        if budgets is not None:
            self.budgets = budgets
        self.run["finished"] = _now_iso()
        results = self._rewrite()
        if not self.finished:
            self._write_line({"finished": self.run["finished"], "summary": results["summary"]})
            self._jsonl.close()
        self.finished = True
        return results

    def close(self) -> None:
        """Close the jsonl file without a summary (an interrupted run); idempotent."""
        if not self._jsonl.closed:
            self._jsonl.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- reading -----------------------------------------------------------------------------


def load_results(path: str | Path) -> dict:
    """Read a results.json (or the OUT folder holding one) and check its shape.

    Returns the dict with "turns" as `TurnRecord`s under "records" as well. Raises
    InputError naming the file for a missing file, bad JSON, a newer schema, or a bad turn.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.exists():
        where = p.parent
        hint = "" if where.exists() else f" (the folder {where} does not exist either)"
        raise InputError(f"{p}: no such file; expected the results.json of a tympan run{hint}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{p}: not readable JSON ({err})") from err
    if not isinstance(data, dict):
        raise InputError(f"{p}: expected a JSON object, found {type(data).__name__}")
    missing = [k for k in ("schema_version", "run", "turns") if k not in data]
    if missing:
        raise InputError(f"{p}: not a tympan results file: missing key(s) {', '.join(missing)}")
    version = data["schema_version"]
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise InputError(
            f"{p}: schema_version {version!r}; this tympan reads up to {SCHEMA_VERSION}"
        )
    if not isinstance(data["run"], dict):
        raise InputError(f"{p}: 'run' should be an object, found {type(data['run']).__name__}")
    if not isinstance(data["turns"], list):
        raise InputError(f"{p}: 'turns' should be a list, found {type(data['turns']).__name__}")
    records = []
    for i, t in enumerate(data["turns"]):
        try:
            records.append(TurnRecord.from_dict(t))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise InputError(f"{p}: turn {i} is malformed: {type(err).__name__}: {err}") from err
    data["records"] = records
    summary = data.setdefault("summary", {})
    if not isinstance(summary, dict) or not all(isinstance(v, dict) for v in summary.values()):
        raise InputError(f"{p}: 'summary' should map metric names to objects")
    return data
