"""The utterance corpus: the manifest read into `Utterance`s, their speech labels, look-ups.

The corpus lives in ``audio_corpus/``: mono 16-bit PCM WAV files plus ``manifest.json``, which
lists every file with its transcript, category, voice and labels. The labels (where speech starts
and ends, where the mid-sentence pauses are) are never typed by hand: `label_speech` computes them
from the samples and ``scripts/label_corpus.py`` writes them into the manifest (``--check``
verifies that the committed labels still match the code). ``audio_corpus/README.md`` documents
the schema.

Two rooms next door use this one's parsing: `harness.corpus_check` (``validate``: the manifest
and every file it lists, audio opened) and `harness.corpus_write` (labels computed from the
files, ``relabel_manifest``, ``write_manifest``, ``manifest_entry``).

Times are seconds from the first sample of the file; sample rates are Hz; audio arrays are
float mono, shape ``(n_samples,)``, full scale 1.0.
"""

from __future__ import annotations

__all__ = [
    "CATEGORIES",
    "Corpus",
    "CorpusProblem",
    "SpeechLabel",
    "Utterance",
    "label_speech",
    "labeller_settings",
]

import difflib
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from harness.errors import CorpusError
from harness.labeller import SpeechLabel, label_speech, labeller_settings

CORPUS_DIR: Path = Path(__file__).resolve().parent.parent / "audio_corpus"
"""The repository's corpus folder (holds ``manifest.json`` and the WAV files)."""

MANIFEST_PATH: Path = CORPUS_DIR / "manifest.json"
"""The committed manifest; the default of every function that takes a manifest path."""

SCHEMA_VERSION = 1

CATEGORIES: tuple[str, ...] = ("short_question", "long_question", "pause", "barge_in", "noise")
"""Every known category. All but ``noise`` hold speech and carry speech labels."""

SPEECH_CATEGORIES: frozenset[str] = frozenset(CATEGORIES) - {"noise"}

LABEL_TOLERANCE_S = 0.001
"""A stored label may differ from the recomputed one by at most this much, s."""

_REQUIRED_FIELDS: tuple[str, ...] = (
    "id",
    "file",
    "sample_rate_hz",
    "duration_s",
    "sha256",
    "category",
    "voice",
    "transcript",
    "speech_start_s",
    "speech_end_s",
    "pauses_s",
    "reply_keywords",
)
_DERIVED_FIELDS: tuple[str, ...] = (
    "duration_s",
    "sha256",
    "speech_start_s",
    "speech_end_s",
    "pauses_s",
)


# --------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Utterance:
    """One corpus entry: a speech utterance, a barge-in clip or a noise bed.

    Attributes:
        id: unique identifier, e.g. ``"sq01_time"``.
        path: absolute path of the WAV file.
        sample_rate_hz: the file's sampling rate, Hz.
        transcript: what is said; None for noise beds.
        speech_start_s: labelled start of speech, seconds from the file's start; None for noise.
        speech_end_s: labelled end of speech (just after the last speech sample), seconds;
            None for noise.
        category: one of `CATEGORIES`.
        voice: ``"engine/voice"``, e.g. ``"piper/en_US-joe-medium"``; None for noise beds.
        reply_keywords: lower-case words a correct agent's reply contains (match
            case-insensitively); may be empty (e.g. a "stop" clip expects silence).
        pauses_s: labelled pauses inside the speech, ``((start_s, end_s), ...)``.
        duration_s: length of the file, seconds.
        sha256: hex SHA-256 of the file's bytes, as labelled.
    """

    id: str
    path: Path
    sample_rate_hz: int
    transcript: str | None
    speech_start_s: float | None
    speech_end_s: float | None
    category: str
    voice: str | None
    reply_keywords: tuple[str, ...] = ()
    pauses_s: tuple[tuple[float, float], ...] = ()
    duration_s: float = 0.0
    sha256: str = ""

    @property
    def is_speech(self) -> bool:
        """True for speech entries (with labels), False for noise beds."""
        return self.category in SPEECH_CATEGORIES

    def load(self) -> np.ndarray:
        """Read the file as float32 mono samples in [-1, 1], shape ``(n,)``.

        Raises:
            CorpusError: the file is missing, unreadable, not mono, or its sample rate is not
                the manifest's.
        """
        try:
            data, rate = sf.read(str(self.path), dtype="float32", always_2d=True)
        except (OSError, RuntimeError, sf.LibsndfileError) as exc:
            raise CorpusError(
                f"{_display(self.path)}: cannot read audio for '{self.id}': {exc}"
            ) from None
        if data.shape[1] != 1:
            raise CorpusError(
                f"{_display(self.path)}: {data.shape[1]} channels, the corpus holds mono files"
            )
        if rate != self.sample_rate_hz:
            raise CorpusError(
                f"{_display(self.path)}: sample rate {rate} Hz, "
                f"manifest says {self.sample_rate_hz} Hz"
            )
        return np.ascontiguousarray(data[:, 0])


@dataclass(frozen=True)
class CorpusProblem:
    """One thing wrong with a manifest or one of its files.

    ``file`` is the offending file (or the manifest) as a path relative to the working
    directory when possible; ``problem`` says what was seen and what was expected.
    """

    file: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}"


@dataclass(frozen=True)
class Corpus:
    """The entries of one manifest, loaded without opening the audio files.

    Build it with `Corpus.load`. Entries keep the manifest's order.
    """

    manifest_path: Path
    utterances: tuple[Utterance, ...]
    _by_id: Mapping[str, Utterance] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # frozen: set the derived index through object.__setattr__
        object.__setattr__(self, "_by_id", {u.id: u for u in self.utterances})

    @classmethod
    def load(cls, manifest_path: Path | None = None) -> Corpus:
        """Read a manifest (default: the committed ``audio_corpus/manifest.json``).

        Checks the manifest's structure (fields, types, ids, categories) but not the audio;
        use `harness.corpus_check.validate` for the full check.

        Raises:
            CorpusError: the manifest is missing, not JSON, or malformed; the message names
                the manifest and the first problems.
        """
        path = Path(manifest_path) if manifest_path is not None else MANIFEST_PATH
        doc = _read_manifest(path)
        utterances, problems = _parse_entries(doc, path)
        if problems:
            shown = "\n  ".join(str(p) for p in problems[:10])
            more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
            raise CorpusError(f"{_display(path)}: malformed manifest:\n  {shown}{more}")
        return cls(manifest_path=path.resolve(), utterances=tuple(utterances))

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    @property
    def ids(self) -> tuple[str, ...]:
        """Every id, in manifest order."""
        return tuple(u.id for u in self.utterances)

    def by_id(self, utterance_id: str) -> Utterance:
        """The entry with this id.

        Raises:
            CorpusError: no such id; the message lists the closest ids.
        """
        try:
            return self._by_id[utterance_id]
        except KeyError:
            close = difflib.get_close_matches(utterance_id, self.ids, n=5, cutoff=0.5)
            hint = (
                f"close ids: {', '.join(close)}"
                if close
                else f"{len(self.ids)} ids, e.g. {', '.join(self.ids[:5])}"
            )
            raise CorpusError(
                f"no utterance '{utterance_id}' in {_display(self.manifest_path)} ({hint})"
            ) from None

    def by_category(self, category: str) -> tuple[Utterance, ...]:
        """Entries of one category, in manifest order (may be empty).

        Raises:
            CorpusError: ``category`` is not one of `CATEGORIES`.
        """
        if category not in CATEGORIES:
            raise CorpusError(
                f"unknown corpus category '{category}' (known: {', '.join(CATEGORIES)})"
            )
        return tuple(u for u in self.utterances if u.category == category)

    def find_by_path(self, path: Path | str) -> Utterance | None:
        """The entry a file is, or None.

        Matches, in order: the same resolved path; a file of the same name whose content hash
        equals the entry's (a corpus file copied elsewhere); any entry with that content hash
        (copied and renamed). The file is hashed only when the path itself does not match.
        """
        candidate = Path(path)
        resolved = candidate.resolve()
        for u in self.utterances:
            if u.path == resolved:
                return u
        if not resolved.is_file():
            return None
        digest = _sha256_file(resolved)
        same_content = [u for u in self.utterances if u.sha256 == digest]
        for u in same_content:
            if u.path.name == resolved.name:
                return u
        return same_content[0] if same_content else None


# --------------------------------------------------------------------------------------------
# Manifest parsing
# --------------------------------------------------------------------------------------------


def _display(path: Path | str) -> str:
    """A path for messages: relative to the working directory when it is inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_manifest(path: Path) -> dict[str, Any]:
    """Parse the manifest's JSON; raise CorpusError naming the manifest and the error position."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CorpusError(f"{_display(path)}: manifest not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{_display(path)}: cannot read manifest: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorpusError(
            f"{_display(path)}: not valid JSON at line {exc.lineno} column {exc.colno} "
            f"(char {exc.pos}): {exc.msg}"
        ) from None
    if not isinstance(doc, dict):
        raise CorpusError(
            f"{_display(path)}: the manifest must be a JSON object with an 'utterances' list, "
            f"got {type(doc).__name__}"
        )
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise CorpusError(
            f"{_display(path)}: schema_version {doc.get('schema_version')!r}, "
            f"this tympan reads {SCHEMA_VERSION}"
        )
    if not isinstance(doc.get("utterances"), list):
        raise CorpusError(f"{_display(path)}: missing the 'utterances' list")
    return doc


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _parse_entries(
    doc: Mapping[str, Any], manifest: Path
) -> tuple[list[Utterance], list[CorpusProblem]]:
    """Turn the manifest's entries into Utterances; collect schema problems instead of raising.

    Entries with problems are left out of the returned list. Checks structure only (fields,
    types, categories, unique ids, label order); the audio is not opened. Problems come in
    the order a person reads the file: entry by entry, field by field.
    """
    base = manifest.resolve().parent
    where = _display(manifest)
    utterances: list[Utterance] = []
    problems: list[CorpusProblem] = []
    first_use: dict[str, tuple[int, object]] = {}
    for index, raw in enumerate(doc["utterances"]):
        utterance = _parse_entry(index, raw, base, where, first_use, problems)
        if utterance is not None:
            utterances.append(utterance)
    return utterances, problems


def _parse_entry(
    index: int,
    raw: object,
    base: Path,
    where: str,
    first_use: dict[str, tuple[int, object]],
    problems: list[CorpusProblem],
) -> Utterance | None:
    """Entry `index` as an Utterance (its file relative to `base`), or None with its problems
    appended to `problems`. `first_use` maps each id seen so far to (entry, file)."""
    label = f"entry {index}"
    if not isinstance(raw, dict):
        problems.append(CorpusProblem(where, f"{label} is {type(raw).__name__}, not an object"))
        return None
    file_value = raw.get("file")
    if isinstance(file_value, str) and file_value:
        path = (base / file_value).resolve()
        who = _display(path)
    else:
        path = None
        who = where
    label = f"entry {index} (id {raw.get('id')!r})"

    def bad(message: str) -> None:
        problems.append(CorpusProblem(who, f"{label}: {message}"))

    if not _fields_known(raw, bad):
        return None
    ok = _id_unique(raw["id"], index, file_value, first_use, bad)
    if path is None:
        bad(f"file must be a non-empty path relative to the manifest, got {file_value!r}")
        ok = False
    ok = _values_valid(raw, bad) and ok
    pauses = _pauses(raw["pauses_s"], bad)
    ok = pauses is not None and ok
    ok = _speech_fields_valid(raw, pauses or [], bad) and ok
    if not ok or path is None:
        return None
    start, end = raw["speech_start_s"], raw["speech_end_s"]
    return Utterance(
        id=raw["id"],
        path=path,
        sample_rate_hz=raw["sample_rate_hz"],
        transcript=raw["transcript"],
        speech_start_s=None if start is None else float(start),
        speech_end_s=None if end is None else float(end),
        category=raw["category"],
        voice=raw["voice"],
        reply_keywords=tuple(raw["reply_keywords"]),
        pauses_s=tuple(pauses or []),
        duration_s=float(raw["duration_s"]),
        sha256=raw["sha256"].lower(),
    )


def _fields_known(raw: Mapping[str, Any], bad: Callable[[str], None]) -> bool:
    """Whether the entry has every field and no other (else each kind told to `bad`)."""
    missing = [k for k in _REQUIRED_FIELDS if k not in raw]
    unknown = sorted(set(raw) - set(_REQUIRED_FIELDS))
    if missing:
        derived = [k for k in missing if k in _DERIVED_FIELDS]
        hint = " (run scripts/label_corpus.py to compute them)" if derived else ""
        bad(f"missing field(s) {', '.join(missing)}{hint}")
    if unknown:
        bad(f"unknown field(s) {', '.join(unknown)} (known: {', '.join(_REQUIRED_FIELDS)})")
    return not (missing or unknown)


def _id_unique(
    uid: object,
    index: int,
    file_value: object,
    first_use: dict[str, tuple[int, object]],
    bad: Callable[[str], None],
) -> bool:
    """Whether `uid` is a non-empty string no earlier entry has (then recorded in `first_use`)."""
    if not isinstance(uid, str) or not uid.strip():
        bad(f"id must be a non-empty string, got {uid!r}")
        return False
    if uid in first_use:
        other, other_file = first_use[uid]
        bad(f"duplicate id '{uid}' (also entry {other}, file {other_file!r})")
        return False
    first_use[uid] = (index, file_value)
    return True


def _values_valid(raw: Mapping[str, Any], bad: Callable[[str], None]) -> bool:
    """Whether sample_rate_hz, duration_s, sha256, category and reply_keywords are of their
    types and ranges (each that is not told to `bad`)."""
    ok = True
    rate = raw["sample_rate_hz"]
    if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
        bad(f"sample_rate_hz must be a positive integer, got {rate!r}")
        ok = False
    duration = raw["duration_s"]
    if not _is_number(duration) or duration <= 0:
        bad(f"duration_s must be a positive number, got {duration!r}")
        ok = False
    digest = raw["sha256"]
    if not isinstance(digest, str) or len(digest) != 64:
        bad(f"sha256 must be 64 hex digits, got {digest!r}")
        ok = False
    category = raw["category"]
    if category not in CATEGORIES:
        bad(f"unknown category {category!r} (known: {', '.join(CATEGORIES)})")
        ok = False
    keywords = raw["reply_keywords"]
    if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
        bad(f"reply_keywords must be a list of strings, got {keywords!r}")
        ok = False
    return ok


def _pauses(pauses_raw: object, bad: Callable[[str], None]) -> list[tuple[float, float]] | None:
    """pauses_s as (start_s, end_s) pairs, or None (told to `bad`) when it is not a list of
    pairs of numbers."""
    if not isinstance(pauses_raw, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(_is_number(t) for t in p) for p in pauses_raw
    ):
        bad(f"pauses_s must be a list of [start_s, end_s] pairs, got {pauses_raw!r}")
        return None
    return [(float(a), float(b)) for a, b in pauses_raw]


def _speech_fields_valid(
    raw: Mapping[str, Any], pauses: list[tuple[float, float]], bad: Callable[[str], None]
) -> bool:
    """Whether a speech entry has its transcript, voice and labels, and a noise bed none."""
    ok = True
    category = raw["category"]
    start, end = raw["speech_start_s"], raw["speech_end_s"]
    transcript, voice = raw["transcript"], raw["voice"]
    if category in SPEECH_CATEGORIES:
        if not isinstance(transcript, str) or not transcript.strip():
            bad(f"a {category} entry needs a transcript, got {transcript!r}")
            ok = False
        if not isinstance(voice, str) or not voice.strip():
            bad(f"a {category} entry needs a voice, got {voice!r}")
            ok = False
        if not (_is_number(start) and _is_number(end)):
            bad(f"speech_start_s/speech_end_s must be numbers, got {start!r}/{end!r}")
            ok = False
    elif category == "noise" and (
        start is not None or end is not None or transcript is not None or pauses
    ):
        bad(
            "a noise bed has no speech: transcript, speech_start_s and speech_end_s "
            "must be null and pauses_s empty"
        )
        ok = False
    return ok
