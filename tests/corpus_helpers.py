"""Small corpora for tests: synthetic WAVs and manifests with exactly one defect each."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from harness import corpus as hc

BURST_START_S = 0.30
BURST_END_S = 0.80


def burst(rate: int, *, seconds: float = 1.2, peak: float = 0.5, seed: int = 7) -> np.ndarray:
    """Silence with a Gaussian noise burst over [BURST_START_S, BURST_END_S); float64."""
    rng = np.random.default_rng(seed)
    x = np.zeros(round(seconds * rate))
    a, b = round(BURST_START_S * rate), round(BURST_END_S * rate)
    noise = rng.standard_normal(b - a)
    x[a:b] = noise / np.max(np.abs(noise)) * peak
    return x


def write_wav(path: Path, x: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, rate, subtype=subtype, format="WAV")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def entry(
    root: Path,
    uid: str,
    file: str,
    rate: int,
    *,
    category: str = "short_question",
    start: float | None = BURST_START_S,
    end: float | None = BURST_END_S,
    pauses: list[list[float]] | None = None,
) -> dict[str, Any]:
    """A manifest entry for ``root/file`` whose hash and duration match the file as it is."""
    path = root / file
    info = sf.info(str(path)) if path.exists() else None
    noise = category == "noise"
    return {
        "id": uid,
        "file": file,
        "sample_rate_hz": rate,
        "duration_s": round(info.frames / info.samplerate, 6) if info else 1.0,
        "sha256": sha256(path) if path.exists() else "0" * 64,
        "category": category,
        "voice": None if noise else "test/burst",
        "transcript": None if noise else "What time is it?",
        "speech_start_s": None if noise else start,
        "speech_end_s": None if noise else end,
        "pauses_s": pauses or [],
        "reply_keywords": [] if noise else ["time"],
    }


def write_manifest(root: Path, entries: list[dict[str, Any]]) -> Path:
    doc = {
        "schema_version": hc.SCHEMA_VERSION,
        "labelled_with": hc.labeller_settings(),
        "utterances": entries,
    }
    path = root / "manifest.json"
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


def good_corpus(root: Path) -> Path:
    """Two clean entries (48 kHz speech, 16 kHz speech); returns the manifest path."""
    write_wav(root / "a.wav", burst(48_000), 48_000)
    write_wav(root / "b.wav", burst(16_000, seed=8), 16_000)
    return write_manifest(
        root, [entry(root, "a", "a.wav", 48_000), entry(root, "b", "b.wav", 16_000)]
    )


def _missing_file(root: Path) -> tuple[Path, str, str]:
    path = good_corpus(root)
    doc = json.loads(path.read_text())
    gone = dict(doc["utterances"][0], id="gone", file="gone.wav")
    doc["utterances"].append(gone)
    path.write_text(json.dumps(doc))
    return path, "gone.wav", "file not found"


def _wrong_rate(root: Path) -> tuple[Path, str, str]:
    write_wav(root / "rate.wav", burst(44_100), 44_100)
    bad = entry(root, "rate", "rate.wav", 48_000)
    bad["duration_s"] = round(sf.info(str(root / "rate.wav")).frames / 44_100, 6)
    return write_manifest(root, [bad]), "rate.wav", "sample rate 44100 Hz, manifest says 48000 Hz"


def _clipping(root: Path) -> tuple[Path, str, str]:
    x = burst(48_000)
    x[20_000:20_005] = 1.0  # five samples at full scale
    write_wav(root / "clip.wav", x, 48_000)
    return write_manifest(root, [entry(root, "clip", "clip.wav", 48_000)]), "clip.wav", "clipped"


def _label_outside(root: Path) -> tuple[Path, str, str]:
    write_wav(root / "late.wav", burst(48_000), 48_000)
    bad = entry(root, "late", "late.wav", 48_000, end=1.7)
    return write_manifest(root, [bad]), "late.wav", "after the file's end"


def _silent(root: Path) -> tuple[Path, str, str]:
    write_wav(root / "quiet.wav", burst(48_000) * 10 ** (-70 / 20) / 0.5, 48_000)
    return write_manifest(root, [entry(root, "quiet", "quiet.wav", 48_000)]), "quiet.wav", "silent"


def _duplicate_id(root: Path) -> tuple[Path, str, str]:
    write_wav(root / "one.wav", burst(48_000), 48_000)
    write_wav(root / "two.wav", burst(48_000, seed=9), 48_000)
    entries = [entry(root, "same", "one.wav", 48_000), entry(root, "same", "two.wav", 48_000)]
    return write_manifest(root, entries), "two.wav", "duplicate id 'same'"


def _unknown_category(root: Path) -> tuple[Path, str, str]:
    write_wav(root / "cat.wav", burst(48_000), 48_000)
    bad = entry(root, "cat", "cat.wav", 48_000)
    bad["category"] = "smalltalk"
    return write_manifest(root, [bad]), "cat.wav", "unknown category 'smalltalk'"


DEFECTS: dict[str, Callable[[Path], tuple[Path, str, str]]] = {
    "missing_file": _missing_file,
    "wrong_rate": _wrong_rate,
    "clipping": _clipping,
    "label_outside_file": _label_outside,
    "silent": _silent,
    "duplicate_id": _duplicate_id,
    "unknown_category": _unknown_category,
}
"""name -> builder(root) returning (manifest path, file name expected in the message,
phrase expected in the message). Each manifest has exactly one defect."""
