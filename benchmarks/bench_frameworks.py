"""A framework's voice agent as it ships, heard beside what it says of itself.

Run: .venv/bin/python benchmarks/bench_frameworks.py --dut SPEC [--rig RIG] [--out DIR]
         [--barge-ins N]

Plays every short question of the corpus (14) through the DUT on the rig (default: the JACK
loopback), then N barge-ins ("Stop" 500 ms into the reply to "How tall is Mount Everest?"),
and prints, as Markdown rows for docs/benchmarks.md: the heard TTFA (mouth to ear, from the
capture), the framework's own figure for the same turns (its ``turn_summary`` through the
observer: Pipecat's user-to-bot latency, LiveKit's e2e_latency), the difference per turn,
and the heard stop latency, each as p50 / p95 over the turns measured (with n); turns the
analysis discarded are counted, not used. Every turn's evidence stays in DIR.

    .venv/bin/python benchmarks/bench_frameworks.py --dut pipecat:examples/pipecat_bot/bot.py
    .venv/bin/python benchmarks/bench_frameworks.py \\
        --dut 'livekit:examples/livekit_agent/agent.py,args=jack'
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from harness.session import HarnessSession, RunSettings


def p50_p95(values: list[float]) -> str:
    if not values:
        return "– / – (n=0)"
    p50, p95 = np.percentile(values, [50, 95])
    return f"{p50:.0f} / {p95:.0f} (n={len(values)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dut", required=True)
    parser.add_argument("--rig", default="loopback")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--barge-ins", type=int, default=3)
    opts = parser.parse_args()
    out = opts.out or Path(tempfile.mkdtemp(prefix="tympan-bench-frameworks-"))
    heard, said, gap, stops = [], [], [], []
    discarded = 0
    began = time.monotonic()
    with HarnessSession(RunSettings(rig=opts.rig, dut=opts.dut, out_dir=out)) as session:
        questions = list(session.corpus.by_category("short_question"))
        plays = [(q.id, None, 0) for q in questions]
        plays += [("sq13_everest", "bi01_stop", k) for k in range(opts.barge_ins)]
        for i, (stimulus, clip, trial) in enumerate(plays, 1):
            t = session.turn(
                stimulus,
                barge_in=clip,
                barge_in_offset_ms=500.0 if clip else None,
                repeat=trial,
            )
            m, stages = t.metrics, t.stages.stages_ms
            print(
                f"[{i}/{len(plays)}] {t.name}: TTFA {m.ttfa_ms} ms, self-reported "
                f"{stages.get('self_reported_ttfa_ms')} ms",
                file=sys.stderr,
                flush=True,
            )
            if m.discard is not None or m.ttfa_ms is None:
                discarded += 1
                continue
            if clip is None:
                heard.append(m.ttfa_ms)
                if stages.get("self_reported_ttfa_ms") is not None:
                    said.append(stages["self_reported_ttfa_ms"])
                    gap.append(stages["heard_minus_reported_ms"])
            elif m.stop_latency_ms is not None:
                stops.append(m.stop_latency_ms)
        framework = session.run_info().get("dut_version", "?")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {time.monotonic() - began:.0f} s; evidence: {out}"
    )
    print(
        "| DUT | version | heard TTFA p50 / p95 ms | self-reported p50 / p95 ms | "
        "heard - self-reported p50 / p95 ms | heard stop latency p50 / p95 ms | discarded |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| `{opts.dut}` | {framework} | {p50_p95(heard)} | {p50_p95(said)} | {p50_p95(gap)} "
        f"| {p50_p95(stops)} | {discarded} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
