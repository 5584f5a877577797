"""The `tympan` command.

Every subcommand returns an exit status: 0 when it did its job, 2 for bad input (a one-line
message naming the file, port, device or key; no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import __version__
from harness.errors import InputError


def _analyze(args: argparse.Namespace) -> int:
    from harness.analysis import analyze_capture
    from harness.audiofile import read_audio

    capture, rate = read_audio(args.capture, role="capture")
    n_ch = capture.shape[1]
    for name, ch in (("ref", args.ref_channel), ("ear", args.ear_channel)):
        if not 0 <= ch < n_ch:
            raise InputError(
                f"{args.capture}: has {n_ch} channel(s), so there is no {name} channel {ch}; "
                "a capture needs a ref and an ear channel (--ref-channel, --ear-channel)"
            )
    stim, stim_rate = read_audio(args.stimulus, role="stimulus")
    notes: list[str] = []
    speech_end = args.speech_end
    stim_dur = stim.shape[0] / stim_rate
    if speech_end is not None:
        if not 0 <= speech_end <= stim_dur:
            raise InputError(
                f"{args.stimulus}: --speech-end {speech_end:g} s is outside the file "
                f"(it lasts {stim_dur:.3f} s)"
            )
    else:
        utt = _corpus_label(Path(args.stimulus))
        if utt is not None:
            speech_end = utt.speech_end_s
            notes.append(f"speech end {speech_end:.4f} s from the corpus label of {utt.id}")
    reply = reply_rate = None
    if args.reply_reference:
        reply, reply_rate = read_audio(args.reply_reference, role="reply reference")
    barge = barge_rate = None
    if args.barge_in:
        barge, barge_rate = read_audio(args.barge_in, role="barge-in clip")
    try:
        metrics = analyze_capture(
            capture,
            rate,
            stim,
            stim_rate,
            speech_end_s=speech_end,
            ref_channel=args.ref_channel,
            ear_channel=args.ear_channel,
            reply_reference=reply,
            reply_reference_rate_hz=reply_rate,
            barge_in=barge,
            barge_in_rate_hz=barge_rate,
        )
    except InputError as err:
        raise InputError(f"{args.capture}: {err}") from err
    metrics.notes[:0] = notes
    for note in metrics.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(metrics.to_json(barge_in=args.barge_in is not None)))
    else:
        print(_summary(metrics))
    return 0


def _corpus_label(stimulus: Path):
    """The corpus utterance this stimulus file is (by path or content), if any."""
    try:
        from harness.corpus import Corpus

        return Corpus.load().find_by_path(stimulus)
    except (InputError, OSError):
        return None


def _summary(m) -> str:  # noqa: ANN001 - TurnMetrics
    if m.discard:
        head = f"discarded: {m.discard}"
    else:
        head = f"TTFA {m.ttfa_ms:.2f} ms (confidence {m.confidence:.2f}, {m.mode})"
    lines = [head]
    if m.speech_end_s is not None:
        lines.append(f"  user speech ends   {m.speech_end_s:9.4f} s")
    if m.reply_onset_s is not None:
        lines.append(f"  reply starts       {m.reply_onset_s:9.4f} s")
    if m.reply_end_s is not None:
        lines.append(f"  reply ends         {m.reply_end_s:9.4f} s")
    if m.segments:
        gaps = ", ".join(f"{g:.0f}" for g in m.gaps_ms) or "none"
        lines.append(f"  segments           {len(m.segments)} (gaps ms: {gaps})")
    if m.barge_in_onset_s is not None:
        lines.append(f"  barge-in at        {m.barge_in_onset_s:9.4f} s")
        if m.stop_latency_ms is not None:
            lines.append(f"  stop latency       {m.stop_latency_ms:9.1f} ms")
            lines.append(f"  residual audio     {m.residual_ms:9.1f} ms")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tympan",
        description="Hardware-in-the-loop test harness for streaming voice agents.",
    )
    parser.add_argument("--version", action="version", version=f"tympan {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = subparsers.add_parser(
        "analyze",
        help="measure TTFA (and barge-in stop latency) in a recorded capture",
        description=(
            "Measure one turn in CAPTURE (a WAV with a ref and an ear channel): time from the "
            "end of the user's speech at the mouth to the first sound of the reply at the ear."
        ),
    )
    p.add_argument("capture", help="the capture WAV (ref and ear channels, one sample clock)")
    p.add_argument("--stimulus", required=True, help="the utterance that was played (WAV)")
    p.add_argument(
        "--speech-end",
        type=float,
        metavar="SECONDS",
        help="end of speech in the stimulus, seconds (default: corpus label, else detected)",
    )
    p.add_argument("--ref-channel", type=int, default=0, metavar="N", help="default 0")
    p.add_argument("--ear-channel", type=int, default=1, metavar="M", help="default 1")
    p.add_argument(
        "--reply-reference",
        metavar="REPLY.wav",
        help="the DUT's own output audio: locate it by correlation (sample-exact)",
    )
    p.add_argument("--barge-in", metavar="CLIP.wav", help="the barge-in clip played mid-reply")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_analyze)

    # subcommands
    from harness import cli_corpus

    cli_corpus.add_parser(subparsers)
    from harness.rigs import cli as rigs_cli

    rigs_cli.add_parsers(subparsers)
    from harness import cli_device

    cli_device.add_parsers(subparsers)
    from harness import cli_run

    cli_run.add_parser(subparsers)
    from harness import cli_report

    cli_report.add_parser(subparsers)
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


if __name__ == "__main__":
    sys.exit(main())
