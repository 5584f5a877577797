"""Accuracy and speed of `harness.analysis` against synthetic turns with known truth.

Run: .venv/bin/python benchmarks/bench_analysis.py [--turns N] [--only SUBSTRING] [--speed-only]

For every condition it builds N turns from the corpus (harness.groundtruth), measures each
in blind mode, in reply-reference mode and with a naive baseline (a fixed -40 dBFS threshold
on 10 ms frames of the raw ear channel, started at the true speech end), and prints the
|error| median, p95 and max in ms, the discard rate, and how many answers were confident but
more than 20 ms off. Then it times the analysis on 10..60 s captures. The tables go into
docs/benchmarks.md as printed (Markdown).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from harness.analysis import analyze_capture
from harness.groundtruth import Condition, Speech, corpus_sources, make_turn

C = Condition
CONDITIONS: list[Condition] = [
    C("clean 48 kHz float"),
    C("clean 16 kHz float", sample_rate_hz=16000),
    C("clean 48 kHz 16-bit", pcm16=True),
    C("clean 16 kHz 16-bit", sample_rate_hz=16000, pcm16=True),
    C("reverb RT60 0.2 s", rt60_s=0.2),
    C("reverb RT60 0.4 s", rt60_s=0.4),
    C("reverb RT60 0.6 s", rt60_s=0.6),
    C("reverb RT60 0.8 s", rt60_s=0.8),
    C("leakage -20 dB", leakage_db=-20),
    C("leakage -10 dB", leakage_db=-10),
    C("leakage 0 dB", leakage_db=0),
    C("reverb 0.4 s + leakage -10 dB", rt60_s=0.4, leakage_db=-10),
    C("reverb 0.8 s + leakage 0 dB", rt60_s=0.8, leakage_db=0),
    C("reverb 0.4 + leak -10 + white 30 dB", rt60_s=0.4, leakage_db=-10, noise="white", snr_db=30),
    C("reverb 0.4 + leak -10 + white 20 dB", rt60_s=0.4, leakage_db=-10, noise="white", snr_db=20),
    C("reverb 0.4 + leak -10 + pink 20 dB", rt60_s=0.4, leakage_db=-10, noise="pink", snr_db=20),
    C(
        "reverb 0.4 + leak -10 + babble 20 dB",
        rt60_s=0.4,
        leakage_db=-10,
        noise="babble",
        snr_db=20,
    ),
    C("reverb 0.4 + leak -10 + white 10 dB", rt60_s=0.4, leakage_db=-10, noise="white", snr_db=10),
]
for kind in ("white", "pink", "babble"):
    for snr in (30, 20, 10, 0):
        CONDITIONS.append(C(f"{kind} noise {snr} dB", noise=kind, snr_db=snr))
CONDITIONS += [
    C("low level -40 dB, 16-bit", ear_gain_db=-40, pcm16=True),
    C("low level -60 dB, 16-bit", ear_gain_db=-60, pcm16=True),
    C("DUT clock +200 ppm", dut_drift_ppm=200),
    C("DUT clock -200 ppm", dut_drift_ppm=-200),
    C("ear clock +200 ppm, leak -10", ear_drift_ppm=200, leakage_db=-10),
    C("ear clock -200 ppm, leak -10", ear_drift_ppm=-200, leakage_db=-10),
    C("DUT +200 ppm, white 10 dB", dut_drift_ppm=200, noise="white", snr_db=10),
    C("barge-in clean", barge_in=True),
    C("barge-in 16 kHz 16-bit", barge_in=True, sample_rate_hz=16000, pcm16=True),
    C("barge-in leakage -10 dB", barge_in=True, leakage_db=-10),
    C("barge-in white 20 dB", barge_in=True, noise="white", snr_db=20),
    C("barge-in white 10 dB", barge_in=True, noise="white", snr_db=10),
    C("barge-in babble 20 dB", barge_in=True, noise="babble", snr_db=20),
    C("barge-in reverb 0.3 s", barge_in=True, rt60_s=0.3),
]
CONFIDENT_WRONG_MS = 20.0


def naive_onset_s(ear: np.ndarray, fs: int, speech_end_s: float) -> float | None:
    """First 10 ms frame after speech end whose RMS exceeds -40 dBFS (the naive baseline)."""
    frame = int(0.01 * fs)
    start = int(speech_end_s * fs)
    seg = ear[start:]
    n = len(seg) // frame
    if n == 0:
        return None
    rms = np.sqrt(np.mean(seg[: n * frame].reshape(n, frame) ** 2, axis=1))
    hit = np.flatnonzero(rms > 10 ** (-40 / 20))
    return None if hit.size == 0 else (start + int(hit[0]) * frame) / fs


@dataclass
class Tally:
    errors: list[float]
    discards: int = 0
    confident_wrong: int = 0

    def add(self, err_ms: float | None) -> None:
        if err_ms is None:
            self.discards += 1
            return
        self.errors.append(abs(err_ms))
        if abs(err_ms) > CONFIDENT_WRONG_MS:
            self.confident_wrong += 1

    def cells(self, n: int, decimals: int = 3) -> str:
        if not self.errors:
            return "– | – | – | 100%"
        e = np.asarray(self.errors)
        f = f"{{:.{decimals}f}}"
        return (
            f"{f.format(np.median(e))} | {f.format(np.percentile(e, 95))} | "
            f"{f.format(e.max())} | {100 * self.discards / n:.0f}%"
        )


def run_accuracy(turns: int, only: str | None) -> None:
    sources = {fs: corpus_sources(fs) for fs in (16000, 48000)}
    print(
        "| condition | blind median | blind p95 | blind max | blind discard | "
        "ref median | ref p95 | ref max | ref discard | naive median | naive p95 | "
        "stop err p95 | confident >20 ms |"
    )
    print("|---|" + "---|" * 12)
    for cond in CONDITIONS:
        if only and only not in cond.name:
            continue
        src = sources[cond.sample_rate_hz]
        blind, ref, naive, stop = Tally([]), Tally([]), Tally([]), Tally([])
        for i in range(turns):
            rng = np.random.default_rng(1000 + i)
            user, reply, clip, answer = src.pick_turn(rng)
            t = make_turn(
                cond,
                user,
                reply,
                rng,
                barge_clip=clip,
                answer=answer,
                babble_talkers=list(src.babble_talkers),
            )
            fs = t.sample_rate_hz
            m = analyze_capture(
                t.capture,
                fs,
                t.stimulus,
                fs,
                speech_end_s=t.speech_end_s,
                barge_in=t.barge_in_clip,
            )
            blind.add(None if m.ttfa_ms is None else m.ttfa_ms - t.truth.ttfa_ms)
            if t.truth.stop_latency_ms is not None:
                stop.add(
                    None
                    if m.stop_latency_ms is None
                    else m.stop_latency_ms - t.truth.stop_latency_ms
                )
            mr = analyze_capture(
                t.capture,
                fs,
                t.stimulus,
                fs,
                speech_end_s=t.speech_end_s,
                reply_reference=t.reply,
            )
            ref.add(None if mr.ttfa_ms is None else mr.ttfa_ms - t.truth.ttfa_ms)
            on = naive_onset_s(t.capture[:, 1], fs, t.truth.speech_end_s)
            naive.add(None if on is None else (on - t.truth.reply_onset_s) * 1000)
        nb = blind.cells(turns, 2).split(" | ")
        nr = ref.cells(turns, 4).split(" | ")
        nn = naive.cells(turns, 1).split(" | ")
        st = stop.cells(turns, 2).split(" | ")[1] if cond.barge_in else "–"
        wrong = blind.confident_wrong + ref.confident_wrong + stop.confident_wrong
        print(
            f"| {cond.name} | {' | '.join(nb)} | {' | '.join(nr)} | {nn[0]} | {nn[1]} | "
            f"{st} | {wrong} |",
            flush=True,
        )


def _long_turn(seconds: float, fs: int = 48000, leakage_db: float | None = -10):
    """A turn whose capture lasts about `seconds`: a long reply made of corpus speech."""
    src = corpus_sources(fs)
    rng = np.random.default_rng(7)
    pieces = []
    total = 0.0
    i = 0
    while total < seconds - 4:
        q = src.questions[i % len(src.questions)]
        pieces.append(q.samples if q.sample_rate_hz == fs else None)
        pieces = [p for p in pieces if p is not None]
        total = sum(len(p) for p in pieces) / fs
        i += 1
    reply = Speech(np.concatenate(pieces), fs, 0.35, total - 0.35, "long")
    user = src.questions[0]
    return make_turn(Condition("speed", leakage_db=leakage_db), user, reply, rng, ttfa_ms=600)


def run_speed(repeats: int = 7) -> None:
    """Wall and CPU time of analyze_capture on 10..60 s captures (48 kHz, 2 channels).

    CPU time (process time, all threads) is reported beside wall time because these
    machines are shared: wall time swells when another job holds the other core, CPU time
    much less so.
    """
    print(
        "| capture | ear hears the mouth | blind wall s (median) | blind CPU s | "
        "reply-reference wall s | reply-reference CPU s |"
    )
    print("|---|---|---|---|---|---|")
    for leakage_db in (None, -10):
        for seconds in (10, 20, 40, 60):
            t = _long_turn(seconds, leakage_db=leakage_db)
            fs = t.sample_rate_hz
            walls: dict[str, list[float]] = {"blind": [], "ref": []}
            cpus: dict[str, list[float]] = {"blind": [], "ref": []}
            for _ in range(repeats):
                for mode in ("blind", "ref"):
                    extra = {"reply_reference": t.reply} if mode == "ref" else {}
                    w0, c0 = time.perf_counter(), time.process_time()
                    analyze_capture(
                        t.capture, fs, t.stimulus, fs, speech_end_s=t.speech_end_s, **extra
                    )
                    walls[mode].append(time.perf_counter() - w0)
                    cpus[mode].append(time.process_time() - c0)
            heard = "no (loopback)" if leakage_db is None else f"{leakage_db} dB"
            print(
                f"| {len(t.capture) / fs:.1f} s | {heard} | {np.median(walls['blind']):.3f} | "
                f"{np.median(cpus['blind']):.3f} | {np.median(walls['ref']):.3f} | "
                f"{np.median(cpus['ref']):.3f} |",
                flush=True,
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=20, help="turns per condition (default 20)")
    ap.add_argument("--only", help="run only conditions whose name contains this")
    ap.add_argument("--speed-only", action="store_true")
    ap.add_argument("--accuracy-only", action="store_true")
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    if not args.speed_only:
        run_accuracy(args.turns, args.only)
        print()
    if not args.accuracy_only:
        run_speed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
