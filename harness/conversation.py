"""Every turn of a whole conversation in one capture, in bounded memory.

A phone call, a network rig's recording or a lab's five-turn conversation is one capture
holding many turns, often for an hour. `analyze_conversation` finds each turn's stimulus in
the ref channel in order (each after the previous turn's speech end, the earliest place it
clearly plays), then measures each turn with `harness.analysis.analyze_capture` on its own
window of the capture: from the previous turn's speech end (its reply is context there, not
noise) to the next stimulus' start (or `max_reply_s` after its own speech end). Only a
window is ever in memory, read from a `CaptureSource`: an array, or a file read by seeking.

Without stimulus files (`caller_turns`) the ref channel is the caller and the caller's own
speech is the stimulus: each stretch of it (pauses under `caller_pause_s` bridged) is a turn
whose speech end is where that activity ends, with a confidence from how far the caller's
speech stands above the ref's own noise.

Times in the results are seconds of the whole capture.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.signal as ss
import soundfile as sf

from harness.analysis import AnalysisOptions, TurnMetrics, analyze_capture
from harness.errors import InputError
from harness.reasons import Discard
from harness.signal.activity import (
    FRAME_S,
    HOP_S,
    estimate_floor,
    find_segments,
    refine_offset,
    speech_band,
    thresholds,
)
from harness.signal.align import StimulusAlignment, align_stimulus
from harness.signal.correlate import Match
from harness.signal.resample import first_sound, mono, resample

SEARCH_BLOCK_S = 60.0
"""The ref is searched for a stimulus this much at a time (the first clear match wins)..."""
FIRST_SEARCH_S = 15.0
"""... after a first look this far past the previous turn, where the next one usually is."""


class CaptureSource(Protocol):
    """Windowed access to a capture (samples, channels) on one sample clock."""

    sample_rate_hz: int
    frames: int
    channels: int

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) as float32 (n, channels); clipped to the capture."""
        ...


@dataclass
class ArrayCapture:
    """A capture already in memory."""

    samples: np.ndarray
    sample_rate_hz: int

    def __post_init__(self) -> None:
        self.samples = np.asarray(self.samples)
        if self.samples.ndim != 2:
            raise InputError(f"capture must be (samples, channels), got {self.samples.shape}")

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, start), min(self.frames, stop)
        return np.asarray(self.samples[start : max(start, stop)], dtype=np.float32)


class FileCapture:
    """A capture file read a window at a time (soundfile seeks: WAV, FLAC, ...).

    Opening it checks the whole file once, a block at a time: finite samples, some sound.
    """

    BLOCK_S = 20.0

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: no such file (the capture)")
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a folder, expected an audio file (the capture)")
        try:
            info = sf.info(str(self.path))
        except (sf.LibsndfileError, RuntimeError, TypeError) as err:
            raise InputError(
                f"{self.path}: not a readable audio file (the capture): {err}"
            ) from err
        self.sample_rate_hz = int(info.samplerate)
        self.frames = int(info.frames)
        self.channels = int(info.channels)
        self.format = f"{info.format}/{info.subtype}"
        if self.frames == 0:
            raise InputError(f"{self.path}: holds no samples (the capture)")

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, int(start)), min(self.frames, int(stop))
        if stop <= start:
            return np.zeros((0, self.channels), dtype=np.float32)
        with sf.SoundFile(str(self.path)) as f:
            f.seek(start)
            return f.read(stop - start, dtype="float32", always_2d=True)

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(start, samples) over the whole file, BLOCK_S at a time."""
        n = int(self.BLOCK_S * self.sample_rate_hz)
        with sf.SoundFile(str(self.path)) as f:
            start = 0
            while start < self.frames:
                x = f.read(n, dtype="float32", always_2d=True)
                if not len(x):
                    break
                yield start, x
                start += len(x)

    def validate(self, ref_channel: int = 0, ear_channel: int = 1) -> None:
        """InputError for NaN/inf samples, a file of digital silence, or a silent ref or ear
        channel (named, with where)."""
        any_sound = False
        sound = np.zeros(self.channels, dtype=bool)
        for start, x in self.blocks():
            bad = ~np.isfinite(x).all(axis=1)
            if bad.any():
                at = start + int(np.flatnonzero(bad)[0])
                raise InputError(
                    f"{self.path}: contains NaN or infinite samples (first at sample {at}, "
                    f"{at / self.sample_rate_hz:.3f} s); the capture must be finite audio"
                )
            sound |= np.any(x != 0, axis=0)
            any_sound = bool(sound.any())
        if not any_sound:
            raise InputError(
                f"{self.path}: is all zeros (digital silence); the capture must hold sound"
            )
        if 0 <= ref_channel < self.channels and not sound[ref_channel]:
            raise InputError(
                f"{self.path}: ref channel {ref_channel} is all zeros: nothing was played or "
                "looped back"
            )
        if 0 <= ear_channel < self.channels and not sound[ear_channel]:
            raise InputError(
                f"{self.path}: ear channel {ear_channel} is all zeros: the ear heard nothing at all"
            )


@dataclass(frozen=True)
class TurnSpec:
    """One turn of a conversation: what was played, and what the analysis may use.

    speech_end_s: seconds into `stimulus` (None: detected). speech_end_confidence: how sure
    that end is (1 for a label; from the SNR when found by activity). reply_reference /
    barge_in: (samples, rate) or None.
    """

    stimulus: np.ndarray
    stimulus_rate_hz: int
    speech_end_s: float | None
    name: str = ""
    reply_reference: tuple[np.ndarray, int] | None = None
    barge_in: tuple[np.ndarray, int] | None = None
    speech_end_confidence: float = 1.0
    at_sample: int | None = None
    """Where the stimulus starts in the capture when already known (caller turns)."""


@dataclass(frozen=True)
class ConversationTurn:
    """A turn's result: its index (1-based), name and metrics (capture-timeline seconds)."""

    index: int
    name: str
    metrics: TurnMetrics
    window_s: tuple[float, float]
    barge_in: bool = False
    """A barge-in clip was given for this turn (its keys are in the JSON, null if unmeasured)."""

    def to_json(self) -> dict:
        d = {"turn": self.index, "stimulus": self.name}
        with_clip = self.barge_in or self.metrics.barge_in_onset_s is not None
        d.update(self.metrics.to_json(barge_in=with_clip))
        d["window_s"] = [round(self.window_s[0], 6), round(self.window_s[1], 6)]
        return d


def _stim_at(stim: np.ndarray, rate: int, fs: int) -> np.ndarray:
    x = mono(stim)
    return resample(x, rate, fs) if rate != fs else x


def find_stimulus(
    source: CaptureSource,
    stim: np.ndarray,
    speech_end_s: float | None,
    ref_channel: int,
    start: int,
    *,
    block_s: float = SEARCH_BLOCK_S,
) -> int | Match:
    """Start sample of the first clear occurrence of `stim` (at the capture's rate) in the
    ref at or after `start`; else the best `Match` seen (for the refusal's figures).

    The ref is searched `block_s` at a time (blocks overlap by the stimulus' length), so a
    long capture is never read whole; the earliest block with a clear match wins, which is
    what a conversation needs (the next time the stimulus plays). A match is what
    `align_stimulus` accepts: the whole stimulus, or the part that holds its speech end.
    """
    fs = source.sample_rate_hz
    n = len(stim)
    first = first_sound(stim)
    se = (speech_end_s if speech_end_s is not None else n / fs) * fs
    step = max(int(FIRST_SEARCH_S * fs), 2 * n)
    best = Match(0.0, 0.0, 1.0)
    pos = max(0, start)
    while pos < source.frames:
        hi = min(source.frames, pos + step + n)
        ref = source.read(pos, hi)[:, ref_channel].astype(np.float64)
        if len(ref) < n // 2:
            break
        found = align_stimulus(ref, stim, fs, min(se, n - 1), first, search=(0, step))
        if isinstance(found, StimulusAlignment):
            return pos + int(round(found.onset_lag))
        if found.peak >= 0.8 and found.sidelobe >= 0.8 * found.peak:
            # It plays here, twice (or more) alike: which one is this turn's is not known,
            # and a later block holding only the second would hand over the wrong one.
            return found
        if found.confidence > best.confidence or best.peak == 0.0:
            best = found
        pos += step
        step = max(int(block_s * fs), 2 * n)
    return best


def analyze_conversation(
    source: CaptureSource,
    turns: list[TurnSpec],
    *,
    ref_channel: int = 0,
    ear_channel: int = 1,
    options: AnalysisOptions | None = None,
    max_lead_s: float = 30.0,
    max_reply_s: float = 60.0,
    progress: Callable[[int, int], None] | None = None,
) -> list[ConversationTurn]:
    """Measure every turn of `turns` (in the order they were played) in `source`.

    A turn whose stimulus is not found is a `low_confidence` discard (the search for the
    next one starts where it would have been looked for). `progress(i, n)` is called after
    each turn. Two passes: where each stimulus plays (`_find_starts`), then each turn on its
    own window of the capture (`_turn_window`, `_measure_window`), read one at a time so
    memory stays bounded.
    """
    fs = source.sample_rate_hz
    _check_channels(source, ref_channel, ear_channel)
    stims = _stimuli_at(turns, fs)
    starts, misses = _find_starts(source, turns, stims, ref_channel)
    out: list[ConversationTurn] = []
    prev_end = 0
    for i, (spec, stim, at) in enumerate(zip(turns, stims, starts, strict=True)):
        name = spec.name or f"turn {i + 1}"
        later = [s for s in starts[i + 1 :] if s is not None]
        clip = spec.barge_in
        if at is None:
            metrics = _not_found(fs, name, ref_channel, misses.get(i), i > 0)
            window_s = (prev_end / fs, prev_end / fs)
            out.append(ConversationTurn(i + 1, name, metrics, window_s, clip is not None))
            if progress:
                progress(i + 1, len(turns))
            continue
        next_unfound = i + 1 < len(starts) and starts[i + 1] is None
        lo, hi, speech_end = _turn_window(
            source,
            spec,
            stim,
            at,
            prev_end,
            later,
            next_unfound,
            ref_channel,
            max_lead_s,
            max_reply_s,
        )
        window = source.read(lo, hi)
        if not np.any(window[:, ear_channel]):
            # A silent ear in this turn's window is this turn's missing reply, not bad input.
            metrics = TurnMetrics.refused(
                f"{Discard.NO_REPLY}: the ear channel is all zeros from {lo / fs:.3f} to "
                f"{hi / fs:.3f} s",
                fs,
            )
            out.append(ConversationTurn(i + 1, name, metrics, (lo / fs, hi / fs), clip is not None))
            prev_end = speech_end
            if progress:
                progress(i + 1, len(turns))
            continue
        where = f"turn {i + 1} ({name}), {lo / fs:.3f}-{hi / fs:.3f} s"
        m = _measure_window(
            window, lo, at, spec, stim, fs, where, ref_channel, ear_channel, options
        )
        if not later and speech_end + int(max_reply_s * fs) < source.frames:
            m.notes.append(
                f"the reply was followed for {max_reply_s:g} s after the speech end only "
                f"(the capture goes on to {source.frames / fs:.1f} s)"
            )
        out.append(ConversationTurn(i + 1, name, m, (lo / fs, hi / fs), clip is not None))
        prev_end = int(round((m.speech_end_s or speech_end / fs) * fs))
        if progress:
            progress(i + 1, len(turns))
    return out


def _check_channels(source: CaptureSource, ref_channel: int, ear_channel: int) -> None:
    """Raise InputError unless both channels exist in `source`."""
    for name, ch in (("ref", ref_channel), ("ear", ear_channel)):
        if not 0 <= ch < source.channels:
            raise InputError(
                f"{name} channel {ch} does not exist: the capture has {source.channels} "
                f"channel(s) (0..{source.channels - 1}); a capture needs a ref and an ear channel"
            )


def _stimuli_at(turns: list[TurnSpec], fs: int) -> list[np.ndarray]:
    """Each turn's stimulus, mono at `fs`: one converted copy per distinct stimulus (a call
    replays the same few files)."""
    converted: dict[int, np.ndarray] = {}
    stims = []
    for t in turns:
        key = id(t.stimulus)
        if key not in converted:
            converted[key] = _stim_at(t.stimulus, t.stimulus_rate_hz, fs)
        stims.append(converted[key])
    return stims


def _find_starts(
    source: CaptureSource, turns: list[TurnSpec], stims: list[np.ndarray], ref_channel: int
) -> tuple[list[int | None], dict[int, Match]]:
    """(where each stimulus starts in the capture, in order, None where it was not found;
    the best `Match` of each turn not found, by index). Each search starts after the
    previous turn's speech end."""
    fs = source.sample_rate_hz
    starts: list[int | None] = []
    misses: dict[int, Match] = {}
    cursor = 0
    for spec, stim in zip(turns, stims, strict=True):
        if spec.at_sample is not None:
            starts.append(spec.at_sample)
            cursor = spec.at_sample + len(stim) // 2
            continue
        found = find_stimulus(source, stim, spec.speech_end_s, ref_channel, cursor)
        if isinstance(found, Match):
            starts.append(None)
            misses[len(starts) - 1] = found
            continue
        starts.append(found)
        end_s = spec.speech_end_s if spec.speech_end_s is not None else len(stim) / fs
        cursor = found + int(end_s * fs)
    return starts, misses


def _turn_window(
    source: CaptureSource,
    spec: TurnSpec,
    stim: np.ndarray,
    at: int,
    prev_end: int,
    later: list[int],
    next_unfound: bool,
    ref_channel: int,
    max_lead_s: float,
    max_reply_s: float,
) -> tuple[int, int, int]:
    """(lo, hi, speech end), capture samples: the window of the turn whose stimulus starts at
    `at`, from after the previous turn (`prev_end`) to before the next stimulus found
    (`later`), or the next sound in the ref when the next stimulus played but was not found."""
    fs = source.sample_rate_hz
    end_in_stim = spec.speech_end_s if spec.speech_end_s is not None else len(stim) / fs
    speech_end = at + int(end_in_stim * fs)
    lo = max(prev_end, at - int(max_lead_s * fs), 0)
    lo = min(lo, max(0, at - int(0.05 * fs)))
    hi = speech_end + int(max_reply_s * fs)
    if later:
        hi = min(hi, later[0] - int(0.02 * fs))
    if next_unfound and spec.barge_in is None:
        # The next stimulus played but was not found: without this bound this turn
        # would take that turn's reply for the rest of its own.
        hi = min(hi, _next_ref_sound(source, ref_channel, at + len(stim), hi))
    hi = max(min(hi, source.frames), min(source.frames, at + len(stim)))
    return lo, hi, speech_end


def _measure_window(
    window: np.ndarray,
    lo: int,
    at: int,
    spec: TurnSpec,
    stim: np.ndarray,
    fs: int,
    where: str,
    ref_channel: int,
    ear_channel: int,
    options: AnalysisOptions | None,
) -> TurnMetrics:
    """One turn's metrics from its `window` (capture samples from `lo`; its stimulus at `at`),
    on the capture's timeline; an InputError names the turn and window (`where`)."""
    rr, clip = spec.reply_reference, spec.barge_in
    search = ((at - lo) / fs - 0.1, (at - lo) / fs + 0.1)
    try:
        m = analyze_capture(
            window,
            fs,
            stim,
            fs,
            speech_end_s=spec.speech_end_s,
            ref_channel=ref_channel,
            ear_channel=ear_channel,
            reply_reference=None if rr is None else rr[0],
            reply_reference_rate_hz=None if rr is None else rr[1],
            barge_in=None if clip is None else clip[0],
            barge_in_rate_hz=None if clip is None else clip[1],
            options=options,
            stimulus_search_s=search,
            offset_s=lo / fs,
        )
    except InputError as err:
        raise InputError(f"{where}: {err}") from err
    if spec.stimulus_rate_hz != fs:
        m.notes.insert(0, f"stimulus resampled from {spec.stimulus_rate_hz} Hz to {fs} Hz")
    if spec.speech_end_confidence < 1.0:
        m = _with_speech_end_confidence(m, spec.speech_end_confidence, options)
    return m


def _not_found(
    fs: int, name: str, ref_channel: int, best: Match | None, after: bool
) -> TurnMetrics:
    figures = "" if best is None else f"peak {best.peak:.2f}, sidelobe {best.sidelobe:.2f}; "
    if best is not None and best.peak >= 0.8 and best.sidelobe >= 0.8 * best.peak:
        return TurnMetrics.refused(
            f"{Discard.LOW_CONFIDENCE}: stimulus plays more than once alike in ref channel "
            f"{ref_channel} ({figures}within one search block), so which is this turn's is not "
            f"known ({name})",
            fs,
        )
    return TurnMetrics.refused(
        f"{Discard.LOW_CONFIDENCE}: stimulus not found in ref channel {ref_channel} "
        f"{'after the previous turn ' if after else ''}({figures}need a clear peak), nor the "
        f"last 0.5 s of its speech ({name})",
        fs,
    )


def _with_speech_end_confidence(
    m: TurnMetrics, c: float, options: AnalysisOptions | None
) -> TurnMetrics:
    """`m` with its confidence capped by its speech end's; refused below the minimum."""
    need = (options or AnalysisOptions()).min_confidence
    if m.discard is None and c < need:
        return dataclasses.replace(
            m,
            ttfa_ms=None,
            confidence=0.0,
            discard=(
                f"{Discard.LOW_CONFIDENCE}: the caller's speech end, found from the ref's "
                f"activity, is not sharp enough to time from (confidence {c:.2f} < {need:.2f}: "
                "the caller's speech stands less than 27 dB above the ref's noise)"
            ),
        )
    notes = [*m.notes, f"speech end found from the ref's activity (confidence {c:.2f})"]
    return dataclasses.replace(m, confidence=min(m.confidence, c), notes=notes)


def _next_ref_sound(source: CaptureSource, ref_channel: int, after: int, until: int) -> int:
    """First sample after `after` (before `until`) where the ref has sound again: 50 ms
    frames 30 dB over the quietest ones, 0.3 s past `after` (the stimulus' own tail)."""
    fs = source.sample_rate_hz
    lo = after + int(0.3 * fs)
    if until <= lo:
        return until
    x = source.read(lo, until)[:, ref_channel].astype(np.float64)
    frame = max(1, int(0.05 * fs))
    n = len(x) // frame
    if n == 0:
        return until
    p = np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1)
    loud = np.flatnonzero(p > max(float(np.min(p)), 1e-12) * 1e3)
    return lo + int(loud[0]) * frame if loud.size else until


def caller_turns(
    source: CaptureSource,
    *,
    ref_channel: int = 0,
    caller_pause_s: float = 0.6,
    pre_s: float = 0.05,
) -> list[TurnSpec]:
    """The caller's utterances in the ref channel, as turns whose stimulus is the ref itself.

    Activity is found on the ref's speech band over the whole capture, a block at a time
    (the filter's state carried across blocks); stretches closer than `caller_pause_s` are
    one utterance. Each one's end is refined to the sample on the band run backwards; its
    confidence comes from the utterance's level over the ref's noise (22 dB -> 0, 40 dB ->
    1, the blind onset's scale): a soft last sound hides in noise the same way.
    """
    fs = source.sample_rate_hz
    if fs < 4000:
        raise InputError(
            f"a capture at {fs} Hz holds no speech band (120 Hz-6 kHz): expected 4000 Hz or more"
        )
    frame, hop = max(1, int(FRAME_S * fs)), max(1, int(HOP_S * fs))
    sos = ss.butter(2, [120.0, min(6000.0, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    zi = np.zeros((sos.shape[0], 2))
    powers: list[np.ndarray] = []
    carry = np.zeros(0)
    block = int(20.0 * fs)
    for start in range(0, source.frames, block):
        x = source.read(start, start + block)[:, ref_channel].astype(np.float64)
        y, zi = ss.sosfilt(sos, x, zi=zi)
        y = np.concatenate((carry, y))
        n_frames = (len(y) - frame) // hop + 1 if len(y) >= frame else 0
        if n_frames > 0:
            cum = np.concatenate(([0.0], np.cumsum(y**2)))
            idx = np.arange(n_frames) * hop
            powers.append((cum[idx + frame] - cum[idx]) / frame)
            carry = y[n_frames * hop :]
        else:
            carry = y
    power = np.concatenate(powers) if powers else np.zeros(0)
    if power.size == 0 or not np.any(power > 0):
        raise InputError("the ref channel holds no sound: no caller speech to take turns from")
    floor = estimate_floor(power, quantile=0.1)
    high, low = thresholds(floor)
    segs = find_segments(
        power,
        high,
        low,
        hop=hop,
        frame=frame,
        min_gap_frames=int(round(caller_pause_s / HOP_S)),
        min_segment_frames=int(round(0.15 / HOP_S)),
    )
    turns: list[TurnSpec] = []
    for k, seg in enumerate(segs):
        s0, e0 = int(seg.start), int(seg.end)
        lo = max(0, s0 - int(pre_s * fs))
        hi = min(source.frames, e0 + int(0.3 * fs))
        x = source.read(lo, hi)[:, ref_channel].astype(np.float64)
        back = speech_band(x, fs, backward=True)
        end = lo + refine_offset(back, e0 - frame // 2 - lo, fs, floor.power)
        level = float(np.mean(speech_band(x, fs)[s0 - lo : int(end) - lo] ** 2))
        snr_db = 10 * math.log10(max(level, 1e-20) / max(floor.power, 1e-20))
        conf = float(np.clip((snr_db - 22.0) / 18.0, 0.0, 1.0))
        stim = x[: int(end) - lo + int(0.05 * fs)]
        turns.append(
            TurnSpec(
                stimulus=stim.astype(np.float32),
                stimulus_rate_hz=fs,
                speech_end_s=(end - lo) / fs,
                name=f"caller {k + 1} at {s0 / fs:.2f} s",
                speech_end_confidence=conf,
                at_sample=lo,
            )
        )
    return turns
