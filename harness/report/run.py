"""The end of a run in one call: summary, baseline, history, Allure side files, HTML, text.

The pytest plugin (or `tympan run`) calls `finish_run` once, after the last turn:

>>> done = finish_run(writer, budgets, history_dir=out / "history", baseline=path_or_none,
...                   environment={"rig": ..., "DUT firmware": ...})
>>> print(done.text)          # latency table, worst turns, regressions, where the report is
>>> done.regressions          # [] when no baseline or no regression
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.report.baseline import NotCompared, Regression, compare_to_baseline, not_compared
from harness.report.history import append_history
from harness.report.results import ResultsWriter, load_results
from harness.report.text import format_summary_table, format_worst_turns


@dataclass
class FinishedRun:
    """What `finish_run` produced."""

    results: dict
    report_path: Path
    allure_note: str
    regressions: list[Regression] = field(default_factory=list)
    text: str = ""
    not_compared: list[NotCompared] = field(default_factory=list)
    """Metrics the baseline comparison could not judge (too few turns)."""


def finish_run(
    writer: ResultsWriter,
    budgets: Mapping[str, Mapping[str, float]] | None,
    *,
    history_dir: str | Path | None = None,
    baseline: str | Path | None = None,
    environment: Mapping[str, object] | None = None,
    use_allure: bool = True,
    worst: int = 3,
) -> FinishedRun:
    """Finish `writer` against `budgets` and leave every report behind in its OUT.

    - results.json gets the summary (and "regressions" when `baseline`, an earlier
      results.json or its folder, is given; InputError when that file is bad);
    - HISTORY/runs.jsonl gets this run's line (HISTORY default OUT/history);
    - OUT/allure-results (when the run made one) gets categories.json and, with
      `environment`, environment.properties;
    - OUT/report.html (+ OUT/allure-report/ with Allure 3) is rendered.
    """
    from harness.report.allure_attach import write_categories, write_environment
    from harness.report.html import render_all

    out = writer.out_dir
    results = writer.finish(budgets)
    regressions: list[Regression] = []
    unjudged: list[NotCompared] = []
    if baseline is not None:
        base = load_results(baseline)
        regressions = compare_to_baseline(writer.records, base)
        unjudged = not_compared(writer.records, base)
        results["regressions"] = [r.message for r in regressions]
        results["not_compared"] = [n.message for n in unjudged]
        tmp = out / ".results.json.tmp"
        tmp.write_text(json.dumps(results, indent=1, allow_nan=False, ensure_ascii=False) + "\n")
        os.replace(tmp, out / "results.json")
    hist = Path(history_dir) if history_dir else out / "history"
    append_history(hist, results)
    allure_dir = out / "allure-results"
    if allure_dir.is_dir():
        write_categories(allure_dir)
        if environment:
            write_environment(allure_dir, environment)
    view: dict[str, Any] = {**results, "records": writer.records}
    path, outcome = render_all(out, history_dir=hist, use_allure=use_allure, results=view)
    note = "" if outcome is None else (str(outcome.path) if outcome.path else outcome.note)
    lines = [format_summary_table(results["summary"])]
    for metric in ("ttfa_ms", "stop_latency_ms"):
        if (results["summary"].get(metric) or {}).get("n"):
            lines.append(format_worst_turns(writer.records, metric, k=worst))
    if baseline is not None:
        lines += comparison_lines(regressions, unjudged, baseline)
    lines.append(f"report: {path}")
    if note:
        lines.append(f"allure: {note}")
    return FinishedRun(results, path, note, regressions, "\n".join(lines), unjudged)


def comparison_lines(
    regressions: Sequence[Regression], unjudged: Sequence[NotCompared], baseline: object
) -> list[str]:
    """What a baseline comparison says, for people: the regressions, every metric it could
    not judge, and "no regression" only about what it compared."""
    lines = []
    if regressions:
        lines.append(f"regressions against {baseline}:")
        lines += [f"  {r.message}" for r in regressions]
    lines += [f"  {n.message}" for n in unjudged]
    if not regressions:
        if unjudged:
            lines.append(
                f"no regression against {baseline} in what was compared; "
                f"{len(unjudged)} metric(s) not compared: the comparison is inconclusive"
            )
        else:
            lines.append(f"no regression against {baseline}")
    return lines
