"""`tympan analyze`: measure the turns of a recorded capture.

One --stimulus: one turn, one JSON object. Several (in the order played) or a --conversation
manifest: every turn, one JSON object per line. None: the ref channel is the caller.
Definitions in docs/measurement.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.audiofile import read_audio
from harness.errors import InputError

if TYPE_CHECKING:
    from harness.conversation import ConversationTurn, FileCapture, TurnSpec


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """The ``analyze`` subcommand."""
    p = subparsers.add_parser(
        "analyze",
        help="measure TTFA (and barge-in stop latency) in a recorded capture",
        description=(
            "Measure the turns in CAPTURE (a WAV with a ref and an ear channel): time from the "
            "end of the user's speech at the mouth to the first sound of the reply at the ear. "
            "One --stimulus: one turn, one JSON object. Several (in the order played) or a "
            "--conversation manifest: every turn, one JSON object per line. None: the ref "
            "channel is the caller, each of its utterances a turn."
        ),
    )
    p.add_argument("capture", help="the capture WAV (ref and ear channels, one sample clock)")
    p.add_argument(
        "--stimulus",
        action="append",
        metavar="STIM.wav",
        help="an utterance that was played (WAV); repeat it for each turn, in order",
    )
    p.add_argument(
        "--conversation",
        metavar="MANIFEST.json",
        help='the turns as JSON: {"turns": [{"stimulus": FILE, "speech_end_s": S, '
        '"barge_in": FILE, "reply_reference": FILE, "name": TEXT}, ...]}, files relative to it',
    )
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
    p.add_argument(
        "--dry-path",
        action="store_true",
        help="the ear channel is the agent's output alone (a loopback, a line recording): "
        "sound before the speech end is then the agent talking over the user (a negative "
        "TTFA), and a barge-in's stop is where the sound ends",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_analyze)


LOSSY_FORMATS = frozenset({"MP3", "OGG", "VORBIS", "OPUS", "MPEG_LAYER_III"})
"""libsndfile's names (container or subtype) of the lossy formats it reads."""


def _analyze(args: argparse.Namespace) -> int:
    """`tympan analyze`: read the capture and the stimuli (or the manifest), measure every
    turn, print the table or JSON; exit 0, or 2 naming the bad input (each input's error is
    named where it is read: `_open_capture`, `_turns`, `_check_lengths`)."""
    from harness.analysis import AnalysisOptions
    from harness.conversation import analyze_conversation

    capture = _open_capture(args)
    _READ.clear()  # files are read afresh on every call of the command
    notes = _lossy_notes(capture.format)
    stimuli = list(args.stimulus or [])
    if args.conversation and stimuli:
        raise InputError(
            f"{args.conversation}: give the turns either as --stimulus files or as a "
            "--conversation manifest, not both"
        )
    if len(stimuli) != 1 and (args.speech_end is not None or args.reply_reference):
        what = "--speech-end" if args.speech_end is not None else "--reply-reference"
        raise InputError(
            f"{what} needs exactly one --stimulus (got {len(stimuli)}); for several turns "
            "give each its own in a --conversation manifest"
        )
    turns = _turns(args, capture, stimuli, notes)
    _check_lengths(args.capture, capture, turns)
    progress = _progress if sys.stderr.isatty() and len(turns) > 3 else None
    try:
        results = analyze_conversation(
            capture,
            turns,
            ref_channel=args.ref_channel,
            ear_channel=args.ear_channel,
            options=AnalysisOptions(dry_path=args.dry_path),
            progress=progress,
        )
    except InputError as err:
        raise InputError(f"{args.capture}: {err}") from err
    _print_results(args, results, notes, single=len(results) == 1 and len(stimuli) == 1)
    return 0


def _open_capture(args: argparse.Namespace) -> FileCapture:
    """The capture file, its ref and ear channels checked (InputError naming the file)."""
    from harness.conversation import FileCapture

    capture = FileCapture(args.capture)
    n_ch = capture.channels
    for name, ch in (("ref", args.ref_channel), ("ear", args.ear_channel)):
        if not 0 <= ch < n_ch:
            raise InputError(
                f"{args.capture}: has {n_ch} channel(s), so there is no {name} channel {ch}; "
                "a capture needs a ref and an ear channel (--ref-channel, --ear-channel)"
            )
    capture.validate(args.ref_channel, args.ear_channel)
    return capture


def _lossy_notes(fmt: str) -> list[str]:
    """The note for a capture in a lossy format (libsndfile's "CONTAINER/SUBTYPE"), if it is."""
    notes: list[str] = []
    container, _, codec = fmt.partition("/")
    if container in LOSSY_FORMATS or codec in LOSSY_FORMATS:
        # A lossy codec shifts and smears onsets (its frame and priming delay, pre-echo):
        # MP3 and Ogg captures were measured ~5 ms off with nothing to say so.
        notes.append(
            f"the capture is lossy ({fmt}): onsets move by milliseconds through "
            "its codec; record WAV or FLAC for a measurement to trust to the millisecond"
        )
    return notes


def _turns(
    args: argparse.Namespace, capture: FileCapture, stimuli: list[str], notes: list[str]
) -> list[TurnSpec]:
    """The turns to measure: the manifest's, one per --stimulus, or (neither) the caller's
    utterances in the ref channel; notes about them are appended to `notes`."""
    from harness.conversation import caller_turns

    barge = None
    if args.barge_in:
        barge = read_audio(args.barge_in, role="barge-in clip")
    if args.conversation:
        turns = _manifest_turns(Path(args.conversation), barge)
    elif stimuli:
        turns = [
            _stimulus_turn(path, args.speech_end if len(stimuli) == 1 else None, barge, notes)
            for path in stimuli
        ]
        if args.reply_reference:
            rr = read_audio(args.reply_reference, role="reply reference")
            turns[0] = dataclasses.replace(turns[0], reply_reference=rr)
    else:
        try:
            turns = caller_turns(capture, ref_channel=args.ref_channel)
        except InputError as err:
            raise InputError(f"{args.capture}: {err}") from err
        if not turns:
            raise InputError(
                f"{args.capture}: no --stimulus given and no caller speech found in ref channel "
                f"{args.ref_channel} (expected utterances of 150 ms or more above its noise)"
            )
        notes.append(
            f"no --stimulus: the ref channel is the caller; {len(turns)} utterance(s) found, "
            "each one a turn whose speech end is where its sound ends"
        )
        if barge is not None:
            turns = [dataclasses.replace(t, barge_in=barge) for t in turns]
    return turns


def _check_lengths(path: str, capture: FileCapture, turns: list[TurnSpec]) -> None:
    """InputError when a stimulus is longer than the capture (file `path`)."""
    capture_s = capture.frames / capture.sample_rate_hz
    for t in turns:
        stimulus_s = len(t.stimulus) / t.stimulus_rate_hz
        if stimulus_s > capture_s:
            # (It would be "not found in the ref channel", which sends one looking elsewhere.)
            raise InputError(
                f"{path}: {capture_s:.2f} s long, shorter than the stimulus "
                f"{t.name or 'of the turn'} ({stimulus_s:.2f} s): it cannot hold the question "
                "and its reply (a cut or truncated recording?)"
            )


def _print_results(
    args: argparse.Namespace, results: list[ConversationTurn], notes: list[str], *, single: bool
) -> None:
    """The notes on stderr, then each turn's summary (or JSON, --json) on stdout; a `single`
    turn (one --stimulus) without its turn header and as one bare metrics object."""
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for r in results:
        for note in r.metrics.notes:
            print(f"note: {'' if single else f'turn {r.index}: '}{note}", file=sys.stderr)
    if args.json:
        for r in results:
            barge_keys = r.metrics.barge_in_onset_s is not None or args.barge_in is not None
            obj = r.metrics.to_json(barge_in=barge_keys) if single else r.to_json()
            print(json.dumps(obj))
    else:
        for r in results:
            if not single:
                print(f"turn {r.index} ({r.name})")
            print(_summary(r.metrics))


def _progress(done: int, total: int) -> None:
    end = "\n" if done == total else ""
    print(f"\ranalyzed {done}/{total} turns", end=end, file=sys.stderr, flush=True)


def _stimulus_turn(
    path: str | Path,
    speech_end: float | None,
    barge: tuple | None,
    notes: list[str],
    *,
    what: str = "--speech-end",
) -> TurnSpec:
    """A turn for a stimulus file: its speech end from the option (named `what` in an
    error), else the corpus label."""
    from harness.conversation import TurnSpec

    stim, stim_rate = _read_cached(Path(path), "stimulus")
    stim_dur = stim.shape[0] / stim_rate
    if speech_end is not None:
        if not 0 <= speech_end <= stim_dur:
            raise InputError(
                f"{path}: {what} {speech_end:g} s is outside the file (it lasts {stim_dur:.3f} s)"
            )
    else:
        utt = _corpus_label(Path(path))
        if utt is not None:
            speech_end = utt.speech_end_s
            notes.append(f"speech end {speech_end:.4f} s from the corpus label of {utt.id}")
    return TurnSpec(stim, stim_rate, speech_end, name=Path(path).name, barge_in=barge)


_READ: dict[tuple[Path, str], tuple] = {}


def _read_cached(path: Path, role: str) -> tuple:
    """`read_audio`, once per file: a call's manifest names the same few files many times."""
    key = (path.resolve(), role)
    if key not in _READ:
        _READ[key] = read_audio(path, role=role)
    return _READ[key]


MANIFEST_KEYS = {"stimulus", "speech_end_s", "barge_in", "reply_reference", "name"}


def _manifest_turns(path: Path, barge: tuple | None) -> list[TurnSpec]:
    """The turns of a conversation manifest (JSON: {"turns": [{"stimulus": FILE, ...}]});
    files are relative to the manifest's folder."""
    if not path.is_file():
        raise InputError(f"{path}: no such file (the conversation manifest)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not a readable JSON conversation manifest: {err}") from err
    items = doc.get("turns") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise InputError(
            f'{path}: expected {{"turns": [{{"stimulus": "FILE.wav", ...}}, ...]}} with at '
            f"least one turn, got {type(items).__name__ if items is not None else 'no turns'}"
        )
    turns = []
    for i, item in enumerate(items, start=1):
        where = f"{path}: turns[{i}]"
        if not isinstance(item, dict) or "stimulus" not in item:
            raise InputError(f'{where}: expected an object with a "stimulus" file, got {item!r}')
        unknown = set(item) - MANIFEST_KEYS
        if unknown:
            raise InputError(
                f"{where}: unknown key(s) {sorted(unknown)}; expected {sorted(MANIFEST_KEYS)}"
            )
        se = item.get("speech_end_s")
        if se is not None and (
            isinstance(se, bool) or not isinstance(se, int | float) or not math.isfinite(se)
        ):
            raise InputError(f"{where}: speech_end_s must be a number of seconds, got {se!r}")
        for key in ("stimulus", "barge_in", "reply_reference", "name"):
            value = item.get(key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InputError(f"{where}: {key} must be a file name (text), got {value!r}")
        notes: list[str] = []
        turn = _stimulus_turn(
            path.parent / item["stimulus"], se, barge, notes, what=f"{where}: speech_end_s"
        )
        if item.get("barge_in"):
            clip = _read_cached(path.parent / item["barge_in"], "barge-in clip")
            turn = dataclasses.replace(turn, barge_in=clip)
        if item.get("reply_reference"):
            rr = read_audio(path.parent / item["reply_reference"], role="reply reference")
            turn = dataclasses.replace(turn, reply_reference=rr)
        if item.get("name"):
            turn = dataclasses.replace(turn, name=str(item["name"]))
        turns.append(turn)
    return turns


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
