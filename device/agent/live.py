"""``python -m device.agent.live``: run the reference agent on a live audio device.

    python -m device.agent.live --jack CLIENT [--server NAME] [--connect-input PORT]...
        [--connect-output PORT]... [--config FILE] [--fault NAME] [--events FILE]
    python -m device.agent.live --device DEVICE [--rate HZ] [--jack-name NAME] ...

It prints one ``ready: ...`` line (the ports or the device) once it listens, then runs
until SIGINT/SIGTERM or ``--duration`` seconds. Exit status 0, 2 on bad arguments or a
device that cannot be opened (one line on stderr), 1 if the agent failed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from device.agent.cli import add_earcon_flag, config_from_args
from device.agent.config import AgentConfig
from device.agent.errors import AgentError, ConfigError
from device.agent.events import JsonlFileSink

PROG = "python -m device.agent.live"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Run tympan's reference voice agent live.")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--jack", metavar="CLIENT", help="be a JACK client of this name")
    where.add_argument("--device", help="a sounddevice device (index or name substring)")
    parser.add_argument("--server", help="JACK server name (default: the default server)")
    parser.add_argument("--connect-input", action="append", default=[], metavar="PORT")
    parser.add_argument("--connect-output", action="append", default=[], metavar="PORT")
    parser.add_argument("--rate", type=int, default=48000, help="sounddevice rate, Hz")
    parser.add_argument("--jack-name", help="sounddevice on PortAudio's JACK API: client name")
    parser.add_argument("--config", type=Path, help="agent config (TOML or JSON)")
    parser.add_argument("--fault", help="reproduce one classic pipeline mistake")
    parser.add_argument("--events", type=Path, help="telemetry events (JSON lines)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    add_earcon_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sink = None
    try:
        config = config_from_args(args)
        if config.asr.engine == "oracle" and not config.asr.oracle_transcripts:
            raise ConfigError("the oracle ASR needs asr.oracle_transcripts in the config")
        sink = JsonlFileSink(args.events) if args.events else None
        adapter = _adapter(args, config, sink)
        try:
            adapter.start()
        except AgentError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
        try:
            print(f"ready: {_describe(args, adapter)}", flush=True)
            stop.wait(args.duration)
        finally:
            adapter.close()
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except AgentError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    finally:
        if sink is not None:
            sink.close()
    return 0


def _adapter(args: argparse.Namespace, config: AgentConfig, sink: Any) -> Any:
    if args.jack:
        from device.agent.adapters.jack_client import JackAgent

        return JackAgent(
            config,
            client_name=args.jack,
            server_name=args.server,
            sink=sink,
            connect_input=args.connect_input,
            connect_output=args.connect_output,
        )
    from device.agent.adapters.sounddevice_stream import SoundDeviceAgent

    device: Any = int(args.device) if args.device.isdigit() else args.device
    return SoundDeviceAgent(
        config, device=device, samplerate_hz=args.rate, sink=sink, jack_client_name=args.jack_name
    )


def _describe(args: argparse.Namespace, adapter: Any) -> str:
    if args.jack:
        return f"{adapter.input_port} {adapter.output_port}"
    return f"device {args.device!r} at {args.rate} Hz"


if __name__ == "__main__":
    raise SystemExit(main())
