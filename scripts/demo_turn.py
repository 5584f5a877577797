"""The demo: simulate one turn with a known delay, record it, measure it with `tympan analyze`.

Builds a capture the way a lab rig would record it (a 0.3 s reverberant room, the ear mic
hearing the mouth at -10 dB, fan-like noise 30 dB under the reply), writes it as a 16-bit
WAV next to the DUT's own reply audio, runs the real `tympan analyze` command on it in blind
and reply-reference mode, and prints each measured TTFA next to the truth.

Usage: python scripts/demo_turn.py [--out DIR] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.corpus import Corpus  # noqa: E402
from harness.groundtruth import Condition, Speech, make_turn  # noqa: E402

USER_ID = "sq02_weather_today"  # 48 kHz, so the stimulus is the corpus file itself
REPLY_ID = "lq08_oven_celsius"


def _speech(corpus: Corpus, utterance_id: str) -> Speech:
    u = corpus.by_id(utterance_id)
    return Speech(u.load(), u.sample_rate_hz, u.speech_start_s, u.speech_end_s, u.id)


def _analyze(args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "harness.cli", "analyze", *args, "--json"]
    print("$ tympan " + " ".join(cmd[3:]), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"demo: tympan analyze failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/demo", help="folder for the capture (default out/demo)")
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    corpus = Corpus.load()
    user = corpus.by_id(USER_ID)
    rng = np.random.default_rng(args.seed)
    ttfa_ms = float(rng.uniform(400, 1200))
    condition = Condition(
        "demo: small room, leakage, noise",
        rt60_s=0.3,
        leakage_db=-10,
        noise="pink",
        snr_db=30,
        pcm16=True,
    )
    turn = make_turn(
        condition, _speech(corpus, USER_ID), _speech(corpus, REPLY_ID), rng, ttfa_ms=ttfa_ms
    )
    capture = out / "capture.wav"
    reply = out / "reply.wav"
    sf.write(capture, turn.capture, turn.sample_rate_hz, subtype="PCM_16")
    sf.write(reply, turn.reply, turn.sample_rate_hz, subtype="FLOAT")
    shown = capture.relative_to(ROOT) if capture.is_relative_to(ROOT) else capture
    print(f"simulated one turn ({condition.name}) -> {shown}")
    path_ms = turn.truth.ttfa_ms - ttfa_ms
    print(f"  user: {user.transcript!r} ({user.id})")
    print(
        f"  the DUT starts playing {ttfa_ms:.1f} ms after the user's speech ends; its sound "
        f"reaches the ear mic {path_ms:.2f} ms later (direct path)\n"
    )

    blind = _analyze([str(capture), "--stimulus", str(user.path)])
    ref = _analyze([str(capture), "--stimulus", str(user.path), "--reply-reference", str(reply)])

    truth = turn.truth.ttfa_ms
    print(f"\n{'':24s}{'TTFA ms':>12s}{'error ms':>12s}{'confidence':>12s}")
    print(f"{'truth':24s}{truth:12.3f}")
    ok = True
    for name, m, tol in (("blind", blind, 2.0), ("reply-reference", ref, 0.1)):
        if m["ttfa_ms"] is None:
            print(f"{name:24s}{'discarded':>12s}   {m['discard']}")
            ok = False
            continue
        err = m["ttfa_ms"] - truth
        ok &= abs(err) <= tol
        print(f"{name:24s}{m['ttfa_ms']:12.3f}{err:12.3f}{m['confidence']:12.2f}")
    print(
        f"\nsegments of the reply: {len(ref['segments'])}, gaps ms: "
        f"{', '.join(f'{g:.0f}' for g in ref['gaps_ms']) or 'none'}"
    )
    print("within tolerance (blind 2 ms, reply-reference 0.1 ms)" if ok else "OUT OF TOLERANCE")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
