"""Run history: one JSON line per run with its percentiles, for trends across runs.

The history folder (default: OUT/history, or what the caller passes) holds
``runs.jsonl`` (tympan's own: one line per run, appended and fsynced, never rewritten) and
``allure-history.jsonl`` (Allure 3's own history, which `render_report` passes to
``allure generate`` as its historyPath so Allure's trend and retry views span runs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.report.results import PERCENTILES

RUNS_FILE = "runs.jsonl"
ALLURE_HISTORY_FILE = "allure-history.jsonl"


def append_history(history_dir: str | Path, results: Mapping[str, Any]) -> Path:
    """Append one line for this run (run info, verdict counts, per-metric percentiles).

    `results` is a results.json dict. Returns the history file. The same run (same
    "started" and git commit) is not appended twice, so `tympan report` can rerun safely.
    """
    d = Path(history_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / RUNS_FILE
    run = dict(results.get("run") or {})
    turns = results.get("turns") or []
    verdicts: dict[str, int] = {}
    for t in turns:
        v = t.verdict if hasattr(t, "verdict") else t.get("verdict", "?")
        verdicts[v] = verdicts.get(v, 0) + 1
    summary = {
        metric: {k: row.get(k) for k in ("n", *PERCENTILES, "passed")}
        for metric, row in (results.get("summary") or {}).items()
    }
    entry = {
        "started": run.get("started"),
        "finished": run.get("finished"),
        "rig": run.get("rig"),
        "dut": run.get("dut"),
        "git_commit": run.get("git_commit"),
        "tympan_version": run.get("tympan_version"),
        "turns": len(turns),
        "verdicts": verdicts,
        "summary": summary,
    }
    key = (entry["started"], entry["git_commit"], entry["dut"])
    if any((h.get("started"), h.get("git_commit"), h.get("dut")) == key for h in load_history(d)):
        return path
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, allow_nan=False, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return path


def load_history(history_dir: str | Path, limit: int | None = None) -> list[dict]:
    """The runs in the history folder, oldest first (the last `limit` of them).

    A line that is not valid JSON (a run killed mid-write) is skipped, not fatal: the
    history is a convenience, and the runs around it are still good.
    """
    path = Path(history_dir) / RUNS_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out[-limit:] if limit else out
