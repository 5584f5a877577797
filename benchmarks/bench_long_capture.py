"""Memory and time of `tympan analyze` on a whole call: an hour (or more) in one capture.

Run: .venv/bin/python benchmarks/bench_long_capture.py [--minutes 60] [--rate 48000]
        [--codec mulaw] [--keep DIR]

It writes a capture of back-to-back five-turn conversations (harness.groundtruth's
`make_conversation`, each from its own seed) to a 16-bit WAV file a block at a time (never
holding the whole call), a conversation manifest naming every turn's stimulus, and the
truth. Then it runs the real command line in a child process, twice:

- `tympan analyze CALL.wav --conversation turns.json --json`: every turn;
- `tympan analyze CALL.wav --stimulus FIRST.wav --json`: one turn in the hour;

and reports each run's wall time, its peak resident memory (the child's ru_maxrss), the
file's size, and the TTFA error over the turns against the truth. The figures go into
docs/benchmarks.md ("Long captures").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from harness.groundtruth import Condition, corpus_sources
from harness.groundtruth_call import make_conversation

REPO = Path(__file__).resolve().parents[1]


def write_call(out: Path, minutes: float, rate: int, codec: str | None) -> dict:
    """Write CALL.wav, turns.json and truth.json into `out`; returns a summary."""
    opening = Condition("long call", sample_rate_hz=rate, codec=codec, context="greeting")
    cond = Condition("long call", sample_rate_hz=rate, codec=codec)
    src = corpus_sources(rate)
    stim_dir = out / "stimuli"
    stim_dir.mkdir(parents=True, exist_ok=True)
    subtype = {"mulaw": "ULAW", "alaw": "ALAW"}.get(codec or "", "PCM_16")
    turns: list[dict] = []
    truth: list[dict] = []
    total = int(minutes * 60 * rate)
    written = 0
    seed = 0
    names: dict[int, str] = {}
    with sf.SoundFile(str(out / "call.wav"), "w", rate, 2, subtype=subtype, format="WAV") as f:
        while written < total:
            # The agent's greeting opens the call; the rest is turn after turn.
            c = make_conversation(
                opening if seed == 0 else cond, src, np.random.default_rng(90000 + seed)
            )
            seed += 1
            for stim, end_s, t in zip(c.stimuli, c.speech_ends_s, c.truths, strict=True):
                key = hash(stim.tobytes())
                if key not in names:
                    names[key] = f"stimuli/s{len(names):02d}.wav"
                    sf.write(str(out / names[key]), stim, rate, subtype="FLOAT")
                turns.append({"stimulus": names[key], "speech_end_s": end_s})
                truth.append(
                    {"ttfa_ms": t.ttfa_ms, "speech_end_s": t.speech_end_s + written / rate}
                )
            block = c.capture[: total - written]
            f.write(block)
            written += len(block)
    # Turns cut off by the end of the call are not in the truth.
    keep = [i for i, t in enumerate(truth) if (t["speech_end_s"] + 2.0) * rate < written]
    turns = [turns[i] for i in keep]
    truth = [truth[i] for i in keep]
    (out / "turns.json").write_text(json.dumps({"turns": turns}))
    (out / "truth.json").write_text(json.dumps(truth))
    return {"frames": written, "turns": len(turns), "bytes": (out / "call.wav").stat().st_size}


# Runs the command as its own child and prints that child's peak RSS (kB) last on stderr,
# so each run's figure is its own (ru_maxrss of children is the largest child so far).
_WRAPPER = (
    "import resource, subprocess, sys; "
    "p = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(p.returncode)"
)


def run(argv: list[str]) -> tuple[float, float, str]:
    """(wall s, peak RSS MB, stdout) of `tympan analyze ARGV` in a child process."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "harness.cli", "analyze", *argv]
    p = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *cmd],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"tympan analyze failed ({p.returncode}): {p.stderr[-2000:]}")
    peak_kb = int(p.stderr.strip().splitlines()[-1])
    return wall, peak_kb / 1024, p.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--rate", type=int, default=48000)
    ap.add_argument("--codec", choices=("mulaw", "alaw"))
    ap.add_argument("--keep", type=Path, help="write the call here and keep it")
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(dir=args.keep.parent if args.keep else None) as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        info = write_call(out, args.minutes, args.rate, args.codec)
        gen_s = time.perf_counter() - t0
        mb = info["bytes"] / 2**20
        print(
            f"call: {info['frames'] / args.rate / 60:.1f} min at {args.rate} Hz, 2 channels, "
            f"{args.codec or '16-bit'}, {mb:.0f} MB, {info['turns']} turns "
            f"(written in {gen_s:.0f} s)"
        )
        truth = json.loads((out / "truth.json").read_text())
        first = json.loads((out / "turns.json").read_text())["turns"][0]
        wall1, rss1, out1 = run(
            [
                str(out / "call.wav"),
                "--stimulus",
                str(out / first["stimulus"]),
                "--speech-end",
                str(first["speech_end_s"]),
                "--json",
            ]
        )
        one = json.loads(out1)
        err1 = one["ttfa_ms"] - truth[0]["ttfa_ms"] if one["ttfa_ms"] is not None else None
        wall, rss, stdout = run(
            [str(out / "call.wav"), "--conversation", str(out / "turns.json"), "--json"]
        )
        rows = [json.loads(line) for line in stdout.splitlines()]
        errs = [
            abs(r["ttfa_ms"] - t["ttfa_ms"])
            for r, t in zip(rows, truth, strict=True)
            if r["ttfa_ms"] is not None
        ]
        discards = sum(r["discard"] is not None for r in rows)
        print(
            "| run | wall s | peak memory MB | memory / file | turns | |error| p50 / p95 / max ms |"
        )
        print("|---|---|---|---|---|---|")
        print(
            f"| one stimulus (`--stimulus`) | {wall1:.1f} | {rss1:.0f} | {rss1 / mb:.2f} | 1 | "
            f"{'–' if err1 is None else f'{abs(err1):.3f}'} |"
        )
        e = np.asarray(errs)
        print(
            f"| every turn (`--conversation`) | {wall:.1f} | {rss:.0f} | {rss / mb:.2f} | "
            f"{len(rows)} ({discards} discarded) | {np.median(e):.3f} / "
            f"{np.percentile(e, 95):.3f} / {e.max():.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
