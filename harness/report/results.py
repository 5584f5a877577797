"""Per-turn records and the run's results files: results.jsonl, results.json, results.csv.

The pytest plugin fills one `TurnRecord` per turn and hands it to `ResultsWriter.add`, which
writes it at once: a JSON line appended to ``OUT/results.jsonl`` (flushed and fsynced) and
``OUT/results.json`` / ``OUT/results.csv`` rewritten atomically (temporary file +
``os.replace``). A crash or Ctrl-C in the middle of a run therefore leaves every finished
turn readable. `ResultsWriter.finish` adds the per-metric summary against the budgets. The
schema is documented in docs/results.md; `SCHEMA_VERSION` changes when a field changes
meaning or goes away (new fields may appear without a change).

Map:
    Check, TurnRecord     the data, from harness.records (to_dict / from_dict, JSON-stable)
    ResultsWriter         incremental writer for one run
    metric_values         the summary metrics of one record (harness.records)
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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import InputError
from harness.records import (
    CONTRACTS,
    CORE_METRICS,
    PERCENTILES,
    TURNS_NEEDED,
    VERDICTS,
    Check,
    TurnRecord,
    clean_json,
    metric_order,
    metric_values,
    percentile,
)

__all__ = [
    "CONTRACTS",
    "CORE_METRICS",
    "PERCENTILES",
    "SCHEMA_VERSION",
    "VERDICTS",
    "Check",
    "ResultsWriter",
    "TurnRecord",
    "load_results",
    "metric_values",
    "summarize",
]

SCHEMA_VERSION = 2
"""Version of results.json / results.jsonl (docs/results.md). 2: a summary row's `passed` is
null, with `not_judged`, when its budget held on fewer turns than the percentile needs."""

EVIDENCE_KEYS = ("capture_wav", "metrics_json", "timeline_png", "events_jsonl")


# ---- metrics and summary -----------------------------------------------------------------


def summarize(
    records: Sequence[TurnRecord], budgets: Mapping[str, Mapping[str, float]] | None = None
) -> dict[str, dict]:
    """Per-metric percentiles over the turns that were not discarded, against `budgets`.

    `budgets`: metric -> {"p50"/"p90"/"p95"/"p99"/"max": limit}. Returns metric ->
    {"n", "discarded", "p50", "p90", "p95", "p99", "max", "budget", "passed"}: n counts the
    values used, discarded the turns left out; `passed` is True/False when the metric has a
    budget and at least one value, None otherwise (no budget, or nothing measured), and
    None with "not_judged" (["p95: 9 turn(s), 20 needed"]) when every limit held but one
    had fewer turns than its percentile needs (`records.TURNS_NEEDED`).
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
    for metric in metric_order(set(values) | set(budgets)):
        vals = values.get(metric, [])
        row: dict[str, Any] = {"n": len(vals), "discarded": n_discarded}
        for name in PERCENTILES:
            row[name] = percentile(vals, name)
        limits = {k: float(v) for k, v in (budgets.get(metric) or {}).items()}
        row["budget"] = limits
        thin = [p for p in limits if len(vals) < TURNS_NEEDED[p]]
        if limits and vals:
            row["passed"] = all(row[p] <= lim for p, lim in limits.items())
            if row["passed"] and thin:
                row["passed"] = None  # held, on too few turns to say so
                row["not_judged"] = [
                    f"{p}: {len(vals)} turn(s), {TURNS_NEEDED[p]} needed" for p in thin
                ]
        else:
            row["passed"] = None
        summary[metric] = clean_json(row)  # type: ignore[assignment]
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
        self._write_line({"schema_version": SCHEMA_VERSION, "run": clean_json(self.run)})
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
            "run": clean_json(self.run),
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
            record = TurnRecord.from_dict(t)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise InputError(f"{p}: turn {i} is malformed: {type(err).__name__}: {err}") from err
        bad = _bad_figure(record)
        if bad is not None:
            # A figure that is not a number would drop out of the percentiles unmarked.
            raise InputError(
                f"{p}: turn {i} ({record.turn}): {bad}; expected a finite number (ms) or null"
            )
        records.append(record)
    data["records"] = records
    summary = data.setdefault("summary", {})
    if not isinstance(summary, dict) or not all(isinstance(v, dict) for v in summary.values()):
        raise InputError(f"{p}: 'summary' should map metric names to objects")
    return data


_FIGURES = ("ttfa_ms", "ttfa_content_ms", "stop_latency_ms", "residual_ms")


def _bad_figure(record: TurnRecord) -> str | None:
    """The first figure of `record` the summary would read that is neither null nor a
    finite number ("metrics.ttfa_ms = 'fast'"), or None."""

    def ok(v: object) -> bool:
        return v is None or (
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        )

    for key in _FIGURES:
        if not ok(record.metrics.get(key)):
            return f"metrics.{key} = {record.metrics.get(key)!r}"
    gaps = record.metrics.get("gaps_ms") or []
    if not isinstance(gaps, list) or not all(ok(g) for g in gaps):
        return f"metrics.gaps_ms = {gaps!r}"
    for key, v in record.stages_ms.items():
        if not ok(v):
            return f"stages_ms.{key} = {v!r}"
    return None
