"""`tympan report OUT`: re-render a run's report from what it saved.

Reads OUT/results.json (and OUT/allure-results when there), prints the latency table and
the worst turns, writes OUT/report.html (and OUT/allure-report/ with Allure 3), and with
``--baseline`` compares the run against an earlier results.json.

Exit status: 0 rendered (and, with --baseline, every metric compared, none worse); 1 a
regression against the baseline; 3 no regression, but the comparison did not judge every
metric ("not compared: ...", too few turns); 2 bad input (OUT or results.json missing or
malformed, a bad --worst), with one line naming the file or option.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.errors import InputError


def _report(args: argparse.Namespace) -> int:
    from harness.report.html import render_all
    from harness.report.results import load_results, summarize
    from harness.report.text import format_summary_table, format_worst_turns

    out = Path(args.out)
    if args.worst < 0:
        raise InputError(f"--worst {args.worst}: expected a number of turns >= 0")
    if args.history is not None and Path(args.history).exists() and not Path(args.history).is_dir():
        raise InputError(f"--history {args.history}: exists and is not a folder")
    if not out.is_dir():
        raise InputError(f"{out}: no such folder; expected the --out folder of a tympan run")
    results = load_results(out)
    records = results["records"]
    # Re-derive the summary from the turns, against the budgets the run saved (a run killed
    # before finish() saved none: percentiles only).
    budgets = {m: row["budget"] for m, row in results["summary"].items() if row.get("budget")}
    results["summary"] = summarize(records, budgets)
    regressions: list[Any] = []
    unjudged: list[Any] = []
    if args.baseline:
        from harness.report.baseline import compare_to_baseline, not_compared

        baseline = load_results(args.baseline)
        regressions = compare_to_baseline(results, baseline)
        unjudged = not_compared(results, baseline)
        results["regressions"] = [r.message for r in regressions]
        results["not_compared"] = [n.message for n in unjudged]
    print(format_summary_table(results["summary"]))
    for metric in ("ttfa_ms", "stop_latency_ms"):
        if metric in results["summary"] and results["summary"][metric].get("n"):
            print(format_worst_turns(records, metric, k=args.worst))
    path, allure = render_all(
        out, history_dir=args.history, use_allure=not args.no_allure, results=results
    )
    print(f"report: {path}")
    if allure is not None:
        print(f"allure: {allure.path if allure.path else allure.note}")
    if args.baseline:
        from harness.report.run import comparison_lines

        print("\n".join(comparison_lines(regressions, unjudged, args.baseline)))
        if regressions:
            return 1
        if unjudged:
            return 3  # inconclusive: the comparison did not judge every metric
    return 0


def add_parser(subparsers: Any) -> None:
    """Register `report` on the `tympan` parser."""
    p = subparsers.add_parser(
        "report",
        help="re-render a run's report (results.json -> report.html, latency table)",
        description=(
            "Re-render OUT/report.html (and the Allure report, when Allure 3 is installed) from "
            "OUT/results.json and OUT/allure-results, and print the latency table."
        ),
    )
    p.add_argument("out", metavar="OUT", help="the run's output folder (holds results.json)")
    p.add_argument(
        "--history",
        metavar="DIR",
        help="history folder for the trend plot and Allure history (default OUT/history)",
    )
    p.add_argument(
        "--baseline",
        metavar="PATH",
        help="an earlier results.json (or its folder): exit 1 on a regression beyond noise",
    )
    p.add_argument("--no-allure", action="store_true", help="only tympan's own report.html")
    p.add_argument("--worst", type=int, default=3, metavar="K", help="worst turns shown (3)")
    p.set_defaults(func=_report)
