"""Reports: results files, terminal tables, plots, Allure evidence, HTML, history, baseline.

The only package of tympan that imports allure and matplotlib; both are imported lazily (by
the functions that draw or attach), so ``import harness.report`` stays cheap.

Map:
    results         Check, TurnRecord, ResultsWriter (results.jsonl/.json/.csv), summarize,
                    load_results
    text            format_summary_table, format_worst_turns, format_progress_line
    plots           timeline_png (one turn), trend_png (runs over time)
    allure_attach   attach_turn, step, label_turn, write_environment, write_categories
    html            render_report -> OUT/report.html (+ OUT/allure-report/ with Allure 3)
    history         append_history, load_history (HISTORY/runs.jsonl)
    baseline        compare_to_baseline -> [Regression] (bootstrap CI of the difference)
    run             finish_run: all of the above at the end of a run, in one call
"""

from __future__ import annotations

import importlib
from typing import Any

from harness.report.results import (
    SCHEMA_VERSION,
    Check,
    ResultsWriter,
    TurnRecord,
    load_results,
    metric_values,
    summarize,
)
from harness.report.text import format_progress_line, format_summary_table, format_worst_turns

_LAZY = {
    "timeline_png": "harness.report.plots",
    "trend_png": "harness.report.plots",
    "attach_turn": "harness.report.allure_attach",
    "write_environment": "harness.report.allure_attach",
    "write_categories": "harness.report.allure_attach",
    "step": "harness.report.allure_attach",
    "render_report": "harness.report.html",
    "append_history": "harness.report.history",
    "load_history": "harness.report.history",
    "compare_to_baseline": "harness.report.baseline",
    "Regression": "harness.report.baseline",
    "finish_run": "harness.report.run",
}

__all__ = [
    "SCHEMA_VERSION",
    "Check",
    "ResultsWriter",
    "TurnRecord",
    "format_progress_line",
    "format_summary_table",
    "format_worst_turns",
    "load_results",
    "metric_values",
    "summarize",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'harness.report' has no attribute {name!r}")
