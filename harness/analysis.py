"""Turn one capture into a latency measurement a listener would agree with.

Input: a capture with a ref channel (what the mouth played, looped back) and an ear channel
(what a mic at the DUT's speaker heard) on one sample clock; the stimulus that was played and
where its speech ends; optionally the DUT's own reply audio and a barge-in clip.

Steps (docs/measurement.md explains each and why):
 1. locate the stimulus in ref -> where the labelled speech end landed in capture time;
 2. if the ear hears the mouth, estimate the ear's clock drift from that leakage and undo it,
    then subtract the leakage (fitted FIR on ref);
 3. find the reply: blind (activity detection) or, given the DUT's own audio, by
    cross-correlation (sample-exact, drift-corrected);
 4. with a barge-in clip: its onset at the mouth, when the interrupted reply went quiet, and
    how much audio still played after that;
 5. a number with its confidence, or a discard reason. A confident wrong number is the worst
    outcome, so every doubt becomes a discard.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from harness.bargein import ClipAt, blind_stop, locate_clip, reference_stop, residual_after
from harness.errors import InputError
from harness.signal.activity import (
    Activity,
    Segment,
    detect_activity,
    frame_power,
    speech_band,
)
from harness.signal.align import StimulusAlignment, align_stimulus
from harness.signal.bands import band_weights, filterbank, refine_boundary
from harness.signal.correlate import locate, refine_lag
from harness.signal.decay import decay_db_per_s, ring_down
from harness.signal.drift import correct_drift, fit_drift
from harness.signal.leakage import LeakageFit, remove_leakage
from harness.signal.resample import first_sound as _first_sound
from harness.signal.resample import mono as _mono
from harness.signal.resample import resample as _resample

# Discard reasons (the `discard` field); each message starts with one of these words.
NO_REPLY = "no_reply"
EARLY_REPLY = "reply_before_speech_end"
LOW_CONFIDENCE = "low_confidence"
CLIPPED = "clipped"
TOO_NOISY = "too_noisy"
TOO_QUIET = "too_quiet"


@dataclass(frozen=True)
class AnalysisOptions:
    """Knobs of the analysis; the defaults are what `tympan analyze` uses.

    min_gap_s: silences shorter than this inside a reply do not split it into segments.
    stop_silence_s: after a barge-in, the interrupted reply has stopped once the ear stays
        quiet this long.
    min_response_s: no agent answers a barge-in sooner than this after the user stopped;
        audio before then is residual from the interrupted reply.
    early_reply_s: sound at the ear that starts before the user's speech ended and lasts
        this long past it is the agent talking over the user (discard), not leakage.
    min_snr_db: replies less than this far above the noise floor are discarded (too noisy).
    min_confidence: below this, discard rather than answer.
    too_quiet_dbfs: a reply whose active level is below this is discarded (too quiet).
    leakage_response_s: length of the fitted mouth->ear response.
    max_drift_ppm: clock drift estimates beyond this are taken for a failed fit, not a clock.
    dry_path: the ear hears the DUT with no room between them (a virtual loopback, a
        free-field sim): a decay just before a barge-in stop is the reply's own sound (a word
        ending), not the room ringing, so the stop is where the sound ends.
    filler_max_s / filler_gap_s: a reply's first stretch of at most filler_max_s followed by
        at least filler_gap_s of quiet is a filler ("Mm-hm.", "Let me check."): the answer
        itself (`ttfa_content_ms`) starts with the next stretch.
    """

    min_gap_s: float = 0.15
    stop_silence_s: float = 0.3
    min_response_s: float = 0.2
    early_reply_s: float = 0.15
    min_snr_db: float = 8.0
    min_confidence: float = 0.3
    too_quiet_dbfs: float = -70.0
    max_drift_ppm: float = 1000.0
    leakage_response_s: float = 0.08
    dry_path: bool = False
    filler_max_s: float = 1.0
    filler_gap_s: float = 0.3


@dataclass(frozen=True)
class TurnMetrics:
    """What one turn measured. Times are seconds in the capture's timeline (ref clock).

    ttfa_ms: labelled end of user speech at the mouth -> first acoustic event of the reply at
        the ear; None when discarded.
    confidence: 0..1, how much to trust ttfa_ms (see docs/measurement.md).
    segments: spoken stretches of the reply [[start_s, end_s], ...]; gaps_ms between them.
    discard: None, or a reason starting with one of the module's discard words.
    barge_in_onset_s / stop_latency_ms / residual_ms: present when a barge-in clip was given.
    context_segments: sound at the ear that started before the user's speech ended and is
        not the reply (a greeting, an earcon, an earlier reply): context, neither noise nor
        the reply.
    overlap_ms: the agent talked over the user: its reply sounded this long before the
        user's speech ended (ttfa_ms is then negative); None when it did not.
    ttfa_content_ms: speech end -> the first sound of the answer itself, after a filler
        (the rule: AnalysisOptions.filler_max_s); equal to ttfa_ms without a filler.
    content_onset_s: where the answer after a filler starts; None without a filler.
    stimulus_warp_ms: the ref's copy of the stimulus is this much shorter (-) or longer (+)
        than the file before its speech end (audio lost or stretched on the way); 0 intact
        (or concealed: same length); None when it is not the file's but its start was not
        found, so how much went missing is not known.
    """

    ttfa_ms: float | None
    confidence: float
    speech_end_s: float | None
    reply_onset_s: float | None
    reply_end_s: float | None
    segments: list[list[float]]
    gaps_ms: list[float]
    discard: str | None
    mode: str = "blind"
    sample_rate_hz: int = 0
    stimulus_onset_s: float | None = None
    stimulus_confidence: float = 0.0
    snr_db: float | None = None
    leakage_reduction_db: float = 0.0
    ear_drift_ppm: float | None = None
    reply_drift_ppm: float | None = None
    barge_in_onset_s: float | None = None
    stop_latency_ms: float | None = None
    residual_ms: float | None = None
    context_segments: list[list[float]] = field(default_factory=list)
    overlap_ms: float | None = None
    ttfa_content_ms: float | None = None
    content_onset_s: float | None = None
    stimulus_warp_ms: float | None = 0.0
    notes: list[str] = field(default_factory=list)

    @classmethod
    def refused(cls, discard: str, sample_rate_hz: int) -> TurnMetrics:
        """A turn with nothing measured: only the reason (`discard`)."""
        return cls(
            ttfa_ms=None,
            confidence=0.0,
            speech_end_s=None,
            reply_onset_s=None,
            reply_end_s=None,
            segments=[],
            gaps_ms=[],
            discard=discard,
            sample_rate_hz=sample_rate_hz,
        )

    def to_json(self, *, barge_in: bool | None = None) -> dict:
        """The JSON object `tympan analyze --json` prints (barge-in keys only with a clip)."""
        d = asdict(self)
        if barge_in is False or (barge_in is None and self.barge_in_onset_s is None):
            for k in ("barge_in_onset_s", "stop_latency_ms", "residual_ms"):
                d.pop(k)
        return {k: _round(v) for k, v in d.items()}


def _round(v: object) -> object:
    """Floats to 6 decimals (1 µs in seconds), NaN/inf to None, through lists."""
    if isinstance(v, list):
        return [_round(x) for x in v]
    if isinstance(v, float):
        return round(v, 6) if math.isfinite(v) else None
    return v


def _clipped(x: np.ndarray, level: float = 0.999, run: int = 3) -> bool:
    """True when `run` or more consecutive samples sit at full scale."""
    hot = np.abs(x) >= level
    if hot.sum() < run:
        return False
    # Length of the longest run of hot samples.
    d = np.diff(np.concatenate(([0], hot.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return bool(np.max(ends - starts) >= run)


def _discarded(base: dict, reason: str, **extra: object) -> TurnMetrics:
    base = {**base, **extra}
    return TurnMetrics(
        ttfa_ms=None,
        confidence=0.0,
        speech_end_s=base.pop("speech_end_s", None),
        reply_onset_s=base.pop("reply_onset_s", None),
        reply_end_s=base.pop("reply_end_s", None),
        segments=base.pop("segments", []),
        gaps_ms=base.pop("gaps_ms", []),
        discard=reason,
        **base,
    )


def analyze_capture(
    capture: np.ndarray,
    sample_rate_hz: int,
    stimulus: np.ndarray,
    stimulus_rate_hz: int,
    *,
    offset_s: float = 0.0,
    **kwargs: Any,
) -> TurnMetrics:
    """Measure one turn. `capture` is (samples, channels) float in [-1, 1].

    Keyword arguments are `measure_turn`'s. `offset_s`: the capture is a window that starts
    this many seconds into a longer recording; every time in the result (fields and
    messages) is then on that recording's timeline.
    """
    m = measure_turn(
        capture, sample_rate_hz, stimulus, stimulus_rate_hz, _offset_s=offset_s, **kwargs
    )
    return shift_metrics(m, offset_s)


_TIME_FIELDS = (
    "speech_end_s",
    "reply_onset_s",
    "reply_end_s",
    "stimulus_onset_s",
    "barge_in_onset_s",
    "content_onset_s",
)


def shift_metrics(m: TurnMetrics, offset_s: float) -> TurnMetrics:
    """`m` with every capture-timeline time moved by `offset_s` (a window's start)."""
    if offset_s == 0:
        return m
    changes: dict = {k: getattr(m, k) + offset_s for k in _TIME_FIELDS if getattr(m, k) is not None}
    changes["segments"] = [[a + offset_s, b + offset_s] for a, b in m.segments]
    changes["context_segments"] = [[a + offset_s, b + offset_s] for a, b in m.context_segments]
    changes["notes"] = list(m.notes)
    return dataclasses.replace(m, **changes)


def measure_turn(
    capture: np.ndarray,
    sample_rate_hz: int,
    stimulus: np.ndarray,
    stimulus_rate_hz: int,
    *,
    speech_end_s: float | None = None,
    ref_channel: int = 0,
    ear_channel: int = 1,
    reply_reference: np.ndarray | None = None,
    reply_reference_rate_hz: int | None = None,
    barge_in: np.ndarray | None = None,
    barge_in_rate_hz: int | None = None,
    options: AnalysisOptions | None = None,
    stimulus_search_s: tuple[float, float] | None = None,
    _offset_s: float = 0.0,
) -> TurnMetrics:
    """Measure one turn (times relative to the capture's first sample; messages on the
    timeline `_offset_s` later). `capture` is (samples, channels) float in [-1, 1].

    `speech_end_s` is in seconds of the stimulus (its labelled end of speech); None detects
    it from the stimulus. Other audio at a different rate is resampled (noted in `notes`).
    `stimulus_search_s` limits where the stimulus may start (capture seconds), for a
    capture that holds several turns.
    Raises InputError for input that cannot be analysed at all (wrong shape, NaN, silence);
    returns a TurnMetrics with `discard` set when the input is valid but the answer would
    not be trustworthy.
    """
    opt = options or AnalysisOptions()
    fs = int(sample_rate_hz)
    notes: list[str] = []
    capture = np.asarray(capture)
    if capture.ndim != 2:
        raise InputError(f"capture must be (samples, channels), got shape {capture.shape}")
    n_ch = capture.shape[1]
    for name, ch in (("ref", ref_channel), ("ear", ear_channel)):
        if not 0 <= ch < n_ch:
            raise InputError(
                f"{name} channel {ch} does not exist: the capture has {n_ch} channel(s) "
                f"(0..{n_ch - 1}); a capture needs a ref and an ear channel"
            )
    if ref_channel == ear_channel:
        raise InputError(f"ref and ear channel are both {ref_channel}; they must differ")
    if not np.all(np.isfinite(capture)):
        raise InputError("capture contains NaN or infinite samples")
    ref = capture[:, ref_channel].astype(np.float64)
    ear = capture[:, ear_channel].astype(np.float64)
    if not np.any(ref):
        raise InputError(
            f"ref channel {ref_channel} is all zeros: nothing was played or looped back"
        )
    if not np.any(ear):
        raise InputError(f"ear channel {ear_channel} is all zeros: the ear heard nothing at all")

    stim = _mono(stimulus)
    if not np.all(np.isfinite(stim)) or not np.any(stim):
        raise InputError("stimulus is silent or contains NaN")
    if stimulus_rate_hz != fs:
        stim_dur = len(stim) / stimulus_rate_hz
        stim = _resample(stim, stimulus_rate_hz, fs)
        notes.append(f"stimulus resampled from {stimulus_rate_hz} Hz to {fs} Hz")
    else:
        stim_dur = len(stim) / fs
    if speech_end_s is None:
        act = detect_activity(stim, fs)
        if not act.segments:
            raise InputError("no speech found in the stimulus to take its end from")
        speech_end_s = act.segments[-1].end / fs
        notes.append(f"speech end detected in the stimulus at {speech_end_s:.4f} s")
    elif not 0 <= speech_end_s <= stim_dur + 1e-9:
        raise InputError(
            f"speech end {speech_end_s:.3f} s is outside the stimulus (0..{stim_dur:.3f} s)"
        )

    base: dict = {"mode": "blind", "sample_rate_hz": fs, "notes": notes}

    # 1. Where did the stimulus play, and where did its speech end land? (ref channel)
    stim_first = _first_sound(stim)
    search = None
    if stimulus_search_s is not None:
        search = (int(stimulus_search_s[0] * fs), int(stimulus_search_s[1] * fs) + 1)
    al = align_stimulus(ref, stim, fs, speech_end_s * fs, stim_first, search=search)
    if not isinstance(al, StimulusAlignment):
        base["stimulus_confidence"] = al.confidence
        return _discarded(
            base,
            f"{LOW_CONFIDENCE}: stimulus not found in ref channel {ref_channel} "
            f"(peak {al.peak:.2f}, sidelobe {al.sidelobe:.2f}; need a clear peak), nor the "
            "last 0.5 s of its speech",
        )
    base["stimulus_confidence"] = al.confidence
    stim_lag = al.onset_lag
    speech_end = al.speech_end
    base["stimulus_onset_s"] = (stim_lag + stim_first) / fs
    base["speech_end_s"] = speech_end / fs
    if al.by != "whole" or (al.warp_samples is not None and abs(al.warp_samples) > 1.0):
        how_placed = (
            "is placed by the whole stimulus"
            if al.by == "whole"
            else f"is aligned on the stimulus' last {'0.5 s' if al.by == 'tail' else '0.1-0.2 s'}"
            f" of speech (confidence {al.confidence:.2f})"
        )
        if al.warp_samples is None:
            base["stimulus_warp_ms"] = None
            notes.append(
                "the ref's copy of the stimulus is not the file's (audio lost, concealed or "
                "stretched on the way) and its start was not found, so how much went missing "
                f"is not known: the speech end {how_placed}"
            )
        else:
            warp_ms = al.warp_samples / fs * 1000
            base["stimulus_warp_ms"] = warp_ms
            how = "less" if warp_ms < 0 else "more"
            notes.append(
                f"the ref holds {abs(warp_ms):.1f} ms {how} of the stimulus than the file "
                f"before its speech end (audio lost, concealed or stretched on the way): the "
                f"speech end {how_placed}"
            )
    if _clipped(ref):
        notes.append("ref channel clips: alignment still valid, but turn the mouth level down")

    # 2. Ear clock drift (from the leakage, when the ear hears the mouth) and leakage removal.
    fit_lo = int(stim_lag + stim_first)
    fit_hi = _reply_free_until(ear, int(speech_end), fs)
    residual, leak = remove_leakage(
        ear, ref, (fit_lo, fit_hi), fs, response_s=opt.leakage_response_s
    )
    if leak.leakage_db > -20 and leak.response.size:
        # Where the played speech sits in the ear (the acoustic path's delay): by correlation,
        # which a drifting clock only blurs, not by the fitted FIR, which drift smears.
        mouth = ref[fit_lo:fit_hi]
        at = locate(ear, mouth, fs, search=(fit_lo - int(0.01 * fs), fit_lo + int(0.1 * fs)))
        drift = fit_drift(ear, mouth, at.lag_samples, fs, window_s=0.25)
        if (
            drift is not None
            and drift.windows >= 3
            and 2.0 < abs(drift.drift_ppm) <= opt.max_drift_ppm
            and drift.residual_samples < 2.0
            and abs(drift.drift_ppm) > 3 * drift.stderr_ppm
        ):
            base["ear_drift_ppm"] = drift.drift_ppm
            corrected = correct_drift(ear, drift.drift_ppm)
            fixed, fixed_leak = remove_leakage(
                corrected, ref, (fit_lo, fit_hi), fs, response_s=opt.leakage_response_s
            )
            # A real drift smears the fitted response, so undoing it removes more leakage;
            # a drift that is only the fit's noise (25-35 ppm at 3 sigma, seen) removes less,
            # and the residue it leaves hides the reply's onset: then it is not applied.
            if fixed_leak.reduction_db >= leak.reduction_db - 0.5:
                ear, residual, leak = corrected, fixed, fixed_leak
                notes.append(f"ear clock drift {drift.drift_ppm:+.1f} ppm vs ref corrected")
            else:
                notes.append(
                    f"ear clock drift {drift.drift_ppm:+.1f} ppm vs ref found but not corrected: "
                    f"undoing it removed less of the mouth's leakage "
                    f"({fixed_leak.reduction_db:.1f} dB, not {leak.reduction_db:.1f} dB)"
                )
        elif drift is not None and abs(drift.drift_ppm) > 3 * drift.stderr_ppm:
            base["ear_drift_ppm"] = drift.drift_ppm
    base["leakage_reduction_db"] = leak.reduction_db

    # 3. The reply: activity in the leakage-free ear.
    clip_at: ClipAt | None = None
    if barge_in is not None:
        found_clip = locate_clip(barge_in, barge_in_rate_hz or fs, fs, ref, stim_lag)
        if isinstance(found_clip, str):
            notes.append(found_clip)
        else:
            clip_at = found_clip
            base["barge_in_onset_s"] = clip_at.onset / fs
    profile = None
    if leak.reduction_db > 0:
        spans = [clip_at.span] if clip_at is not None else []
        profile = _leakage_floor(residual, leak, fit_lo, fit_hi, fs, ref=ref, also=spans)
    noise_region = (0, int(stim_lag + stim_first) - int(0.02 * fs))
    # The lead-in before the stimulus holds only noise (the mouth has not played, the DUT
    # has nothing to answer yet), less whatever the DUT said before (a greeting, an earcon,
    # its previous reply): the best place to learn what the noise looks like.
    act = detect_activity(
        residual,
        fs,
        min_gap_s=opt.min_gap_s,
        floor_profile=profile,
        noise_region=noise_region,
    )
    noise_spans: list[tuple[int, int]] = list(act.noise_spans)
    if not noise_spans and not act.lead_context:
        noise_spans = [noise_region]
    if act.lead_context:
        quiet_s = sum(b - a for a, b in act.noise_spans) / fs
        notes.append(
            f"sound at the ear before the stimulus ({len(act.lead_context)} stretch(es), the "
            f"last ending at {act.lead_context[-1][1] / fs + _offset_s:.3f} s): the DUT's own "
            "(a greeting, an earcon, an earlier reply), left out of the noise floor"
            + (
                f" ({quiet_s:.2f} s of quiet left to learn the noise from)"
                if noise_spans
                else "; too little quiet left, the noise floor is the capture's quietest frames"
            )
        )
    y = act.band
    barge_onset_at = clip_at.onset if clip_at is not None else None
    floor = act.floor
    if clip_at is not None:
        # Timed from the segments alone, so they stand even if the TTFA is discarded.
        _blind_barge_in(base, clip_at, act, profile, opt, fs, notes)
    early = [
        s
        for s in act.segments
        if s.start < speech_end and s.end > speech_end + opt.early_reply_s * fs
    ]
    base["context_segments"] = [
        [s.start / fs, s.end / fs]
        for s in act.segments
        if s.start < speech_end and not (early and s.start >= early[0].start)
    ]
    # The agent talking over the user is a reply too: it starts where that sound started.
    reply_segs = [s for s in act.segments if s.start >= (early[0].start if early else speech_end)]
    if reply_segs and _clipped(ear[int(reply_segs[0].start) : int(reply_segs[-1].end)]):
        return _discarded(
            base, f"{CLIPPED}: the ear channel clips during the reply; lower the gain"
        )
    if reply_segs:
        seg_power = float(
            np.mean([np.mean(y[int(s.start) : int(s.end)] ** 2) for s in reply_segs[:3]])
        )
        # SNR against the noise's loud moments when a noise-only lead-in showed them
        # (babble is 8 dB louder at its peaks than on average), else against its mean.
        noise_power = floor.ceiling if floor.ceiling is not None else floor.power
        snr_db = 10 * math.log10(seg_power / max(noise_power, 1e-20))
        base["snr_db"] = snr_db
        level_dbfs = 10 * math.log10(max(seg_power, 1e-20))
        base.update(
            segments=[[s.start / fs, s.end / fs] for s in reply_segs],
            gaps_ms=[(b.start - a.end) / fs * 1000 for a, b in itertools.pairwise(reply_segs)],
            reply_end_s=reply_segs[-1].end / fs,
        )

    if reply_reference is not None:
        # Reply-reference mode: the DUT's own audio, found by correlation, decides. Its
        # evidence is the correlation peak, which holds up far below the SNR at which an
        # energy detector gives up, so the blind checks below do not apply.
        rr = _mono(reply_reference)
        rr_rate = reply_reference_rate_hz or fs
        if rr_rate != fs:
            rr = _resample(rr, rr_rate, fs)
            notes.append(f"reply reference resampled from {rr_rate} Hz to {fs} Hz")
        # From the stimulus' start on: an agent that talks over the user starts before its end.
        found = _locate_reply(residual, rr, fs, fit_lo, base)
        if isinstance(found, str):
            return _discarded(base, found)
        onset, confidence = found
        base["mode"] = "reply-reference"
        if clip_at is not None:
            body = rr[_first_sound(rr) :]
            stop, note = reference_stop(
                residual, body, onset, base.get("reply_drift_ppm"), clip_at, fs
            )
            if note:
                # The ear's segments (with their own refusals) stand instead.
                notes.append(f"{note}; the stop latency is the ear's segments'")
            if stop is not None:
                base["stop_latency_ms"] = (stop - clip_at.onset) / fs * 1000
                base["residual_ms"] = residual_after(
                    act.segments, stop, clip_at, opt.min_response_s, fs
                )
        # Every blind segment still sounding at the located onset or after it is the
        # reply's (the first one starts at the onset).
        segs = [[s.start / fs, s.end / fs] for s in act.segments if s.end > onset]
        if segs:
            segs[0][0] = onset / fs
        else:
            segs.append([onset / fs, (onset + len(rr) - _first_sound(rr)) / fs])
        base["segments"] = segs
        base["gaps_ms"] = [(b[0] - a[1]) * 1000 for a, b in itertools.pairwise(segs)]
        base["reply_end_s"] = segs[-1][1]
    else:
        if early and (not opt.dry_path or _hears_mouth(ear, ref, fit_lo, int(early[0].start), fs)):
            # The ear's sound began before the user's speech ended. Where the ear hears only
            # the DUT (dry_path: a loopback, a line) that sound is the agent talking over the
            # user, timed below. Elsewhere it may be anything (a burst of noise, another
            # talker, a fan coming on: a -500 ms "TTFA" at confidence 1 was seen), or the
            # agent under what the leakage fit left of the user's voice: its overlap is
            # measured, its onset is not reported as a TTFA.
            s = early[0]
            why = (
                "the ear also hears the mouth, so its onset is not timed blind"
                if opt.dry_path
                else "whether it is the agent is not known from the ear alone (the ear may "
                "hold other sound)"
            )
            return _discarded(
                base,
                f"{EARLY_REPLY}: sound at the ear from {s.start / fs + _offset_s:.3f} s, before "
                f"the user's speech ended at {speech_end / fs + _offset_s:.3f} s, lasting "
                f"{(s.end - speech_end) / fs * 1000:.0f} ms past it (the agent talking over the "
                f"user?); {why}: give the reply reference, or --dry-path when the ear is the "
                "agent's output alone",
                segments=[[s.start / fs, s.end / fs]],
                overlap_ms=(speech_end - s.start) / fs * 1000,
            )
        if not reply_segs:
            return _discarded(
                base,
                f"{NO_REPLY}: no sound at the ear after the user's speech ended at "
                f"{speech_end / fs + _offset_s:.3f} s (noise floor {floor.level_db:.1f} dBFS)",
            )
        if level_dbfs < opt.too_quiet_dbfs:
            return _discarded(
                base,
                f"{TOO_QUIET}: reply level {level_dbfs:.1f} dBFS is below "
                f"{opt.too_quiet_dbfs:.0f} dBFS",
            )
        if snr_db < opt.min_snr_db:
            return _discarded(
                base,
                f"{TOO_NOISY}: reply only {snr_db:.1f} dB above the noise floor "
                f"(need {opt.min_snr_db:.0f} dB)",
            )
        onset_snr_db = snr_db
        if profile is not None:
            # Where the mouth's leakage has not rung down yet, its residue is noise too.
            residue = float(profile(np.array([int(reply_segs[0].start)]))[0])
            if residue > 0:
                onset_snr_db = min(snr_db, 10 * math.log10(seg_power / residue))
        ringing = _rings_before(y, int(reply_segs[0].start), noise_spans, fs, floor.power)
        onset, confidence = _blind_onset(
            residual, reply_segs, noise_spans, fs, onset_snr_db, y, ringing=ringing
        )
        base["segments"][0][0] = onset / fs  # one onset: the refined one
        if confidence < opt.min_confidence:
            return _discarded(
                base,
                f"{LOW_CONFIDENCE}: reply onset at {onset / fs + _offset_s:.3f} s is not sharp "
                f"enough to time (confidence {confidence:.2f} < {opt.min_confidence:.2f}, "
                f"SNR {snr_db:.1f} dB)",
            )

    if onset < speech_end:
        base["overlap_ms"] = (speech_end - onset) / fs * 1000
        notes.append(
            f"the agent talked over the user: its reply started {base['overlap_ms']:.0f} ms "
            "before the user's speech ended (a negative TTFA)"
        )
    segs_s = [list(sg) for sg in base["segments"]]
    if len(segs_s) >= 2 and not opt.dry_path:
        # In a room the first stretch's ring fills part of the pause after it: the pause
        # the DUT made starts where its direct sound stopped.
        ring = ring_down(y, int(segs_s[0][0] * fs), int(segs_s[0][1] * fs), fs)
        if ring is not None:
            ring_ms, direct_end = ring
            segs_s[0][1] = (
                direct_end / fs if direct_end is not None else segs_s[0][1] - ring_ms / 1000
            )
    content = _content_segment(segs_s, onset / fs, opt, barge_onset_at, fs)
    if content is None:
        base["ttfa_content_ms"] = (onset - speech_end) / fs * 1000
    else:
        c_seg = Segment(content[0] * fs, content[1] * fs)
        c_onset, _ = _blind_onset(residual, [c_seg], noise_spans, fs, base.get("snr_db") or 0, y)
        base["content_onset_s"] = c_onset / fs
        base["ttfa_content_ms"] = (c_onset - speech_end) / fs * 1000

    return TurnMetrics(
        ttfa_ms=(onset - speech_end) / fs * 1000,
        confidence=confidence,
        speech_end_s=base.pop("speech_end_s"),
        reply_onset_s=onset / fs,
        reply_end_s=base.pop("reply_end_s", None),
        segments=base.pop("segments", []),
        gaps_ms=base.pop("gaps_ms", []),
        discard=None,
        **base,
    )


def _content_segment(
    segments: list[list[float]],
    onset_s: float,
    opt: AnalysisOptions,
    barge_onset: float | None,
    fs: int,
) -> list[float] | None:
    """The reply's segment where the answer itself starts, when the reply opens with a
    filler; None when it does not (the answer starts at the first sound).

    The rule (from the audio alone, so blind to words): the first stretch of the reply is a
    filler when it lasts at most `filler_max_s` and the next one starts `filler_gap_s` or
    more after it ends ("Mm-hm. <pause> It's 72 degrees"), before any barge-in.
    """
    if len(segments) < 2:
        return None
    first, second = segments[0], segments[1]
    if first[1] - onset_s > opt.filler_max_s or second[0] - first[1] < opt.filler_gap_s:
        return None
    if barge_onset is not None and second[0] * fs >= barge_onset:
        return None
    return second


def _reply_free_until(ear: np.ndarray, speech_end: int, fs: int, limit_s: float = 1.0) -> int:
    """Last sample after the user's speech end before anything new starts at the ear.

    After the user stops, the ear can only decay (the room rings down) until the reply
    begins. The first 10 ms frame that rises 10 dB above the quietest frame since the
    speech end marks something new; the stretch before it is reply-free and shows the
    room's late response clearly, which makes the leakage fit generalise.
    """
    seg = ear[speech_end : speech_end + int(limit_s * fs)]
    p = frame_power(speech_band(seg, fs), int(0.01 * fs), int(0.0025 * fs))
    if p.size == 0:
        return speech_end
    level = 10 * np.log10(np.maximum(p, 1e-12))
    rise = np.flatnonzero(level > np.minimum.accumulate(level) + 10.0)
    i = int(rise[0]) if rise.size else len(p)
    return speech_end + max(0, i * int(0.0025 * fs) - int(0.02 * fs))


def _leakage_floor(
    residual: np.ndarray,
    leak: LeakageFit,
    fit_lo: int,
    fit_hi: int,
    fs: int,
    *,
    ref: np.ndarray,
    also: list[tuple[int, int]],
) -> Callable[[np.ndarray], np.ndarray]:
    """Power below which ear sound is taken for the leakage's residue, per sample index.

    Up to the end of the fit region it is the residual's loud level there (90th percentile
    of 10 ms frames, in the speech band); after that it decays at the room's rate (from the
    fitted late response, else 200 dB/s), so the room ringing down is not mistaken for an
    early reply. The mouth's later sound (`also`: the barge-in clip's span) leaves a residue
    of the same proportion to its level at the ref, which rings down after it the same way.
    Returned as a function so it is only evaluated where it is needed.
    """
    band = speech_band(residual[fit_lo:fit_hi], fs)
    p = frame_power(band, int(0.01 * fs), int(0.0025 * fs))
    level = float(np.quantile(p, 0.9)) if p.size else 0.0
    rate = decay_db_per_s(leak.late_response, leak.late_rate_hz) or 200.0
    stim_power = float(np.mean(speech_band(ref[fit_lo:fit_hi], fs) ** 2)) if fit_hi > fit_lo else 0
    later = []
    for lo, hi in also:
        lo, hi = max(0, lo), min(len(ref), hi)
        if hi > lo and stim_power > 0:
            ratio = float(np.mean(speech_band(ref[lo:hi], fs) ** 2)) / stim_power
            later.append((lo, hi, level * ratio))

    def profile(index: np.ndarray) -> np.ndarray:
        t = np.maximum(index - fit_hi, 0) / fs
        out = level * 10 ** (-rate * t / 10)
        out[index < fit_lo] = 0.0
        for lo, hi, lvl in later:
            t = np.maximum(index - hi, 0) / fs
            part = lvl * 10 ** (-rate * t / 10)
            part[index < lo] = 0.0
            out = np.maximum(out, part)
        return out

    return profile


def _blind_barge_in(
    base: dict,
    clip_at: ClipAt,
    act: Activity,
    profile: Callable[[np.ndarray], np.ndarray] | None,
    opt: AnalysisOptions,
    fs: int,
    notes: list[str],
) -> None:
    """Stop latency and residual audio from the ear's segments into `base` (or a note)."""
    floor_at = None
    if profile is not None:

        def floor_at(index: np.ndarray) -> np.ndarray:
            return np.maximum(profile(index), act.floor.power)

    stop, note = blind_stop(
        clip_at,
        act.segments,
        act.band,
        fs,
        stop_silence_s=opt.stop_silence_s,
        dry_path=opt.dry_path,
        floor_at=floor_at,
    )
    if note:
        notes.append(note)
    if stop is not None:
        base["stop_latency_ms"] = (stop - clip_at.onset) / fs * 1000
        base["residual_ms"] = residual_after(act.segments, stop, clip_at, opt.min_response_s, fs)


def _blind_onset(
    residual: np.ndarray,
    reply_segs: list[Segment],
    noise_region: list[tuple[int, int]],
    fs: int,
    snr_db: float,
    band: np.ndarray,
    *,
    ringing: bool = False,
) -> tuple[float, float]:
    """(onset in samples, confidence) of the first reply segment, refined in noise.

    With a noise-only lead-in, the onset is re-timed on the SNR-weighted filterbank
    statistic (harness.signal.bands), which sees a soft onset through noise that
    broadband energy misses; without one, the broadband refinement stands. So it does with
    `ringing`: the room still rings at the onset (the mouth's leakage the fit could not
    remove, which grows where the fitted response ends), so what lies before the onset is
    not the noise the band weights describe, and the statistic's CUSUM took the rising
    ring for the onset (17-23 ms early, seen in RT60 0.4 s with the mouth at -10 dB).
    """
    first = reply_segs[0]
    regions = [(int(s.start), int(min(s.end, s.start + fs))) for s in reply_segs[:3]]
    fb = filterbank(fs)
    bw = None if ringing else band_weights(residual, fb, noise_region, regions)
    if bw is None:
        return first.start, _onset_confidence(band, int(first.start), fs, snr_db)
    onset, contrast = refine_boundary(residual, int(first.start), fb, bw, search_before_s=0.1)
    return onset, _blind_confidence(contrast, snr_db)


def _hears_mouth(ear: np.ndarray, ref: np.ndarray, lo: int, hi: int, fs: int) -> bool:
    """Whether the ear hears the mouth in [lo, hi) (before the agent's own sound started):
    a leakage fit there that explains more than 1/1000 of the ear's energy. A stretch too
    short to tell (under 100 ms) counts as hearing it: the doubt goes to a refusal."""
    hi = hi - int(0.02 * fs)
    if hi - lo < int(0.1 * fs):
        return True
    _, fit = remove_leakage(ear, ref, (lo, hi), fs, response_s=0.02, late_response_s=0.0)
    return fit.leakage_db > -30.0


def _rings_before(
    band: np.ndarray,
    onset: int,
    noise_spans: list[tuple[int, int]],
    fs: int,
    floor_power: float,
) -> bool:
    """True when the 100 ms before `onset` are 10 dB or more louder than the noise spans
    and than the detection floor (speech band): the room still rings there (the mouth's
    leakage, an earlier reply), so that stretch is not the noise the filterbank's weights
    were learnt on. (Against digital silence alone any rounding residue would count.)"""
    lo, hi = max(0, onset - int(0.1 * fs)), max(0, onset - int(0.01 * fs))
    if hi - lo < int(0.02 * fs) or not noise_spans:
        return False
    before = float(np.mean(band[lo:hi] ** 2))
    n = sum(hi - lo for lo, hi in noise_spans)
    noise = sum(float(np.sum(band[a:b] ** 2)) for a, b in noise_spans) / max(n, 1)
    return before > 10.0 * max(noise, floor_power, 1e-20)


def _blind_confidence(contrast_db: float, snr_db: float) -> float:
    """0..1 for a blind onset, from how far the reply stands above the noise.

    A reply's first sound is often soft (an /h/, an /s/, a breath), 25-50 dB below its
    loudest vowel; the less SNR there is, the more of it can hide in the noise, and the
    onset found is then the first audible sound, late however sharp it looks (the benchmark
    shows up to 23 ms at 20 dB SNR, 35-60 ms at 10 dB). So the SNR (reply level over the
    noise's loud moments) sets the confidence: 22 dB -> 0, 40 dB -> 1, and a result needs
    0.3 (27.4 dB). The onset's contrast (the 20 ms after it over the 40 ms before it) only
    vetoes: under 6 dB the "onset" is a bump in the noise, not the start of a reply.
    """
    by_snr = (snr_db - 22.0) / 18.0
    by_contrast = contrast_db / 6.0 - 0.5
    return float(np.clip(min(by_snr, by_contrast), 0.0, 1.0))


def _onset_confidence(y: np.ndarray, onset: int, fs: int, snr_db: float) -> float:
    """Blind confidence from the broadband band `y` (no noise-only lead-in to weight bands)."""
    after = y[onset + int(0.005 * fs) : onset + int(0.025 * fs)]
    before = y[max(0, onset - int(0.045 * fs)) : max(0, onset - int(0.005 * fs))]
    if after.size == 0:
        return 0.0
    p_after = float(np.mean(after**2))
    p_before = float(np.mean(before**2)) if before.size else 0.0
    contrast_db = 10 * math.log10(max(p_after, 1e-20) / max(p_before, p_after * 1e-6, 1e-20))
    return _blind_confidence(contrast_db, snr_db)


def _locate_reply(
    ear: np.ndarray, reply: np.ndarray, fs: int, search_from: int, base: dict
) -> tuple[float, float] | str:
    """Onset of the DUT's own reply audio in the (leakage-free) ear, sample-exact.

    Returns (onset in samples, confidence) or a discard reason.
    """
    first = _first_sound(reply)
    body = reply[first:]
    # Lock on with the first 3 s (enough to be unique, cheap), then fit drift over the rest.
    head = body[: 3 * fs]
    # Reflections arrive within tens of ms of the direct sound: they are not competitors.
    m = locate(ear, head, fs, search=(max(0, search_from), len(ear)), exclusion_s=0.05)
    if _reply_confidence(m.psr_db) < 0.3 or m.peak < 0.1:
        return (
            f"{LOW_CONFIDENCE}: reply reference not found in the ear channel "
            f"(peak {m.peak:.2f}, sidelobe {m.sidelobe:.2f}; need the peak 3.8 dB clear)"
        )
    lag = refine_lag(ear, head, m.lag_samples)
    drift = fit_drift(ear, body, lag, fs) if len(body) >= 1.2 * fs else None
    if drift is not None and drift.windows >= 3 and drift.residual_samples < 1.0:
        base["reply_drift_ppm"] = drift.drift_ppm
        lag = drift.lag_at_start
    return lag, _reply_confidence(m.psr_db)


def _reply_confidence(psr_db: float) -> float:
    """0..1 from the peak-to-sidelobe ratio of the reply's correlation: 2 dB -> 0, 8 dB -> 1.

    In a reverberant room the reply's normalised peak is low (0.3-0.5: most of what the mic
    hears is the room), but a peak that stands clear of every competitor is still exactly
    where the reply is; what makes a location doubtful is a competitor of similar height.
    """
    return float(np.clip((psr_db - 2.0) / 6.0, 0.0, 1.0))
