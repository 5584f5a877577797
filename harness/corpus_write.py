"""Writing a corpus manifest: the labels computed from the files, and stable JSON.

The derived fields of an entry (duration, hash, speech labels) are never typed by hand:
`entry_labels` computes them from the file, `relabel_manifest` does so for every entry of a
manifest (and says what changed), `write_manifest` writes the result as diff-friendly JSON.
`manifest_entry` is a fresh entry's hand-written fields (``scripts/build_corpus.py``).
``scripts/label_corpus.py`` is the command around them; `harness.corpus` reads what they write.
"""

from __future__ import annotations

__all__ = ["entry_labels", "manifest_entry", "relabel_manifest", "write_manifest"]

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import soundfile as sf

from harness.corpus import (
    _DERIVED_FIELDS,
    _REQUIRED_FIELDS,
    LABEL_TOLERANCE_S,
    MANIFEST_PATH,
    SCHEMA_VERSION,
    SPEECH_CATEGORIES,
    _display,
    _is_number,
    _read_manifest,
    _sha256_file,
)
from harness.errors import CorpusError
from harness.labeller import label_speech, labeller_settings


def entry_labels(wav_path: Path, category: str) -> dict[str, Any]:
    """The derived fields of one entry, computed from its file.

    Returns a dict with ``duration_s``, ``sha256``, ``speech_start_s``, ``speech_end_s`` and
    ``pauses_s`` (seconds rounded to the microsecond; labels None/empty for noise beds).

    Raises:
        CorpusError: the file cannot be read or is not mono.
    """
    try:
        data, rate = sf.read(str(wav_path), dtype="float64", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as exc:
        raise CorpusError(f"{_display(wav_path)}: cannot read audio: {exc}") from None
    if data.shape[1] != 1:
        raise CorpusError(f"{_display(wav_path)}: {data.shape[1]} channels, expected mono")
    derived: dict[str, Any] = {
        "duration_s": round(data.shape[0] / rate, 6),
        "sha256": _sha256_file(wav_path),
        "speech_start_s": None,
        "speech_end_s": None,
        "pauses_s": [],
    }
    if category in SPEECH_CATEGORIES:
        try:
            lab = label_speech(data[:, 0], rate)
        except ValueError as exc:
            raise CorpusError(f"{_display(wav_path)}: cannot label: {exc}") from None
        derived["speech_start_s"] = round(lab.start_s, 6)
        derived["speech_end_s"] = round(lab.end_s, 6)
        derived["pauses_s"] = [[round(a, 6), round(b, 6)] for a, b in lab.pauses_s]
    return derived


def relabel_manifest(manifest_path: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """Recompute every entry's derived fields from its file.

    Returns ``(new_manifest, differences)``: the manifest document with fresh labels (field
    order normalised, ready for `write_manifest`) and one human-readable line per stored value
    that differs from the recomputed one (labels by more than `LABEL_TOLERANCE_S`, hashes,
    durations, the labeller settings). Entries may lack the derived fields (a fresh manifest);
    those show up as differences.

    Raises:
        CorpusError: the manifest cannot be read, or a listed file cannot be read.
    """
    path = Path(manifest_path) if manifest_path is not None else MANIFEST_PATH
    doc = _read_manifest(path)
    base = path.resolve().parent
    differences: list[str] = []
    settings = labeller_settings()
    if doc.get("labelled_with") != settings:
        differences.append(
            f"{_display(path)}: labelled_with {doc.get('labelled_with')!r}, the labeller now "
            f"uses {settings!r}"
        )
    entries: list[dict[str, Any]] = []
    for index, raw in enumerate(doc["utterances"]):
        if not isinstance(raw, dict) or not isinstance(raw.get("file"), str):
            raise CorpusError(f"{_display(path)}: entry {index} has no 'file'")
        wav = base / raw["file"]
        derived = entry_labels(wav, str(raw.get("category")))
        differences.extend(f"{_display(wav)}: {d}" for d in _compare_derived(raw, derived))
        entry = {k: raw.get(k) for k in _REQUIRED_FIELDS if k not in _DERIVED_FIELDS}
        entry.update(derived)
        entry.update({k: v for k, v in raw.items() if k not in _REQUIRED_FIELDS})
        entries.append({k: entry[k] for k in _field_order(entry)})
    new_doc = {
        "schema_version": SCHEMA_VERSION,
        "labelled_with": settings,
        "utterances": entries,
    }
    return new_doc, differences


def _field_order(entry: Mapping[str, Any]) -> list[str]:
    """Manifest field order: the schema's, then anything unknown (kept so validate reports it)."""
    return [k for k in _REQUIRED_FIELDS if k in entry] + [
        k for k in entry if k not in _REQUIRED_FIELDS
    ]


def _compare_derived(stored: Mapping[str, Any], fresh: Mapping[str, Any]) -> list[str]:
    """Differences between stored and recomputed derived fields, one line each."""
    out: list[str] = []
    for key in ("speech_start_s", "speech_end_s", "duration_s"):
        old, new = stored.get(key), fresh[key]
        if key not in stored:
            out.append(f"{key} missing, computed {new}")
        elif (old is None) != (new is None) or (
            new is not None and (not _is_number(old) or abs(float(old) - new) > LABEL_TOLERANCE_S)
        ):
            out.append(f"{key} is {old}, computed {new}")
    if stored.get("sha256") != fresh["sha256"]:
        out.append(f"sha256 is {stored.get('sha256')}, computed {fresh['sha256']}")
    old_pauses = stored.get("pauses_s")
    new_pauses = fresh["pauses_s"]
    if not isinstance(old_pauses, list) or len(old_pauses) != len(new_pauses):
        out.append(f"pauses_s is {old_pauses}, computed {new_pauses}")
    else:
        for old_p, new_p in zip(old_pauses, new_pauses, strict=True):
            if not (
                isinstance(old_p, list)
                and len(old_p) == 2
                and all(_is_number(t) for t in old_p)
                and max(abs(float(a) - b) for a, b in zip(old_p, new_p, strict=True))
                <= LABEL_TOLERANCE_S
            ):
                out.append(f"pause {old_p}, computed {new_p}")
    return out


def write_manifest(doc: Mapping[str, Any], manifest_path: Path) -> None:
    """Write a manifest document as stable, diff-friendly JSON (one entry field per line)."""
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    manifest_path.write_text(_compact_pairs(text) + "\n", encoding="utf-8")


def _compact_pairs(text: str) -> str:
    """Put each ``[a, b]`` number pair and each keyword list of `json.dumps` on one line."""
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("[") and not line.rstrip().endswith("[["):
            # Collect a flat list (no nested brackets/braces) and join it onto one line.
            j = i + 1
            items: list[str] = []
            while j < len(lines) and lines[j].strip() not in ("]", "],"):
                stripped = lines[j].strip()
                if stripped.endswith(("[", "{")):
                    break
                items.append(stripped.rstrip(","))
                j += 1
            if j < len(lines) and lines[j].strip() in ("]", "],"):
                closing = lines[j].strip()[1:]
                out.append(line.rstrip() + ", ".join(items) + "]" + closing)
                i = j + 1
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


def manifest_entry(
    *,
    utterance_id: str,
    file: str,
    sample_rate_hz: int,
    category: str,
    voice: str | None,
    transcript: str | None,
    reply_keywords: Sequence[str],
) -> dict[str, Any]:
    """A manifest entry with only the hand-written fields; `relabel_manifest` adds the rest."""
    return {
        "id": utterance_id,
        "file": file,
        "sample_rate_hz": sample_rate_hz,
        "category": category,
        "voice": voice,
        "transcript": transcript,
        "reply_keywords": list(reply_keywords),
    }
