"""`tympan calibrate` and `tympan devices`.

Exit status: 0 done; 1 calibration refused (the reason is printed) or the rig failed while
running; 2 bad input (profile, device, server, port: raised as InputError, one line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from harness.errors import InputError
from harness.rigs.base import CalibrationRefused, RigError

DEFAULT_RIG = "sim"


def _calibrate(args: argparse.Namespace) -> int:
    from harness.rigs import open_rig
    from harness.rigs.calibrate import calibrate, check_level_dbfs, save_cached
    from harness.rigs.profile import load_profile

    profile = load_profile(args.rig)
    options: dict[str, Any] = {}
    if args.dut:
        scheme, _, name = args.dut.partition(":")
        if profile.kind != "loopback" or scheme != "jack" or not name:
            raise InputError(
                f"--dut {args.dut!r}: calibrate takes --dut jack:CLIENT on a loopback rig "
                f"(rig {profile.name!r} is {profile.kind!r}); a sim rig's DUT is its profile's "
                "[sim] dut"
            )
        options["dut"] = name
    if not 1 <= args.repeats <= 200:
        raise InputError(f"--repeats {args.repeats}: expected 1..200")
    check_level_dbfs(args.level_dbfs, "--level-dbfs")
    try:
        with open_rig(profile, use_cache=False, **options) as rig:
            cal = calibrate(rig, repeats=args.repeats, level_dbfs=args.level_dbfs)
    except CalibrationRefused as err:
        if args.json:
            print(json.dumps({"ok": False, "refused": str(err), "rig": profile.name}))
        print(f"tympan: calibration refused: {err}", file=sys.stderr)
        return 1
    except InputError:
        raise
    except RigError as err:
        print(f"tympan: error: {err}", file=sys.stderr)
        return 1
    try:
        saved = None if args.no_save else save_cached(profile, cal)
    except CalibrationRefused as err:
        if args.json:
            print(json.dumps({"ok": False, "refused": str(err), "rig": profile.name}))
        print(f"tympan: calibration refused: {err}", file=sys.stderr)
        return 1
    doc = cal.to_json()
    if args.json:
        print(json.dumps({"ok": True, **doc, "cache": str(saved) if saved else None}))
        return 0
    r = cal.ref
    expected = cal.expected_latency_samples
    lines = [
        f"rig {cal.rig} ({cal.profile}), {cal.sample_rate_hz} Hz, {cal.repeats} sweeps",
        f"  mouth -> ref  {r.latency_samples} samples = {r.latency_ms:.3f} ms"
        f"  (spread {r.latency_spread_samples}, expected "
        f"{'?' if expected is None else expected})",
        f"  SNR {r.snr_db:.1f} dB, noise floor {r.noise_floor_dbfs:.1f} dBFS, "
        f"peak {r.peak_dbfs:.1f} dBFS: {r.advice}",
        f"  drift {r.drift_ppm:.2f} ppm, confidence {r.confidence:.3f}, xruns {cal.xruns}",
    ]
    if cal.ear is not None:
        e = cal.ear
        lines.append(
            f"  mouth -> ear  {e.latency_samples} samples = {e.latency_ms:.3f} ms "
            f"(spread {e.latency_spread_samples}, SNR {e.snr_db:.1f} dB, drift "
            f"{e.drift_ppm:.2f} ppm, confidence {e.confidence:.3f}): {e.advice}"
        )
    else:
        lines.append(f"  {cal.ear_note}")
    if saved:
        lines.append(f"  saved to {saved}")
    print("\n".join(lines))
    return 0


def list_devices(jack_server: str = "") -> dict[str, Any]:
    """Audio devices by host API, serial ports and running JACK servers, as one dict."""
    out: dict[str, Any] = {"audio": None, "audio_note": "", "serial": None, "serial_note": ""}
    try:
        from harness.rigs.soundcard import describe, sounddevice_module, use_jack

        sd = sounddevice_module()
        if jack_server:
            use_jack(jack_server, "tympan-devices")
        apis = sd.query_hostapis()
        devices = sd.query_devices()
        out["audio"] = {
            api["name"]: [describe(i, devices[i], apis) for i in api["devices"]] for api in apis
        }
    except RigError as err:
        out["audio_note"] = str(err)
    try:
        from serial.tools import list_ports
    except ImportError:
        out["serial_note"] = "pyserial is not installed (pip install pyserial): ports not listed"
    else:
        out["serial"] = [
            f"{p.device}  {p.description}" + (f"  [{p.hwid}]" if p.hwid != "n/a" else "")
            for p in sorted(list_ports.comports(), key=lambda p: p.device)
        ]
    from harness.rigs.jackd import running_jackd

    out["jack_servers"] = [f"{name} (pid {pid})" for pid, name in running_jackd(prefix="")]
    return out


def _devices(args: argparse.Namespace) -> int:
    doc = list_devices(args.jack_server)
    if args.json:
        print(json.dumps(doc))
        return 0
    lines = ["audio devices (by host API):"]
    if doc["audio"] is None:
        lines.append(f"  unavailable: {doc['audio_note']}")
    else:
        for api, devs in doc["audio"].items():
            lines.append(f"  {api}:")
            lines.extend(f"    {d}" for d in devs or ["(none)"])
    lines.append("serial ports:")
    if doc["serial"] is None:
        lines.append(f"  {doc['serial_note']}")
    else:
        lines.extend(f"  {p}" for p in doc["serial"] or ["(none found)"])
    lines.append("JACK servers running:")
    lines.extend(f"  {s}" for s in doc["jack_servers"] or ["(none)"])
    print("\n".join(lines))
    return 0


def add_parsers(subparsers: Any) -> None:
    """Register `calibrate` and `devices` on the `tympan` parser."""
    p = subparsers.add_parser(
        "calibrate",
        help="measure a rig's own latency, noise, level and drift",
        description=(
            "Play repeated log sweeps at the mouth and measure mouth -> ref (and mouth -> ear "
            "where the ear hears the mouth): latency in samples and ms, its spread, SNR, "
            "level advice, drift and a confidence. Saved to the calibration cache."
        ),
    )
    p.add_argument(
        "--rig",
        default=os.environ.get("TYMPAN_RIG", DEFAULT_RIG),
        metavar="sim|loopback|PATH.toml",
        help=f"rig profile (default: $TYMPAN_RIG or {DEFAULT_RIG})",
    )
    p.add_argument("--dut", metavar="jack:CLIENT", help="loopback: wire this JACK client as DUT")
    p.add_argument("--repeats", type=int, default=8, metavar="N", help="sweeps (default 8)")
    p.add_argument(
        "--level-dbfs", type=float, default=-6.0, metavar="DB", help="sweep peak (default -6)"
    )
    p.add_argument("--no-save", action="store_true", help="do not write the calibration cache")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_calibrate)

    p = subparsers.add_parser(
        "devices",
        help="list audio devices (by host API), serial ports and JACK servers",
        description="List what a rig profile can name: audio devices and serial ports.",
    )
    p.add_argument(
        "--jack-server", default="", metavar="NAME", help="also list this JACK server's clients"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_devices)
