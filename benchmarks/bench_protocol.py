"""Speed and robustness of the device protocol (device/protocol) and the C library's size.

Run: .venv/bin/python benchmarks/bench_protocol.py [--frames N] [--fuzz-frames N] [--repeats R]

Prints Markdown tables (as recorded in docs/benchmarks.md, "Device protocol"):
1. Python encode and StreamDecoder.feed throughput on typical telemetry EVENTs (median of R
   runs), frames/s and MB/s of wire bytes;
2. a long fuzz: N frames, 0.1% / 1% / 5% of bytes flipped, inserted or deleted; frames lost vs
   frames touched, bad frames accepted (must be 0), peak decoder buffer;
3. the C library's code and RAM size at -Os (`make -C device/firmware size`).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from device.protocol import Event, StreamDecoder, encode
from tests.protocol.fuzz import fuzz_run


def typical_events(n: int) -> list[Event]:
    """A mix like the reference agent's telemetry: short texts, a few ints and floats."""
    rng = random.Random(0)
    kinds = [
        ("llm_token", lambda i: {"turn": i % 50, "text": rng.choice(["the", " weather", ","])}),
        ("tts_chunk", lambda i: {"turn": 3, "text": "Sure, I can help.", "tokens": 4}),
        ("queue_depth", lambda i: {"queue": "tts", "depth": i % 4, "bound": 8}),
        ("playback_start", lambda i: {"turn": 3, "output_s": i * 0.02}),
        ("state", lambda i: {"state": "speaking"}),
    ]
    out = []
    for i in range(n):
        name, fields = kinds[i % len(kinds)]
        out.append(Event(name, 1_000_000 + i * 200, fields(i)))
    return out


def bench_speed(n: int, repeats: int) -> None:
    events = typical_events(n)
    enc_s, dec_s = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        frames = [encode(e, i & 0xFFFF) for i, e in enumerate(events)]
        enc_s.append(time.perf_counter() - t)
        stream = b"".join(frames)
        decoder = StreamDecoder()
        t = time.perf_counter()
        got = 0
        for start in range(0, len(stream), 4096):  # reads of 4 KiB, like a serial reader
            got += len(decoder.feed(stream[start : start + 4096]))
        dec_s.append(time.perf_counter() - t)
        assert got == n and decoder.stats.bad_frames == 0
    mean_bytes = len(stream) / n
    print(f"\n{n} EVENTs, mean {mean_bytes:.1f} wire bytes each, median of {repeats} runs\n")
    print("| step | frames/s | MB/s (wire) | µs/frame |")
    print("|---|---|---|---|")
    for step, times in (("encode", enc_s), ("StreamDecoder.feed", dec_s)):
        med = statistics.median(times)
        print(f"| {step} | {n / med:,.0f} | {len(stream) / med / 1e6:.2f} | {med / n * 1e6:.1f} |")


def bench_fuzz(n: int, rates: list[float], seeds: int) -> None:
    print(f"\nfuzz: {n} EVENT frames per run, {seeds} seeds per rate\n")
    print(
        "| corrupted bytes | stream bytes | mutations | frames touched | frames lost | "
        "lost but untouched | bad frames accepted | peak buffer | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for rate in rates:
        tot = dict(bytes=0, mut=0, touched=0, lost=0, untouched=0, bad=0, peak=0)
        t = time.perf_counter()
        for seed in range(seeds):
            r = fuzz_run(n, rate, seed=1000 + seed)
            tot["bytes"] += r.stream_bytes
            tot["mut"] += r.mutations
            tot["touched"] += r.frames_touched
            tot["lost"] += r.frames_lost
            tot["untouched"] += r.lost_untouched
            tot["bad"] += r.bad_accepted
            tot["peak"] = max(tot["peak"], r.max_buffered_bytes)
        dt = time.perf_counter() - t
        print(
            f"| {rate:.1%} | {tot['bytes']:,} | {tot['mut']:,} | {tot['touched']:,} | "
            f"{tot['lost']:,} | {tot['untouched']} | **{tot['bad']}** | {tot['peak']} | {dt:.1f} |"
        )


def bench_random(n_bytes: int) -> None:
    rng = random.Random(5)
    decoder = StreamDecoder()
    t = time.perf_counter()
    accepted = 0
    peak = 0
    for _ in range(n_bytes // 65536):
        accepted += len(decoder.feed(rng.randbytes(65536)))
        peak = max(peak, decoder.buffered_bytes)
    dt = time.perf_counter() - t
    s = decoder.stats
    print(
        f"\nrandom bytes: {n_bytes:,} fed in 64 KiB reads ({dt:.1f} s): frames accepted "
        f"**{accepted}**, rejected: {s.framing_errors:,} framing, {s.crc_errors:,} CRC, "
        f"{s.message_errors:,} payload, {s.oversize:,} oversize; peak buffer {peak} bytes"
    )


def bench_c_pty(n: int) -> None:
    """The C example device sends ``n`` EVENTs as fast as it can over a pty; Python decodes."""
    from device.protocol import Command, Hello
    from tests.protocol.test_cross_c import Link, burst_event

    firmware = os.path.join(os.path.dirname(__file__), "..", "device", "firmware")
    with tempfile.TemporaryDirectory() as build:
        subprocess.run(["make", "-s", "-C", firmware, f"BUILD={build}", "pty_device"], check=True)
        proc = subprocess.Popen(
            [os.path.join(build, "pty_device")], stdout=subprocess.PIPE, text=True
        )
        try:
            link = Link(proc.stdout.readline().strip())
            link.send(Hello("bench", "0", 1, (), 1_000_000))
            link.expect(lambda m: isinstance(m, Hello))
            t = time.perf_counter()
            link.send(Command("burst", {"count": str(n), "t0_us": "0"}))
            got = link.expect(
                lambda m: isinstance(m, Event) and m.fields.get("turn") == n - 1, 120.0
            )
            dt = time.perf_counter() - t
            events = [m for m, _ in got if isinstance(m, Event)]
            intact = events == [burst_event(i, 10 * i) for i in range(n)]
            s = link.decoder.stats
            print(
                f"\nC device -> pty -> StreamDecoder: {n:,} EVENTs in {dt:.2f} s = "
                f"{n / dt:,.0f} events/s, {len(link.raw) / dt / 1e6:.2f} MB/s; received "
                f"{len(events):,}, all equal to what was sent: {intact}; bad frames "
                f"{s.bad_frames}, seq numbers missing {s.seq_missing}"
            )
            link.port.close()
        finally:
            proc.terminate()
            proc.wait(timeout=5)


def bench_c_size() -> None:
    firmware = os.path.join(os.path.dirname(__file__), "..", "device", "firmware")
    with tempfile.TemporaryDirectory() as build:
        out = subprocess.run(
            ["make", "-s", "-C", firmware, f"BUILD={build}", "size"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    print(f"\nC library, gcc -Os x86-64 ({platform.machine()}):\n\n```\n{out.strip()}\n```")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--fuzz-frames", type=int, default=20_000)
    ap.add_argument("--fuzz-seeds", type=int, default=5)
    ap.add_argument("--random-mb", type=int, default=64)
    ap.add_argument("--pty-events", type=int, default=200_000)
    args = ap.parse_args()
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    bench_speed(args.frames, args.repeats)
    bench_fuzz(args.fuzz_frames, [0.001, 0.01, 0.05], args.fuzz_seeds)
    bench_random(args.random_mb * 2**20)
    bench_c_pty(args.pty_events)
    bench_c_size()


if __name__ == "__main__":
    main()
