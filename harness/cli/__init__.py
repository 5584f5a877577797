"""The `tympan` command: one subcommand a module.

    analyze    measure the turns of a recorded capture (harness.analysis, conversation)
    corpus     list and validate the utterance corpus
    calibrate, devices   a rig's own delay, noise and drift; the audio devices (rigs)
    device     talk to a device over its serial link (device.bridge)
    run        the conformance suite through pytest, the latency table, the report
    report     re-render a run's report from what it saved
    selftest   known turns with hidden random delays: does the rig measure TTFA right?

Every subcommand returns an exit status: 0 when it did its job, 2 for bad input (a one-line
message naming the file, port, device or key; no traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harness import __version__
from harness.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tympan",
        description="Hardware-in-the-loop test harness for streaming voice agents.",
    )
    parser.add_argument("--version", action="version", version=f"tympan {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")

    from harness.cli import analyze, corpus, device, report, rigs, run, selftest

    analyze.add_parser(subparsers)
    corpus.add_parser(subparsers)
    rigs.add_parsers(subparsers)
    device.add_parsers(subparsers)
    run.add_parser(subparsers)
    report.add_parser(subparsers)
    selftest.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except InputError as err:
        print(f"tympan: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tympan: interrupted", file=sys.stderr)
        return 130
