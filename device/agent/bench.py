"""Measure the reference agent in file mode over the corpus questions.

    python -m device.agent.bench [--fault NAME] [--category short_question] [--limit N]

For each question: end of speech (the manifest's label) → first non-silent output sample
(the file timeline, i.e. what a listener hears with an ideal one-period sound card), the
agent's own per-stage breakdown (``turn_summary``), and CPU seconds per real-time second.
Prints one JSON object per question and a summary line (p50/p95).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from device.agent.config import AgentConfig
from device.agent.engines import load_engines
from device.agent.filemode import MANIFEST, run_file

STAGES = (
    "vad_ms",
    "asr_final_ms",
    "llm_first_token_ms",
    "first_chunk_ms",
    "tts_first_audio_ms",
    "playback_ms",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.agent.bench")
    parser.add_argument("--fault")
    parser.add_argument("--category", default="short_question")
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = AgentConfig().with_fault(args.fault)
    engines = load_engines(cfg)
    doc = json.loads(MANIFEST.read_text(encoding="utf-8"))
    entries = [u for u in doc["utterances"] if u["category"] == args.category]
    if args.limit:
        entries = entries[: args.limit]
    ttfa: list[float] = []
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for u in entries:
        path = MANIFEST.parent / u["file"]
        r = run_file(Path(path), None, None, cfg, engines=engines)
        loud = np.flatnonzero(np.abs(r.output) > 1e-4)
        onset = (loud[0] / r.sample_rate_hz) if len(loud) else None
        ms = None if onset is None else round((onset - u["speech_end_s"]) * 1000, 1)
        summary = next((e.fields for e in r.events if e.event == "turn_summary"), {})
        if ms is not None:
            ttfa.append(ms)
        for k in STAGES:
            if summary.get(k) is not None:
                stages[k].append(summary[k])
        print(json.dumps({"id": u["id"], "eos_to_first_audio_ms": ms, **summary}))
    cpu1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall0
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)

    def pct(xs: list[float], q: float) -> float:
        return round(float(np.percentile(xs, q)), 1) if xs else float("nan")

    print(
        json.dumps(
            {
                "fault": args.fault,
                "turns": len(ttfa),
                "eos_to_first_audio_ms_p50": pct(ttfa, 50),
                "eos_to_first_audio_ms_p95": pct(ttfa, 95),
                "stage_p50_ms": {k: pct(v, 50) for k, v in stages.items()},
                "cpu_s_per_realtime_s": round(cpu / wall, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
