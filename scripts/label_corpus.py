#!/usr/bin/env python3
"""Recompute the corpus labels from the audio and rewrite the manifest (or only check them).

    .venv/bin/python scripts/label_corpus.py            # rewrite audio_corpus/manifest.json
    .venv/bin/python scripts/label_corpus.py --check    # exit 1 if any stored label is stale
    .venv/bin/python scripts/label_corpus.py --manifest other/manifest.json

For every entry it computes duration_s, sha256 and, for speech, speech_start_s, speech_end_s and
pauses_s with harness.corpus.label_speech. ``--check`` reports every stored value that differs
from the recomputed one (labels by more than 1 ms) and exits 1; exit 2 means the manifest or a
file could not be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from harness import corpus as hc
from harness import corpus_write
from harness.errors import CorpusError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=hc.MANIFEST_PATH, help="manifest path")
    parser.add_argument(
        "--check", action="store_true", help="only compare; exit 1 if any label differs"
    )
    args = parser.parse_args(argv)
    try:
        doc, differences = corpus_write.relabel_manifest(args.manifest)
    except CorpusError as exc:
        print(f"label_corpus: {exc}", file=sys.stderr)
        return 2
    if args.check:
        for line in differences:
            print(line, file=sys.stderr)
        if differences:
            print(
                f"label_corpus: {len(differences)} stale value(s); run scripts/label_corpus.py",
                file=sys.stderr,
            )
            return 1
        print(f"ok: {len(doc['utterances'])} entries, labels match the audio")
        return 0
    corpus_write.write_manifest(doc, args.manifest)
    print(f"wrote {args.manifest} ({len(doc['utterances'])} entries, {len(differences)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
