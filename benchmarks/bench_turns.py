"""Harness overhead per turn of `harness.scenario.run_turn`: wall time minus the audio's own
length, split into the streaming part (settle, stimulus, reply, the end-of-reply silence:
all audio, so its overhead is what the loop adds) and saving + analysis after the session.

Run: .venv/bin/python benchmarks/bench_turns.py [--rig sim|loopback] [--dut SPEC] [--turns N]

Turns cycle through the corpus's short questions. Prints one Markdown row per run for
docs/benchmarks.md, plus TTFA p50/p95 as measured.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from harness.corpus import Corpus
from harness.rigs import open_rig
from harness.scenario import AnalysisPool, TurnPlan, open_dut, run_turn


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rig", default="sim")
    ap.add_argument("--dut", default="scripted")
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--pool", action="store_true", help="analyse in an AnalysisPool worker")
    args = ap.parse_args()
    questions = Corpus.load().by_category("short_question")
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        open_rig(args.rig, use_cache=False) as rig,
        open_dut(args.dut, rig, log_dir=Path(tmp) / "dut") as dut,
        AnalysisPool() if args.pool else contextlib.nullcontext() as pool,
    ):
        t0 = time.monotonic()
        results = []
        for k in range(args.turns):
            u = questions[k % len(questions)]
            r = run_turn(rig, dut, TurnPlan(stimulus=u), out_dir=Path(tmp) / f"t{k}", pool=pool)
            r.metrics if pool is None else None  # noqa: B018 - what a caller would do
            results.append(r)
        # With a pool the last analyses finish here; the run's total includes that wait.
        for r in results:
            rows.append((r.wall_s, r.audio_s, r.stream_s, r.analysis_s, r.metrics.ttfa_ms, r.xruns))
        total = time.monotonic() - t0
    a = np.array([x[:4] for x in rows])
    over = (a[:, 0] - a[:, 1]) * 1000
    amortised = (total - a[:, 1].sum()) / len(rows) * 1000
    stream_over = (a[:, 2] - a[:, 1]) * 1000
    analysis = a[:, 3] * 1000
    ttfa = np.array([x[4] for x in rows if x[4] is not None])
    xruns = sum(x[5] for x in rows)
    print(
        f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )
    print(
        "| rig | DUT | turns | audio s/turn | run_turn overhead median / p95 ms | "
        "run total overhead per turn ms | streaming part ms | save + analysis ms | "
        "TTFA p50 / p95 ms | xruns |"
    )
    dut = f"`{args.dut}`" + (" + AnalysisPool" if args.pool else "")
    ttfa_text = f"{np.median(ttfa):.1f} / {np.quantile(ttfa, 0.95):.1f}" if ttfa.size else "-"
    print(
        f"| {args.rig} | {dut} | {len(rows)} | {np.median(a[:, 1]):.2f} | "
        f"{np.median(over):.0f} / {np.quantile(over, 0.95):.0f} | {amortised:.0f} | "
        f"{np.median(stream_over):.0f} | {np.median(analysis):.0f} | {ttfa_text} | {xruns} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
