"""Checking a corpus manifest and every file it lists: `validate`.

`harness.corpus` reads a manifest and checks its structure (`Corpus.load`); this module also
opens the audio: format, rate, duration, content hash, clipping, silence, and the labels
against the file's real length. The problems are `harness.corpus.CorpusProblem`s.
"""

from __future__ import annotations

__all__ = ["validate"]

import math
from pathlib import Path

import numpy as np
import soundfile as sf

from harness.corpus import (
    LABEL_TOLERANCE_S,
    MANIFEST_PATH,
    CorpusProblem,
    Utterance,
    _display,
    _parse_entries,
    _read_manifest,
    _sha256_file,
)
from harness.errors import CorpusError
from harness.labeller import true_runs

# Validation thresholds.
CLIP_LEVEL = 0.999
"""|sample| at or above this (full scale 1.0) counts as a clipped sample."""
CLIP_RUN = 3
"""This many consecutive clipped samples make a file clipped (one full-scale peak is not)."""
SILENT_DBFS = -60.0
"""A file whose peak is below this level, dBFS, is treated as silent."""


def validate(manifest_path: Path | None = None) -> list[CorpusProblem]:
    """Check a manifest and every file it lists; return the problems (empty when all is well).

    Rejects: an unreadable or malformed manifest, missing or unknown fields, duplicate ids,
    unknown categories, a missing or unreadable file, a file that is not mono 16-bit PCM, a
    sample rate or duration other than the manifest's, content that changed since labelling
    (SHA-256), clipping (`CLIP_RUN` consecutive samples at or above `CLIP_LEVEL`), a silent
    file (peak below `SILENT_DBFS`), and labels outside the file or out of order
    (``0 <= start < end <= duration``; pauses inside the speech). A ``pause`` entry must have a
    labelled pause.
    """
    path = Path(manifest_path) if manifest_path is not None else MANIFEST_PATH
    try:
        doc = _read_manifest(path)
    except CorpusError as exc:
        return [CorpusProblem(_display(path), str(exc).split(": ", 1)[-1])]
    utterances, problems = _parse_entries(doc, path)
    for u in utterances:
        problems.extend(_check_file(u))
    return problems


def _check_file(u: Utterance) -> list[CorpusProblem]:
    """Audio-level checks of one parsed entry."""
    who = _display(u.path)
    problems: list[CorpusProblem] = []

    def bad(message: str) -> None:
        problems.append(CorpusProblem(who, message))

    if not u.path.is_file():
        bad(f"file not found (listed as '{u.id}' in the manifest)")
        return problems
    try:
        info = sf.info(str(u.path))
        data, rate = sf.read(str(u.path), dtype="float64", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as exc:
        bad(f"cannot read audio: {exc}")
        return problems
    if info.format != "WAV" or info.subtype != "PCM_16":
        bad(f"format {info.format}/{info.subtype}, the corpus holds WAV/PCM_16 files")
    if data.shape[1] != 1:
        bad(f"{data.shape[1]} channels, the corpus holds mono files")
    if rate != u.sample_rate_hz:
        bad(f"sample rate {rate} Hz, manifest says {u.sample_rate_hz} Hz")
    n = data.shape[0]
    duration = n / rate if rate else 0.0
    if abs(duration - u.duration_s) > LABEL_TOLERANCE_S:
        bad(f"duration {duration:.6f} s, manifest says {u.duration_s:.6f} s")
    digest = _sha256_file(u.path)
    if digest != u.sha256:
        bad(
            f"content changed since it was labelled (sha256 {digest[:12]}…, manifest says "
            f"{u.sha256[:12]}…): run scripts/label_corpus.py"
        )
    x = data[:, 0] if n else np.zeros(0)
    peak = float(np.max(np.abs(x))) if n else 0.0
    if peak <= 0.0 or 20.0 * math.log10(peak) < SILENT_DBFS:
        level = "all zeros" if peak <= 0.0 else f"peak {20.0 * math.log10(peak):.1f} dBFS"
        bad(f"silent file ({level}, expected a peak above {SILENT_DBFS:.0f} dBFS)")
    run = _longest_run(np.abs(x) >= CLIP_LEVEL) if n else 0
    if run >= CLIP_RUN:
        bad(
            f"clipped: {run} consecutive samples at or above {CLIP_LEVEL} full scale "
            f"(at most {CLIP_RUN - 1} allowed)"
        )
    if u.is_speech:
        problems.extend(_check_labels(u, duration if rate == u.sample_rate_hz else u.duration_s))
    return problems


def _check_labels(u: Utterance, duration: float) -> list[CorpusProblem]:
    """Label sanity of a speech entry against the file's real duration, seconds."""
    who = _display(u.path)
    start, end = u.speech_start_s, u.speech_end_s
    assert start is not None and end is not None  # guaranteed by _parse_entries
    problems: list[CorpusProblem] = []
    if start < 0:
        problems.append(CorpusProblem(who, f"speech_start_s {start} s is before the file's start"))
    if end > duration + 1e-9:
        problems.append(
            CorpusProblem(who, f"speech_end_s {end} s is after the file's end ({duration:.6f} s)")
        )
    if start >= end:
        problems.append(
            CorpusProblem(who, f"speech_start_s {start} s is not before speech_end_s {end} s")
        )
    previous = start
    for p_start, p_end in u.pauses_s:
        if not previous <= p_start < p_end <= end:
            problems.append(
                CorpusProblem(
                    who,
                    f"pause [{p_start}, {p_end}] s is out of order or outside the speech "
                    f"[{start}, {end}] s",
                )
            )
        previous = p_end
    if u.category == "pause" and not u.pauses_s:
        problems.append(CorpusProblem(who, "a 'pause' entry needs at least one labelled pause"))
    return problems


def _longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True in a 1-D boolean array."""
    runs = true_runs(mask)
    return max((b - a for a, b in runs), default=0)
