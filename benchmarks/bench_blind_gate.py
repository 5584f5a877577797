"""Blind mode in steady noise: what it answers, what it refuses, and how far off its answers are.

Run: .venv/bin/python benchmarks/bench_blind_gate.py [--turns N] [--seed-base S] [--jobs J]
         [--only SUBSTRING] [--details]

Every condition (48 and 16 kHz; white and pink noise; 30, 25, 20 and 10 dB SNR) is N
synthetic turns built like tests/test_blind_noise.py's (harness.groundtruth.make_turn, a dry
path, no leakage; turn i from seed SEED_BASE + i, the same user, reply, TTFA and path at
every SNR), measured blind. For each it prints how many turns were answered and refused
(and why), the median, p95 and max |error| of the answers in ms, how many answers were more
than 2 ms off (confident wrong: the issue's target is none at 30 dB) and the answers'
confidence range. Seeds: 5000+ tuned the blind confidence gate (docs/measurement.md); 1000+
are bench_analysis.py's accuracy seeds (its "white/pink noise 30 dB" rows are these turns),
never used to tune it; tests/test_blind_noise.py uses 0+. The tables go into
docs/benchmarks.md as printed (Markdown).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from harness.analysis import analyze_capture
from harness.groundtruth import Condition, corpus_sources, make_turn

RATES = (48000, 16000)
NOISES = ("white", "pink")
SNRS_DB = (30.0, 25.0, 20.0, 10.0)
WRONG_MS = 2.0

_SOURCES: dict = {}


def conditions() -> list[Condition]:
    return [
        Condition(
            f"{fs // 1000} kHz {noise} {snr:g} dB", sample_rate_hz=fs, noise=noise, snr_db=snr
        )
        for fs in RATES
        for noise in NOISES
        for snr in SNRS_DB
    ]


def measure(cond: Condition, seed: int) -> tuple[int, float | None, float, str | None]:
    """(seed, error ms or None, confidence, discard reason) of one blind turn."""
    fs = cond.sample_rate_hz
    if fs not in _SOURCES:
        _SOURCES[fs] = corpus_sources(fs)
    rng = np.random.default_rng(seed)
    user, reply, _, _ = _SOURCES[fs].pick_turn(rng)
    t = make_turn(cond, user, reply, rng)
    m = analyze_capture(t.capture, fs, t.stimulus, fs, speech_end_s=t.speech_end_s)
    err = None if m.ttfa_ms is None else m.ttfa_ms - t.truth.ttfa_ms
    reason = None if m.discard_reason is None else m.discard_reason.value
    return seed, err, float(m.confidence), reason


def _measure_args(args: tuple[Condition, int]) -> tuple[int, float | None, float, str | None]:
    return measure(*args)


def row(cond: Condition, got: list[tuple[int, float | None, float, str | None]]) -> str:
    answered = [(s, e, c) for s, e, c, _ in got if e is not None]
    reasons = Counter(r for _, e, _, r in got if e is None)
    refused = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "0"
    if answered:
        err = np.abs([e for _, e, _ in answered])
        conf = [c for _, _, c in answered]
        stats = (
            f"{np.median(err):.2f} | {np.percentile(err, 95):.2f} | {err.max():.2f} | "
            f"{int(np.sum(err > WRONG_MS))} | {min(conf):.2f}-{max(conf):.2f}"
        )
    else:
        stats = "– | – | – | 0 | –"
    return f"| {cond.name} | {len(answered)}/{len(got)} | {refused} | {stats} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=30, help="turns per condition (default 30)")
    ap.add_argument(
        "--seed-base",
        type=int,
        default=1000,
        help="turn i is built from seed SEED_BASE + i (1000: the accuracy benchmark's seeds; "
        "5000: the seeds the gate's constants were tuned on)",
    )
    ap.add_argument("--only", help="run only conditions whose name contains this")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument(
        "--details", action="store_true", help="also list every answer more than 2 ms off"
    )
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; seeds {args.seed_base}..{args.seed_base + args.turns - 1}"
    )
    print()
    print(
        "| condition | answered | refused | median abs. error ms | p95 | max | "
        "answered > 2 ms off | confidence |"
    )
    print("|---|" + "---|" * 7)
    wrong: list[str] = []
    pool = ProcessPoolExecutor(args.jobs) if args.jobs > 1 else None
    try:
        for cond in conditions():
            if args.only and args.only not in cond.name:
                continue
            work = [(cond, args.seed_base + i) for i in range(args.turns)]
            got = list(pool.map(_measure_args, work) if pool else map(_measure_args, work))
            print(row(cond, got), flush=True)
            wrong += [
                f"{cond.name}, seed {s}: {e:+.2f} ms at confidence {c:.3f}"
                for s, e, c, _ in got
                if e is not None and abs(e) > WRONG_MS
            ]
    finally:
        if pool:
            pool.shutdown()
    if args.details and wrong:
        print()
        print("Answers more than 2 ms off:")
        for w in wrong:
            print(f"- {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
