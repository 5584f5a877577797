"""Plain-text views for the terminal: the latency table, the worst turns, a progress line.

The pytest plugin prints `format_summary_table` and `format_worst_turns` in
pytest_terminal_summary, and `format_progress_line` after each turn of a long run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from harness.report.results import TurnRecord, metric_values


def _num(v: object, width: int) -> str:
    if v is None:
        return "-".rjust(width)
    return f"{float(v):{width}.1f}"  # type: ignore[arg-type]


def _budget_text(limits: Mapping[str, float]) -> str:
    return ", ".join(f"{p}<={lim:g}" for p, lim in limits.items()) or "-"


def format_summary_table(summary: Mapping[str, Mapping]) -> str:
    """A fixed-width table: metric, n, discarded, p50, p95, p99, max (ms), budget, result.

    `summary` is results.json "summary" (`harness.report.results.summarize`). Result is
    PASS / FAIL against the budget, "not judged (p95: 9 turn(s), 20 needed)" for a budget
    that held on too few turns, "n/a" for one with no values, blank without one.
    """
    head = (
        f"{'metric':<22} {'n':>4} {'disc':>4} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}  "
        f"{'budget':<22} result"
    )
    lines = [head, "-" * len(head)]
    for metric, row in summary.items():
        limits = row.get("budget") or {}
        passed = row.get("passed")
        result = "PASS" if passed is True else "FAIL" if passed is False else ""
        if limits and passed is None:
            thin = row.get("not_judged")
            result = f"not judged ({'; '.join(thin)})" if thin else "n/a (no values)"
        lines.append(
            f"{metric:<22} {row.get('n', 0):>4} {row.get('discarded', 0):>4} "
            f"{_num(row.get('p50'), 8)} {_num(row.get('p95'), 8)} {_num(row.get('p99'), 8)} "
            f"{_num(row.get('max'), 8)}  {_budget_text(limits):<22} {result}".rstrip()
        )
    if len(lines) == 2:
        lines.append("(no turns measured)")
    return "\n".join(lines)


def format_worst_turns(records: Sequence[TurnRecord], metric: str, k: int = 3) -> str:
    """The `k` turns with the largest `metric` (ms), one line each with the capture's path."""
    scored = [(metric_values(r).get(metric), r) for r in records if not r.discarded]
    scored = [(v, r) for v, r in scored if v is not None]
    scored.sort(key=lambda vr: vr[0], reverse=True)
    if not scored:
        return f"worst {metric}: no values"
    lines = [f"worst {metric}:"]
    for v, r in scored[:k]:
        evidence = r.evidence.get("capture_wav", "")
        where = f"  {evidence}" if evidence else ""
        lines.append(f"  {v:9.1f} ms  {r.turn}  [{r.verdict}]{where}")
    return "\n".join(lines)


def format_progress_line(record: TurnRecord) -> str:
    """One line per finished turn: turn id, utterance, TTFA, verdict (and why, when not ok)."""
    ttfa = metric_values(record).get("ttfa_ms")
    ttfa_text = f"TTFA {ttfa:7.1f} ms" if ttfa is not None else "TTFA       - ms"
    utterance = record.utterance if len(record.utterance) <= 40 else record.utterance[:37] + "..."
    line = f"{record.turn:<44} {utterance!r:<44} {ttfa_text}  {record.verdict.upper()}"
    if record.discard:
        line += f" ({record.discard})"
    elif record.failed_checks:
        line += f" ({record.failed_checks[0].message.splitlines()[0][:80]})"
    return line
