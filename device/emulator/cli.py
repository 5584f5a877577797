"""``python -m device.emulator``: a virtual tympan device on a pseudo-terminal.

    python -m device.emulator --pty [--link PATH] [--rig none|loopback] [--jack-client NAME]
        [--jack-server SERVER] [--fault NAME] [--clock-drift-ppm PPM] [--link-noise RATE]
        [--drop-rate RATE] [--reboot-after S] [--unplug-after S --unplug-for S] [--seed N]
        [--events-rate HZ] [--truth] [--duration S]

Standard output: line 1 is the device path to open (the ``--link`` symlink if given, else
the pty slave), flushed at once; line 2 is ``ready: ...`` once the device (and the agent)
listens. On SIGINT/SIGTERM (or after ``--duration``) it prints one line
``summary: {json}`` on standard error (what it sent, dropped, corrupted) and exits 0.
Exit status 2: bad arguments or an agent that cannot start (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

PROG = "python -m device.emulator"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: {message} (see --help)\n")


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number in 0..1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number in 0..1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "Run a virtual tympan device: the serial protocol on a pseudo-terminal, and "
            "optionally the reference agent on a JACK loopback rig."
        ),
    )
    parser.add_argument("--pty", action="store_true", required=True, help="serve on a pty")
    parser.add_argument(
        "--link", type=Path, help="keep a symlink to the pty here (survives unplug)"
    )
    parser.add_argument("--rig", choices=("none", "loopback"), default="none")
    parser.add_argument("--jack-client", metavar="NAME", help="agent's JACK client name")
    parser.add_argument("--jack-server", metavar="SERVER", help="JACK server name")
    parser.add_argument("--connect-input", action="append", default=[], metavar="PORT")
    parser.add_argument("--connect-output", action="append", default=[], metavar="PORT")
    parser.add_argument("--config", type=Path, help="agent config (TOML or JSON)")
    parser.add_argument("--fault", help="the agent's fault knob")
    parser.add_argument("--clock-drift-ppm", type=float, default=0.0, metavar="PPM")
    parser.add_argument(
        "--link-noise",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="fraction of sent bytes corrupted",
    )
    parser.add_argument(
        "--drop-rate",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="fraction of sent frames dropped",
    )
    parser.add_argument("--reboot-after", type=_seconds, metavar="S")
    parser.add_argument("--unplug-after", type=_seconds, metavar="S")
    parser.add_argument("--unplug-for", type=_seconds, default=0.5, metavar="S")
    parser.add_argument(
        "--events-rate",
        type=float,
        default=0.0,
        metavar="HZ",
        help="emit synthetic llm_token events at this rate from the start",
    )
    parser.add_argument("--seed", type=int, help="seed of the link impairments")
    parser.add_argument(
        "--truth",
        action="store_true",
        help="add the agent's host timestamp t_true_us to its events",
    )
    parser.add_argument("--duration", type=_seconds, metavar="S", help="exit after S seconds")
    return parser


def _agent_factory(args: argparse.Namespace) -> Any:
    from device.agent.cli import config_from_args

    config = config_from_args(args)  # raises ConfigError naming the file/fault

    def start(sink: Any, fault: str | None, engines: Any) -> Any:
        from device.agent.adapters.jack_client import JackAgent

        cfg = config.with_fault(fault)
        return JackAgent(
            cfg,
            client_name=args.jack_client,
            server_name=args.jack_server,
            engines=engines,
            sink=sink,
            connect_input=args.connect_input,
            connect_output=args.connect_output,
        ).start()

    return start


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from device.agent.errors import AgentError, ConfigError
    from device.emulator.runner import MAX_STREAM_RATE_HZ, Emulator

    factory = None
    try:
        if args.rig == "loopback":
            if not args.jack_client:
                raise ConfigError("--rig loopback needs --jack-client NAME")
            factory = _agent_factory(args)
        elif args.fault:
            from device.agent.config import check_fault

            check_fault(args.fault, "--fault")
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if not 0 <= args.events_rate <= MAX_STREAM_RATE_HZ:
        print(f"{PROG}: --events-rate {args.events_rate:g}: expected 0..{MAX_STREAM_RATE_HZ} Hz",
              file=sys.stderr)  # fmt: skip
        return 2
    if not -100_000 <= args.clock_drift_ppm <= 100_000:
        print(f"{PROG}: --clock-drift-ppm {args.clock_drift_ppm:g}: expected -100000..100000",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.link is not None and not args.link.parent.is_dir():
        print(
            f"{PROG}: --link {args.link}: folder {args.link.parent} does not exist", file=sys.stderr
        )
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    emulator = Emulator(
        link_path=args.link,
        drift_ppm=args.clock_drift_ppm,
        link_noise=args.link_noise,
        drop_rate=args.drop_rate,
        seed=args.seed,
        agent_factory=factory,
        fault=args.fault,
        truth=args.truth,
    ).start()
    print(emulator.path, flush=True)
    try:
        agent = emulator.start_agent()
    except (AgentError, ConfigError) as exc:
        emulator.stop()
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    status = 0
    try:
        if agent is None:
            what = "protocol only (no agent)"
        else:
            what = f"agent {agent.input_port} {agent.output_port}"
        print(f"ready: {emulator.path} ({emulator.link.slave_name}) {what}", flush=True)
        if args.events_rate > 0:
            emulator.emit_synthetic(args.events_rate)
        if args.reboot_after is not None:
            emulator.after(args.reboot_after, emulator.reboot, "reboot-after")
        if args.unplug_after is not None:
            emulator.after(args.unplug_after, emulator.link.unplug, args.unplug_for)
        stop.wait(args.duration)
    except AgentError as exc:
        print(f"{PROG}: agent failed: {exc}", file=sys.stderr)
        status = 1
    finally:
        try:
            emulator.stop()
        except AgentError as exc:
            print(f"{PROG}: agent failed: {exc}", file=sys.stderr)
            status = 1
        print(
            "summary: " + json.dumps(emulator.summary(), separators=(",", ":")),
            file=sys.stderr,
            flush=True,
        )
    return status
