"""``python -m device.agent``: run the reference agent on a file (file mode).

    python -m device.agent --input Q.wav --output REPLY.wav --events EVENTS.jsonl \\
        [--fault NAME] [--config FILE]

Exit status 0 on success, 2 on bad input (one line on stderr naming the file or key), 1 if
the agent itself failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import NoReturn

from device.agent.config import FAULTS, AgentConfig, check_fault, load_config
from device.agent.errors import AgentError, ConfigError

PROG = "python -m device.agent"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Run tympan's reference voice agent on a WAV file, in real time.",
        epilog="faults: " + "; ".join(f"{k} ({v})" for k, v in FAULTS.items()),
    )
    parser.add_argument("--input", required=True, type=Path, help="the user's audio (WAV)")
    parser.add_argument(
        "--output", required=True, type=Path, help="what the agent said (WAV, input's rate)"
    )
    parser.add_argument("--events", type=Path, help="telemetry events (JSON lines)")
    parser.add_argument("--fault", help="reproduce one classic pipeline mistake")
    parser.add_argument("--config", type=Path, help="agent config (TOML or JSON)")
    add_earcon_flag(parser)
    return parser


def add_earcon_flag(parser: argparse.ArgumentParser) -> None:
    """``--earcon``: the wake chime (`PipelineConfig.earcon`), on top of any --config."""
    parser.add_argument(
        "--earcon",
        action="store_true",
        help="play a short chime when the user starts speaking (as after a wake word)",
    )


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    """The agent config named by `--config` (else the defaults) with `--fault` (and
    `--earcon`, where the parser has it) applied.

    Raises ConfigError naming the file, key or fault that is wrong.
    """
    check_fault(args.fault, "--fault")
    config = load_config(args.config) if args.config else AgentConfig()
    if getattr(args, "earcon", False):
        config = dataclasses.replace(
            config, pipeline=dataclasses.replace(config.pipeline, earcon=True)
        )
    return config.with_fault(args.fault) if args.fault else config


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        for flag, path in (("--output", args.output), ("--events", args.events)):
            if path is not None and not path.parent.is_dir():
                raise ConfigError(f"{flag} {path}: folder {path.parent} does not exist")
        from device.agent.filemode import run_file

        result = run_file(args.input, args.output, args.events, config)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except AgentError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    summaries = [e for e in result.events if e.event == "turn_summary"]
    for s in summaries:
        print(
            f"turn {s.get('turn')}: end of speech → first playback "
            f"{s.get('end_of_speech_to_playback_ms')} ms (agent's own clock)"
        )
    print(f"wrote {args.output}" + (f" and {args.events}" if args.events else ""))
    return 0
