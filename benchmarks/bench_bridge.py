"""The device bridge against its targets, over a real pty to the emulator (a subprocess).

Run: .venv/bin/python benchmarks/bench_bridge.py [--quick] [--only NAME] [--json]

- ``sync``: clock-sync uncertainty (target <= 200 µs): 9 syncs of 64 PING/PONG over 1 s
  against a device clock drifting +30 ppm; medians of the bound, the round trip, and the
  true mapping error of 2,000 events stamped with their host time (``t_true_us``).
- ``throughput``: 5,000 events/s for 60 s (target: zero loss), every event checked; then
  the highest rate the link sustains for 10 s without loss (headroom).
- ``noise``: 1% of the device's bytes corrupted, 50,000 events (target: zero frames with
  bad content accepted, loss limited to the frames the noise damaged), 3 seeds.
- ``reconnect``: 10 unplugs of 0.3 s (target: reconnected within 1 s of the port coming
  back): host time from the new pty's creation to the bridge being back.

``--quick`` shortens every part (for a smoke run). Prints Markdown tables (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from device.bridge import DeviceBridge
from device.emulator.device import check_synthetic
from tests.emulator.helpers import EmulatorProcess, wait_until

LOG_DIR = Path(tempfile.gettempdir()) / "tympan-bench-bridge"


def _bridge(path: str, **kw: Any) -> DeviceBridge:
    kw.setdefault("sync_interval_s", None)
    kw.setdefault("sync_pings", 16)
    return DeviceBridge(path, log_dir=LOG_DIR, **kw)


def _stream(b: DeviceBridge, n: int, rate_hz: float, timeout_s: float) -> tuple[list, float]:
    """Stream n synthetic events; returns (events, seconds from first to last arrival)."""
    b.send_command("stream", {"count": n, "rate_hz": rate_hz}, timeout_s=0.5, retries=10)
    events = []
    start = last = time.monotonic()
    deadline = start + timeout_s
    expected_end = start + n / rate_hz
    while len(events) < n and time.monotonic() < deadline:
        got = b.drain()
        if got:
            events.extend(e for e in got if e.name == "llm_token")
            last = time.monotonic()
        elif time.monotonic() > max(expected_end, last) + 1.5:
            break  # the stream is over and some never came (a lossy link): stop waiting
        else:
            time.sleep(0.005)
    span_s = (events[-1].t_received_us - events[0].t_received_us) / 1e6 if events else 0.0
    return events, span_s


def bench_sync(quick: bool) -> dict[str, Any]:
    runs = 3 if quick else 9
    rows = []
    with EmulatorProcess("--clock-drift-ppm", "30") as emu, _bridge(emu.path) as b:
        for _ in range(runs):
            # a fresh fit each time: what one `tympan device sync` sees
            b._bursts.clear()
            fit = b.sync(64, spacing_s=1.0 / 63)
            events, _ = _stream(b, 2000 if not quick else 500, 2000, 10.0)
            errors = [abs(e.t_host_us - e.fields["t_true_us"]) for e in events]
            rows.append(
                {
                    "uncertainty_us": fit.uncertainty_us,
                    "rtt_us_p50": fit.rtt_us_p50,
                    "rtt_us_min": fit.rtt_us_min,
                    "drift_ppm": fit.drift_ppm,
                    "drift_uncertainty_ppm": fit.drift_uncertainty_ppm,
                    "true_error_us_median": statistics.median(errors),
                    "true_error_us_max": max(errors),
                    "within_bound": all(
                        abs(e.t_host_us - e.fields["t_true_us"])
                        <= fit.uncertainty_at_us(e.t_device_us) + 1
                        for e in events
                    ),
                }
            )
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "within_bound"}
    med["max_uncertainty_us"] = max(r["uncertainty_us"] for r in rows)
    med["all_within_bound"] = all(r["within_bound"] for r in rows)
    med["runs"] = runs
    return med


def bench_throughput(quick: bool) -> dict[str, Any]:
    seconds = 5 if quick else 60
    out: dict[str, Any] = {}
    with EmulatorProcess() as emu, _bridge(emu.path) as b:
        n = 5000 * seconds
        t0 = time.monotonic()
        events, span_s = _stream(b, n, 5000, seconds + 30)
        wall_s = time.monotonic() - t0
        stats = b.stats
        out["target"] = {
            "rate_hz": 5000,
            "seconds": seconds,
            "sent": n,
            "received": len(events),
            "lost": n - len(events),
            "bad_content": sum(not check_synthetic(e.fields) for e in events),
            "in_order": [e.fields["i"] for e in events] == list(range(len(events))),
            "rate_received_hz": round(len(events) / span_s) if span_s else 0,
            "wall_s": round(wall_s, 2),
            "bad_frames": stats.bad_frames,
            "frames_missing": stats.frames_missing,
        }
        headroom = []
        for rate in (10_000, 20_000, 40_000) if not quick else (10_000,):
            n = rate * (10 if not quick else 2)
            events, span_s = _stream(b, n, rate, 60)
            ok = len(events) == n and [e.fields["i"] for e in events] == list(range(n))
            headroom.append(
                {
                    "rate_hz": rate,
                    "sent": n,
                    "received": len(events),
                    "rate_received_hz": round(len(events) / span_s) if span_s else 0,
                    "lossless": ok,
                }
            )
        out["headroom"] = headroom
    return out


def bench_noise(quick: bool) -> list[dict[str, Any]]:
    n = 5000 if quick else 50_000
    rows = []
    for seed in (1, 2, 3) if not quick else (1,):
        with EmulatorProcess("--seed", str(seed)) as emu, _bridge(emu.path) as b:
            b.send_command("configure", {"link_noise": 0.01})
            events, _ = _stream(b, n, 5000, n / 5000 + 20)
            # drain whatever is still on its way, then a clean closing exchange
            time.sleep(0.5)
            events.extend(e for e in b.drain() if e.name == "llm_token")
            b.send_command("configure", {"link_noise": 0}, timeout_s=0.3, retries=20)
            b.send_command("set_volume", {"level": 1})
            stats = b.stats
        s = emu.stop()
        lost = s["frames_sent"] - stats.frames_in
        rows.append(
            {
                "seed": seed,
                "frames_sent": s["frames_sent"],
                "bytes_corrupted_pct": round(
                    100 * s["bytes_corrupted"] / max(stats.bytes_in, 1), 3
                ),
                "frames_corrupted": s["frames_corrupted"],
                "frames_damaged": s["frames_damaged"],
                "frames_lost": lost,
                "bad_frames_rejected": stats.bad_frames,
                "bad_content_accepted": sum(not check_synthetic(e.fields) for e in events),
                "loss_within_damage": 0 <= lost <= s["frames_damaged"],
                "seq_missing_equals_lost": stats.frames_missing == lost,
            }
        )
    return rows


def bench_reconnect(quick: bool) -> dict[str, Any]:
    unplugs = 3 if quick else 10
    link = Path(tempfile.mkdtemp(prefix="tympan-bench-")) / "ttyBENCH"
    with EmulatorProcess("--link", str(link)) as emu, _bridge(str(link)) as b:
        for k in range(unplugs):
            b.send_command("unplug", {"for_s": 0.3})
            assert wait_until(lambda k=k: len(b.gaps) > k and b.gaps[k].t_end_host_us, 10.0)
            time.sleep(0.2)
        gaps = b.gaps
    summary = emu.stop()
    latencies_ms = [
        (g.t_end_host_us - t_replug) / 1000.0
        for g, (t_replug, _) in zip(gaps, summary["replugs"], strict=True)
    ]
    return {
        "unplugs": unplugs,
        "reconnects": len(gaps),
        "latency_ms_median": round(statistics.median(latencies_ms), 2),
        "latency_ms_max": round(max(latencies_ms), 2),
        "gap_ms_median": round(statistics.median(g.duration_ms for g in gaps), 1),
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("sync", "throughput", "noise", "reconnect"))
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = parser.parse_args()
    parts = {
        "sync": bench_sync,
        "throughput": bench_throughput,
        "noise": bench_noise,
        "reconnect": bench_reconnect,
    }
    results: dict[str, Any] = {"machine": machine()}
    for name, fn in parts.items():
        if args.only and name != args.only:
            continue
        t0 = time.monotonic()
        results[name] = fn(args.quick)
        print(f"# {name}: {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"machine: {results['machine']}\n")
    if "sync" in results:
        r = results["sync"]
        print(
            f"clock sync over a pty ({r['runs']} syncs of 64 PING/PONG over 1 s, drift +30 ppm):\n"
        )
        print("| uncertainty µs (median / max) | true error µs (median / max) | RTT p50 µs | "
              "RTT min µs | drift ppm | all within bound |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        print(f"| {r['uncertainty_us']:.0f} / {r['max_uncertainty_us']:.0f} | "
              f"{r['true_error_us_median']:.0f} / {r['true_error_us_max']:.0f} | "
              f"{r['rtt_us_p50']:.0f} | {r['rtt_us_min']:.0f} | {r['drift_ppm']:.1f} | "
              f"{r['all_within_bound']} |\n")  # fmt: skip
    if "throughput" in results:
        t = results["throughput"]["target"]
        print("throughput (every event's content checked):\n")
        print("| rate sent | seconds | sent | received | lost | bad content | in order | "
              "rate received |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        print(
            f"| {t['rate_hz']}/s | {t['seconds']} | {t['sent']} | {t['received']} | "
            f"{t['lost']} | {t['bad_content']} | {t['in_order']} | {t['rate_received_hz']}/s |"
        )
        for h in results["throughput"]["headroom"]:
            print(f"| {h['rate_hz']}/s | {h['sent'] // h['rate_hz']} | {h['sent']} | "
                  f"{h['received']} | {h['sent'] - h['received']} | - | {h['lossless']} | "
                  f"{h['rate_received_hz']}/s |")  # fmt: skip
        print()
    if "noise" in results:
        print("1% of bytes corrupted (device -> host), 5,000 events/s:\n")
        print("| seed | frames sent | bytes corrupted % | frames damaged | frames lost | "
              "rejected | bad content accepted | loss <= damage |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        for r in results["noise"]:
            print(f"| {r['seed']} | {r['frames_sent']} | {r['bytes_corrupted_pct']} | "
                  f"{r['frames_damaged']} | {r['frames_lost']} | {r['bad_frames_rejected']} | "
                  f"{r['bad_content_accepted']} | {r['loss_within_damage']} |")  # fmt: skip
        print()
    if "reconnect" in results:
        r = results["reconnect"]
        print(f"reconnect ({r['unplugs']} unplugs of 0.3 s): port back -> bridge back "
              f"median {r['latency_ms_median']} ms, max {r['latency_ms_max']} ms; "
              f"gap median {r['gap_ms_median']} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
