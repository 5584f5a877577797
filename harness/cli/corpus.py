"""``tympan corpus list|validate``: look at and check the utterance corpus.

`add_parser` registers the ``corpus`` command on the main CLI's subparsers. Each subcommand's
``func`` takes the parsed `argparse.Namespace` and returns the exit status: 0 when all is well,
2 for a problem with the input (an unreadable manifest, a corpus that fails validation).
``python -m harness.cli.corpus …`` runs the same commands without the main CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness import corpus as hc
from harness import corpus_check
from harness.errors import CorpusError

_TRANSCRIPT_WIDTH = 48


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``corpus list`` and ``corpus validate`` under ``subparsers``."""
    parser = subparsers.add_parser(
        "corpus",
        help="list or validate the utterance corpus",
        description="List or validate the utterance corpus (audio_corpus/manifest.json).",
    )
    parser.set_defaults(func=lambda _args: _no_subcommand(parser))
    sub = parser.add_subparsers(dest="corpus_command", metavar="{list,validate}")

    list_parser = sub.add_parser(
        "list",
        help="a table of the corpus entries",
        description="Print the corpus entries: id, category, voice, rate, duration, speech end.",
    )
    _add_manifest_option(list_parser)
    list_parser.add_argument(
        "--category", choices=hc.CATEGORIES, help="only entries of this category"
    )
    list_parser.add_argument("--json", action="store_true", help="print a JSON array instead")
    list_parser.set_defaults(func=run_list)

    validate_parser = sub.add_parser(
        "validate",
        help="check the manifest and every file it lists",
        description=(
            "Check the manifest and every file: presence, sample rate, 16-bit PCM, clipping, "
            "silence, labels inside the file, duplicate ids, known categories, content hash. "
            "Prints 'ok: N entries' (exit 0) or one problem per line on stderr (exit 2)."
        ),
    )
    _add_manifest_option(validate_parser)
    validate_parser.set_defaults(func=run_validate)


def _add_manifest_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifest",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"manifest to read (default: {hc.MANIFEST_PATH})",
    )


def _no_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    print("tympan corpus: choose a subcommand: list or validate", file=sys.stderr)
    return 2


def run_list(args: argparse.Namespace) -> int:
    """``tympan corpus list``: print the entries as a table (or JSON with ``--json``)."""
    try:
        corpus = hc.Corpus.load(args.manifest)
    except CorpusError as exc:
        print(f"tympan corpus list: {exc}", file=sys.stderr)
        return 2
    entries = corpus.by_category(args.category) if args.category else corpus.utterances
    if args.json:
        print(json.dumps([_as_json(u) for u in entries], indent=2))
        return 0
    rows = [
        (
            u.id,
            u.category,
            u.voice or "-",
            f"{u.sample_rate_hz // 1000}k"
            if u.sample_rate_hz % 1000 == 0
            else str(u.sample_rate_hz),
            f"{u.duration_s:.2f}",
            "-" if u.speech_end_s is None else f"{u.speech_end_s:.3f}",
            _truncate(u.transcript or "-", _TRANSCRIPT_WIDTH),
        )
        for u in entries
    ]
    header = ("id", "category", "voice", "rate", "dur_s", "end_s", "transcript")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {3, 4, 5}  # numbers line up on the right

    def fmt(row: tuple[str, ...]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    print(fmt(header))
    for row in rows:
        print(fmt(row))
    total = sum(u.duration_s for u in entries)
    print(f"{len(rows)} entries, {total:.1f} s of audio")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    """``tympan corpus validate``: "ok: N entries" and 0, or each problem on stderr and 2."""
    manifest = args.manifest if args.manifest is not None else hc.MANIFEST_PATH
    problems = corpus_check.validate(manifest)
    if problems:
        for problem in problems:
            print(str(problem), file=sys.stderr)
        print(f"tympan corpus validate: {len(problems)} problem(s)", file=sys.stderr)
        return 2
    corpus = hc.Corpus.load(manifest)
    print(f"ok: {len(corpus)} entries")
    return 0


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _as_json(u: hc.Utterance) -> dict[str, object]:
    """An entry as plain JSON (path absolute, tuples as lists)."""
    return {
        "id": u.id,
        "path": str(u.path),
        "sample_rate_hz": u.sample_rate_hz,
        "duration_s": u.duration_s,
        "category": u.category,
        "voice": u.voice,
        "transcript": u.transcript,
        "speech_start_s": u.speech_start_s,
        "speech_end_s": u.speech_end_s,
        "pauses_s": [list(p) for p in u.pauses_s],
        "reply_keywords": list(u.reply_keywords),
        "sha256": u.sha256,
    }


def main(argv: list[str] | None = None) -> int:
    """Run ``corpus …`` on its own (``python -m harness.cli.corpus list``)."""
    parser = argparse.ArgumentParser(prog="tympan")
    subparsers = parser.add_subparsers(dest="command")
    add_parser(subparsers)
    args = parser.parse_args(["corpus", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
