"""`tympan device sync|events|send`: talk to a device over its serial link (device.bridge).

    tympan device sync   --port URL [--pings N] [--seconds S] [--json]
    tympan device events --port URL [--count N] [--seconds S] [--json]
    tympan device send   --port URL CMD [KEY=VALUE ...] [--timeout S] [--retries N] [--json]

URL is a device path (/dev/ttyACM0, a pty) or a pyserial URL (rfc2217://HOST:PORT?ign_set_control,
socket://HOST:PORT, loop://). Exit status: 0 done; 1 the device misbehaved (no answer, a
NACK: the reason is printed); 2 bad input (a port that cannot be opened, a malformed
argument: one line naming it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.errors import InputError


def _bridge(args: argparse.Namespace, **kw: Any) -> Any:
    from device.bridge import DeviceBridge

    log_dir = args.log_dir if args.log_dir is not None else ""
    return DeviceBridge(args.port, log_dir=log_dir, sync_interval_s=None, **kw)


def _run(args: argparse.Namespace, body: Any) -> int:
    """Run ``body()`` mapping bridge errors to exit statuses."""
    from device.bridge import BridgeError, CommandRejected, PortError

    try:
        return int(body())
    except PortError as err:
        raise InputError(str(err)) from err
    except CommandRejected as err:
        if getattr(args, "json", False):
            print(
                json.dumps({"ok": False, "nack": err.code_name, "code": err.code, "text": err.text})
            )
        print(f"tympan: {err}", file=sys.stderr)
        return 1
    except BridgeError as err:
        print(f"tympan: error: {err}", file=sys.stderr)
        return 1


def _hello_json(hello: Any) -> dict[str, Any]:
    if hello is None:
        return {}
    return {
        "firmware": hello.firmware,
        "firmware_version": hello.firmware_version,
        "protocol_version": hello.protocol_version,
        "capabilities": list(hello.capabilities),
        "clock_hz": hello.clock_hz,
    }


def _sync(args: argparse.Namespace) -> int:
    if not 2 <= args.pings <= 10_000:
        raise InputError(f"--pings {args.pings}: expected 2..10000")
    if not 0 <= args.seconds <= 600:
        raise InputError(f"--seconds {args.seconds:g}: expected 0..600")

    def body() -> int:
        with _bridge(args, sync_on_open=False) as bridge:
            fit = bridge.sync(args.pings, spacing_s=args.seconds / max(args.pings - 1, 1))
            doc = {
                "port": args.port,
                **_hello_json(bridge.hello),
                "offset_us": round(fit.offset_us, 2),
                "drift_ppm": round(fit.drift_ppm, 3),
                "uncertainty_us": round(fit.uncertainty_us, 2),
                "drift_uncertainty_ppm": round(fit.drift_uncertainty_ppm, 3),
                "rtt_us_p50": fit.rtt_us_p50,
                "rtt_us_min": fit.rtt_us_min,
                "rtt_us_max": fit.rtt_us_max,
                "pings": args.pings,
                "pongs": fit.samples,
                "used": fit.used,
                "span_us": fit.span_us,
                "drift_fitted": fit.drift_fitted,
                "consistent": fit.consistent,
                "t_ref_device_us": round(fit.t_ref_device_us),
                "t_ref_host_us": round(fit.t_ref_host_us),
                "log": str(bridge.log_path) if bridge.log_path else None,
            }
        if args.json:
            print(json.dumps(doc))
        else:
            print(
                f"{args.port}: {doc.get('firmware', '?')} {doc.get('firmware_version', '')}\n"
                f"  offset {doc['offset_us']:.1f} us ± {doc['uncertainty_us']:.1f} us, drift "
                f"{doc['drift_ppm']:.2f} ppm ± {doc['drift_uncertainty_ppm']:.1f}\n"
                f"  round trip p50 {doc['rtt_us_p50']:.0f} us (min {doc['rtt_us_min']}), "
                f"{doc['pongs']}/{doc['pings']} pongs over {doc['span_us'] / 1e6:.2f} s"
            )
        return 0

    return _run(args, body)


def _events(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise InputError(f"--count {args.count}: expected >= 1")
    if args.seconds is not None and args.seconds <= 0:
        raise InputError(f"--seconds {args.seconds:g}: expected > 0")

    def body() -> int:
        with _bridge(args, sync_pings=args.pings) as bridge:
            n = 0
            try:
                for event in bridge.events(timeout_s=args.seconds, count=args.count):
                    n += 1
                    if args.json:
                        print(json.dumps(event.to_json()), flush=True)
                    else:
                        fields = " ".join(f"{k}={v!r}" for k, v in event.fields.items())
                        print(f"{event.t_host_us} {event.name} {fields}", flush=True)
            except KeyboardInterrupt:
                pass
            stats = bridge.stats
            print(
                f"tympan: {n} event(s); {stats.bad_frames} bad frame(s), {stats.frames_missing} "
                f"missing, {stats.reconnects} reconnect(s), {stats.reboots} reboot(s); "
                f"traffic log {bridge.log_path}",
                file=sys.stderr,
            )
        return 0

    return _run(args, body)


def _send(args: argparse.Namespace) -> int:
    cmd_args: dict[str, str] = {}
    for item in args.args:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"argument {item!r}: expected KEY=VALUE (e.g. level=0.5)")
        cmd_args[key] = value

    def body() -> int:
        with _bridge(args, sync_on_open=False) as bridge:
            ack = bridge.send_command(
                args.command_name, cmd_args, timeout_s=args.timeout, retries=args.retries
            )
        if args.json:
            print(json.dumps({"ok": True, "ack_seq": ack.ack_seq}))
        else:
            print(f"ACK {args.command_name} (seq {ack.ack_seq})")
        return 0

    return _run(args, body)


def add_parsers(subparsers: Any) -> None:
    """Register ``tympan device`` and its subcommands."""
    device = subparsers.add_parser(
        "device",
        help="talk to a device over its serial link: clock sync, events, commands",
        description="Talk to a device (or the emulator) over its serial link.",
    )
    sub = device.add_subparsers(dest="device_command", metavar="SUBCOMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--port",
            required=True,
            metavar="URL",
            help="device path or pyserial URL (rfc2217://HOST:PORT?ign_set_control, socket://)",
        )
        p.add_argument("--log-dir", type=Path, help="raw traffic log folder (default: tmp)")
        p.add_argument("--json", action="store_true", help="JSON output")

    p = sub.add_parser("sync", help="PING/PONG clock sync: offset, drift, uncertainty")
    common(p)
    p.add_argument("--pings", type=int, default=64, help="exchanges (default 64)")
    p.add_argument("--seconds", type=float, default=1.0, help="spread over this long (1.0)")
    p.set_defaults(func=_sync)

    p = sub.add_parser("events", help="stream decoded events (host time, name, fields)")
    common(p)
    p.add_argument("--count", type=int, help="stop after N events")
    p.add_argument("--seconds", type=float, help="stop after S seconds")
    p.add_argument("--pings", type=int, default=32, help="clock sync exchanges first (32)")
    p.set_defaults(func=_events)

    p = sub.add_parser("send", help="send one command, wait for its ACK")
    common(p)
    p.add_argument("command_name", metavar="CMD", help="reset, configure, set_volume, ...")
    p.add_argument("args", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--timeout", type=float, default=1.0, help="per attempt, s (1.0)")
    p.add_argument("--retries", type=int, default=2, help="resends after a timeout (2)")
    p.set_defaults(func=_send)
