"""Measure the reference agent over the corpus questions.

    python -m device.agent.bench [--fault NAME] [--config FILE] [--category short_question]
        [--limit N] [--barge-in] [--barge-in-delay-ms 300]

Time to first audio (default): each question runs through file mode; end of speech (the
manifest's label) → first non-silent output sample (the file timeline: what a listener
hears with an ideal one-period sound card), with the agent's own per-stage breakdown
(``turn_summary``) and CPU seconds per real-time second (the whole process: every engine
thread).

Barge-in (``--barge-in``): each question is followed, ``--barge-in-delay-ms`` after the
reply starts playing, by a barge-in clip of the corpus; stop latency is the time from the
barge-in being confirmed (the end of the input frame that completed ``vad.barge_in_min_ms``
of speech, in the stream's own timeline) to the last non-silent sample of the interrupted
reply in the output (one period of output latency included).

Prints one JSON object per run and a summary line (p50/p95).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from device.agent.audio import resample
from device.agent.config import AgentConfig, load_config
from device.agent.engines import Engines, load_engines
from device.agent.events import TelemetryEvent
from device.agent.filemode import MANIFEST, read_input, run_file, with_oracle_transcripts
from device.agent.host import AgentHost, RealTimeClock

STAGES = (
    "vad_ms",
    "asr_final_ms",
    "llm_queue_ms",
    "llm_first_token_ms",
    "first_chunk_ms",
    "tts_first_audio_ms",
    "playback_ms",
)
SILENT = 1e-4
"""Output samples at or below this magnitude count as silence."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.agent.bench")
    parser.add_argument("--fault")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--category", default="short_question")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--barge-in", action="store_true")
    parser.add_argument("--barge-in-delay-ms", type=int, default=300)
    args = parser.parse_args(argv)
    cfg = (load_config(args.config) if args.config else AgentConfig()).with_fault(args.fault)
    engines = load_engines(cfg)
    doc = json.loads(MANIFEST.read_text(encoding="utf-8"))
    entries = [u for u in doc["utterances"] if u["category"] == args.category]
    clips = [u for u in doc["utterances"] if u["category"] == "barge_in"]
    if args.limit:
        entries = entries[: args.limit]
    values: list[float] = []
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for k, u in enumerate(entries):
        if args.barge_in:
            clip = clips[k % len(clips)]
            row = barge_in_turn(cfg, engines, u, clip, args.barge_in_delay_ms / 1000.0)
            value = row["stop_latency_ms"]
        else:
            row = ttfa_turn(cfg, engines, u)
            value = row["eos_to_first_audio_ms"]
            for s in STAGES:
                if row.get(s) is not None:
                    stages[s].append(row[s])
        if value is not None:
            values.append(value)
        print(json.dumps(row), flush=True)
    cpu1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall0
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    name = "stop_latency_ms" if args.barge_in else "eos_to_first_audio_ms"
    summary: dict[str, Any] = {
        "fault": args.fault,
        "config": str(args.config) if args.config else None,
        "turns": len(entries),
        "measured": len(values),
        f"{name}_p50": pct(values, 50),
        f"{name}_p95": pct(values, 95),
        f"{name}_max": round(max(values), 1) if values else None,
        "cpu_s_per_realtime_s": round(cpu / wall, 2),
    }
    if not args.barge_in:
        summary["stage_p50_ms"] = {k: pct(v, 50) for k, v in stages.items()}
    print(json.dumps(summary))
    return 0


def pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 1) if xs else None


def ttfa_turn(cfg: AgentConfig, engines: Engines, u: dict[str, Any]) -> dict[str, Any]:
    """One question in file mode: labelled end of speech → first audible output sample."""
    r = run_file(MANIFEST.parent / u["file"], None, None, cfg, engines=engines)
    loud = np.flatnonzero(np.abs(r.output) > SILENT)
    onset = (loud[0] / r.sample_rate_hz) if len(loud) else None
    ms = None if onset is None else round((onset - u["speech_end_s"]) * 1000, 1)
    summary = next((e.fields for e in r.events if e.event == "turn_summary"), {})
    return {"id": u["id"], "eos_to_first_audio_ms": ms, **summary}


def barge_in_turn(
    cfg: AgentConfig, engines: Engines, u: dict[str, Any], clip: dict[str, Any], delay_s: float
) -> dict[str, Any]:
    """One question, interrupted ``delay_s`` into the reply by ``clip``: stop latency."""
    question, rate = read_input(MANIFEST.parent / u["file"])
    interruption = resample(
        read_input(MANIFEST.parent / clip["file"])[0], clip["sample_rate_hz"], rate
    )
    cfg = with_oracle_transcripts(cfg, MANIFEST.parent / u["file"])
    if cfg.asr.engine == "oracle":
        cfg = cfg.replace(asr={"oracle_transcripts": (u["transcript"], clip["transcript"])})
    n = rate * cfg.pipeline.frame_ms // 1000
    out = [np.zeros(n, np.float32)]  # one period of output latency, as in file mode
    clip_at: int | None = None
    host = AgentHost(cfg, engines=engines, input_rate_hz=rate, output_rate_hz=rate)
    with host:
        clock = RealTimeClock(cfg.pipeline.frame_ms / 1000)
        k = 0
        idle_for = 0.0
        while k * n < 30 * rate:
            clock.wait_next()
            block = np.zeros(n, np.float32)
            seg = question[k * n : (k + 1) * n]
            block[: len(seg)] += seg
            if clip_at is not None:
                lo, hi = k * n, (k + 1) * n
                a, b = max(lo, clip_at), min(hi, clip_at + len(interruption))
                if b > a:
                    block[a - lo : b - lo] += interruption[a - clip_at : b - clip_at]
            host.push(block)
            out.append(host.pull(n))
            k += 1
            if clip_at is None:
                starts = host.events.events("playback_start")
                if starts:
                    clip_at = max(int((starts[0].get("output_s") + delay_s) * rate), k * n)
            elif k * n > clip_at + len(interruption):
                idle_for = idle_for + n / rate if host.idle() else 0.0
                if idle_for >= 0.4:
                    break
    y = np.concatenate(out)
    events = host.events.events()
    return {
        "id": u["id"],
        "clip": clip["id"],
        **stop_latency(y, rate, events),
    }


def stop_latency(y: np.ndarray, rate: int, events: list[TelemetryEvent]) -> dict[str, Any]:
    """Confirmed barge-in → last audible sample of the interrupted reply, in ms."""
    barge = next((e for e in events if e.event == "barge_in"), None)
    if barge is None:
        return {"stop_latency_ms": None, "note": "no barge-in detected"}
    confirmed_s = barge.get("input_s")
    turn = barge.get("turn")
    nxt = [
        e.get("output_s")
        for e in events
        if e.event == "playback_start" and e.get("turn") != turn and e.t_us > barge.t_us
    ]
    # The output array is one period behind the device position: add one period.
    end = int((nxt[0] + 0.02) * rate) if nxt else len(y)
    seg = y[int(confirmed_s * rate) : end]
    loud = np.flatnonzero(np.abs(seg) > SILENT)
    stop_ms = (loud[-1] + 1) * 1000.0 / rate if len(loud) else 0.0
    done = next((e for e in events if e.event == "cancel_done"), None)
    return {
        "stop_latency_ms": round(stop_ms, 1),
        "confirm_to_cancel_done_ms": round((done.t_us - barge.t_us) / 1000, 1) if done else None,
        "audio_dropped_ms": done.get("audio_dropped_ms") if done else None,
    }


if __name__ == "__main__":
    raise SystemExit(main())
