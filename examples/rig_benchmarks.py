"""Measure the rig targets of docs/benchmarks.md ("Rigs").

    python examples/rig_benchmarks.py loopback-calibrate [--runs 20]
    python examples/rig_benchmarks.py sim-calibrate
    python examples/rig_benchmarks.py xruns --dut agent|echo [--turns 100] [--seconds 10]

loopback-calibrate runs `tympan calibrate --rig loopback --json` `--runs` times (each run
starts and stops its own jackd) and reports the latencies, spreads and confidences.
sim-calibrate sweeps the sim's configured delay and ref SNR and reports the worst error.
xruns runs consecutive turns on the loopback rig: each turn is one session that plays a
corpus question at the mouth and records `--seconds`; it counts xruns (in sessions and
between them) and measures TTFA with harness.analysis. The DUT is examples/jack_delay_dut.py
("echo") or the reference agent's JACK adapter ("agent": ``python -m device.agent.live``),
each in its own process, wired by client name. Results go to .scratch/bench/ as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / ".scratch" / "bench"


def _save(name: str, doc: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


def loopback_calibrate(runs: int) -> dict:
    """`tympan calibrate --rig loopback --json`, `runs` times, each with its own jackd."""
    results = []
    for i in range(runs):
        t0 = time.monotonic()
        proc = subprocess.run(
            [str(REPO / ".venv/bin/tympan"), "calibrate", "--rig", "loopback", "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        doc = json.loads(proc.stdout) if proc.stdout.strip() else {"ok": False}
        doc["wall_s"] = round(time.monotonic() - t0, 2)
        results.append(doc)
        print(
            f"run {i + 1}: {doc.get('latency_samples')} samples, spread "
            f"{doc.get('latency_spread_samples')}, confidence {doc.get('confidence')}, "
            f"xruns {doc.get('xruns')}, {doc['wall_s']} s",
            flush=True,
        )
    lat = [r.get("latency_samples") for r in results]
    summary = {
        "runs": runs,
        "latencies": sorted(set(lat), key=str),
        "same_latency_runs": max(lat.count(v) for v in set(lat)),
        "expected": results[0].get("expected_latency_samples"),
        "min_confidence": min(r.get("confidence", 0) for r in results),
        "max_spread": max(r.get("latency_spread_samples", 99) for r in results),
        "xruns": sum(r.get("xruns", 0) for r in results),
        "results": results,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}))
    return summary


def sim_calibrate() -> dict:
    """Calibration error on the sim over configured delays and ref SNRs."""
    from harness.rigs import open_rig
    from harness.rigs.calibrate import calibrate
    from harness.rigs.profile import validate

    rows = []
    for out_lat, in_lat in ((0, 0), (64, 64), (300, 77), (1000, 1500)):
        for snr in (10.0, 15.0, 20.0, 40.0, 80.0):
            data = {
                "rig": {"kind": "sim"},
                "sim": {
                    "output_latency_samples": out_lat,
                    "input_latency_samples": in_lat,
                    "ref_noise_dbfs": -9.0 - snr,  # the sweep's RMS is -9 dBFS
                    "seed": 7,
                },
            }
            with open_rig(validate(data, "<bench>"), use_cache=False) as rig:
                cal = calibrate(rig, repeats=8)
            err = cal.ref.latency_samples - (out_lat + in_lat)
            sub = float(np.median(cal.ref.lags_samples)) - (out_lat + in_lat)
            rows.append(
                {
                    "configured": out_lat + in_lat,
                    "snr_target_db": snr,
                    "snr_measured_db": round(cal.ref.snr_db, 2),
                    "latency_samples": cal.ref.latency_samples,
                    "error_samples": err,
                    "subsample_error": round(sub, 4),
                    "spread": cal.ref.latency_spread_samples,
                    "confidence": round(cal.ref.confidence, 3),
                }
            )
            print(rows[-1], flush=True)
    summary = {
        "cases": len(rows),
        "max_abs_error_samples": max(abs(r["error_samples"]) for r in rows),
        "max_abs_subsample_error": max(abs(r["subsample_error"]) for r in rows),
        "rows": rows,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    return summary


def _start_dut(kind: str, server: str, name: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if kind == "echo":
        cmd = [sys.executable, str(REPO / "examples/jack_delay_dut.py"), "--server", server,
               "--name", name, "--delay", "480"]  # fmt: skip
    else:
        cmd = [sys.executable, "-m", "device.agent.live", "--jack", name, "--server", server]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True, cwd=REPO)
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise SystemExit(f"the {kind} DUT did not start: {line!r}")
    return proc


def xruns(dut: str, turns: int, seconds: float) -> dict:
    """Consecutive turns on the loopback rig with a DUT in its own process."""
    from harness.analysis import analyze_capture
    from harness.corpus import Corpus
    from harness.rigs import open_rig
    from harness.signal.resample import resample

    fs = 48000
    questions = Corpus.load().by_category("short_question")
    stims = [(resample(u.load(), u.sample_rate_hz, fs).astype(np.float32), u) for u in questions]
    rows = []
    name = "bench-dut"
    with open_rig("loopback", use_cache=False) as rig:
        proc = _start_dut(dut, rig.server_name, name)
        try:
            rig.connect_dut(name)
            time.sleep(1.0)
            t_start = time.monotonic()
            for i in range(turns):
                stim, u = stims[i % len(stims)]
                idle_before = rig.idle_xruns
                with rig.session(capacity_s=seconds + 1) as s:
                    s.schedule(stim, s.position + 2 * rig.block_frames)
                    s.run_until(int(seconds * fs), timeout_s=seconds * 3 + 10)
                    cap = s.stop()
                ttfa = discard = None
                if dut == "agent":
                    m = analyze_capture(
                        cap.samples, fs, stim, fs, speech_end_s=u.speech_end_s,
                        ref_channel=0, ear_channel=1,
                    )  # fmt: skip
                    ttfa = None if m.discard else round(m.ttfa_ms, 1)
                    discard = m.discard
                rows.append(
                    {
                        "turn": i + 1,
                        "utterance": u.id,
                        "xruns": cap.status.xrun_count,
                        "where": [(x.kind, x.sample_index) for x in cap.status.xruns],
                        "idle_xruns": rig.idle_xruns - idle_before,
                        "ttfa_ms": ttfa,
                        "discard": discard,
                    }
                )
                print(rows[-1], flush=True)
                if dut == "agent":
                    time.sleep(0.5)  # let the agent finish speaking before the next question
            wall = time.monotonic() - t_start
        finally:
            proc.terminate()
            proc.wait(20)
    ttfas = [r["ttfa_ms"] for r in rows if r["ttfa_ms"] is not None]
    summary = {
        "dut": dut,
        "turns": turns,
        "seconds_per_turn": seconds,
        "wall_s": round(wall, 1),
        "session_xruns": sum(r["xruns"] for r in rows),
        "idle_xruns": sum(r["idle_xruns"] for r in rows),
        "turns_with_xruns": sum(1 for r in rows if r["xruns"]),
        "replies_measured": len(ttfas),
        "ttfa_p50_ms": round(statistics.median(ttfas), 1) if ttfas else None,
        "ttfa_p95_ms": round(float(np.percentile(ttfas, 95)), 1) if ttfas else None,
        "load_avg": os.getloadavg(),
        "rows": rows,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    return summary


def main() -> int:
    """Parse the arguments and run one benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("loopback-calibrate")
    p.add_argument("--runs", type=int, default=20)
    sub.add_parser("sim-calibrate")
    p = sub.add_parser("xruns")
    p.add_argument("--dut", choices=("agent", "echo"), default="agent")
    p.add_argument("--turns", type=int, default=100)
    p.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    if args.what == "loopback-calibrate":
        doc = loopback_calibrate(args.runs)
    elif args.what == "sim-calibrate":
        doc = sim_calibrate()
    else:
        doc = xruns(args.dut, args.turns, args.seconds)
    print(f"saved to {_save(args.what + ('-' + args.dut if args.what == 'xruns' else ''), doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
