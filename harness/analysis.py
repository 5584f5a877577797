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

`measure_turn` runs the steps in order on one `harness.turnstate.TurnState`; they are this
module's functions, but for the reply's onset (`harness.onset`).
"""

from __future__ import annotations

__all__ = [
    "AnalysisOptions",
    "Discard",
    "TurnMetrics",
    "analyze_capture",
    "measure_turn",
    "shift_metrics",
]

import itertools
import math
from typing import Any

import numpy as np

from harness.bargein import blind_stop, locate_clip, residual_after
from harness.errors import InputError
from harness.onset import onset_blind, onset_by_reference
from harness.reasons import Discard
from harness.reply import blind_onset, content_segment, leakage_floor, noise_level
from harness.signal.activity import Segment, detect_activity
from harness.signal.align import StimulusAlignment, align_stimulus
from harness.signal.correlate import locate
from harness.signal.decay import ring_down
from harness.signal.drift import correct_drift, fit_drift
from harness.signal.leakage import remove_leakage
from harness.signal.levels import clipped, reply_free_until
from harness.signal.resample import first_sound, mono, resample
from harness.turnmetrics import AnalysisOptions, TurnMetrics, shift_metrics
from harness.turnstate import Refused, TurnState


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
    t = _read_inputs(
        capture,
        int(sample_rate_hz),
        stimulus,
        stimulus_rate_hz,
        speech_end_s,
        ref_channel,
        ear_channel,
        options or AnalysisOptions(),
        _offset_s,
    )
    try:
        _place_stimulus(t, stimulus_search_s)
        _remove_mouth(t)
        _find_sound(t, barge_in, barge_in_rate_hz)
        if reply_reference is not None:
            onset, confidence = onset_by_reference(t, reply_reference, reply_reference_rate_hz)
        else:
            onset, confidence = onset_blind(t)
    except Refused as refusal:
        return t.refused(refusal.message, refusal.fields)
    _after_onset(t, onset)
    return t.measured(onset, confidence)


def _read_inputs(
    capture: np.ndarray,
    fs: int,
    stimulus: np.ndarray,
    stimulus_rate_hz: int,
    speech_end_s: float | None,
    ref_channel: int,
    ear_channel: int,
    opt: AnalysisOptions,
    offset_s: float,
) -> TurnState:
    """The capture's ref and ear, the stimulus at the capture's rate and its speech end;
    InputError for what cannot be analysed at all."""
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

    stim = mono(stimulus)
    if not np.all(np.isfinite(stim)) or not np.any(stim):
        raise InputError("stimulus is silent or contains NaN")
    if stimulus_rate_hz != fs:
        stim_dur = len(stim) / stimulus_rate_hz
        stim = resample(stim, stimulus_rate_hz, fs)
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
    return TurnState(
        opt=opt,
        fs=fs,
        offset_s=offset_s,
        ref=ref,
        ear=ear,
        stim=stim,
        speech_end_in_stim_s=speech_end_s,
        ref_channel=ref_channel,
        notes=notes,
    )


def _place_stimulus(t: TurnState, search_s: tuple[float, float] | None) -> None:
    """Step 1: where the stimulus played in the ref, and where its speech end landed (and
    how much of it the ref lacks, when its copy is not the file's)."""
    fs, found = t.fs, t.found
    t.stim_first = first_sound(t.stim)
    search = None
    if search_s is not None:
        search = (int(search_s[0] * fs), int(search_s[1] * fs) + 1)
    al = align_stimulus(t.ref, t.stim, fs, t.speech_end_in_stim_s * fs, t.stim_first, search=search)
    found["stimulus_confidence"] = al.confidence
    if not isinstance(al, StimulusAlignment):
        raise Refused(
            Discard.LOW_CONFIDENCE,
            f"stimulus not found in ref channel {t.ref_channel} "
            f"(peak {al.peak:.2f}, sidelobe {al.sidelobe:.2f}; need a clear peak), nor the "
            "last 0.5 s of its speech",
        )
    t.stim_lag = al.onset_lag
    t.speech_end = al.speech_end
    found["stimulus_onset_s"] = (t.stim_lag + t.stim_first) / fs
    found["speech_end_s"] = t.speech_end / fs
    if al.by != "whole" or (al.warp_samples is not None and abs(al.warp_samples) > 1.0):
        how_placed = (
            "is placed by the whole stimulus"
            if al.by == "whole"
            else f"is aligned on the stimulus' last {'0.5 s' if al.by == 'tail' else '0.1-0.2 s'}"
            f" of speech (confidence {al.confidence:.2f})"
        )
        if al.warp_samples is None:
            found["stimulus_warp_ms"] = None
            t.notes.append(
                "the ref's copy of the stimulus is not the file's (audio lost, concealed or "
                "stretched on the way) and its start was not found, so how much went missing "
                f"is not known: the speech end {how_placed}"
            )
        else:
            warp_ms = al.warp_samples / fs * 1000
            found["stimulus_warp_ms"] = warp_ms
            how = "less" if warp_ms < 0 else "more"
            t.notes.append(
                f"the ref holds {abs(warp_ms):.1f} ms {how} of the stimulus than the file "
                f"before its speech end (audio lost, concealed or stretched on the way): the "
                f"speech end {how_placed}"
            )
    if clipped(t.ref):
        t.notes.append("ref channel clips: alignment still valid, but turn the mouth level down")


def _remove_mouth(t: TurnState) -> None:
    """Step 2: the ear's clock drift (from the mouth's leakage, when the ear hears the
    mouth) undone where that removes more of it, and the leakage removed (`t.residual`)."""
    fs, opt, ref = t.fs, t.opt, t.ref
    t.fit_lo = fit_lo = int(t.stim_lag + t.stim_first)
    t.fit_hi = fit_hi = reply_free_until(t.ear, int(t.speech_end), fs)
    ear = t.ear
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
            t.found["ear_drift_ppm"] = drift.drift_ppm
            corrected = correct_drift(ear, drift.drift_ppm)
            fixed, fixed_leak = remove_leakage(
                corrected, ref, (fit_lo, fit_hi), fs, response_s=opt.leakage_response_s
            )
            # A real drift smears the fitted response, so undoing it removes more leakage;
            # a drift that is only the fit's noise (25-35 ppm at 3 sigma, seen) removes less,
            # and the residue it leaves hides the reply's onset: then it is not applied.
            if fixed_leak.reduction_db >= leak.reduction_db - 0.5:
                ear, residual, leak = corrected, fixed, fixed_leak
                t.notes.append(f"ear clock drift {drift.drift_ppm:+.1f} ppm vs ref corrected")
            else:
                t.notes.append(
                    f"ear clock drift {drift.drift_ppm:+.1f} ppm vs ref found but not corrected: "
                    f"undoing it removed less of the mouth's leakage "
                    f"({fixed_leak.reduction_db:.1f} dB, not {leak.reduction_db:.1f} dB)"
                )
        elif drift is not None and abs(drift.drift_ppm) > 3 * drift.stderr_ppm:
            t.found["ear_drift_ppm"] = drift.drift_ppm
    t.ear, t.residual, t.leak = ear, residual, leak
    t.found["leakage_reduction_db"] = leak.reduction_db


def _find_sound(t: TurnState, barge_in: np.ndarray | None, barge_in_rate_hz: int | None) -> None:
    """Step 3: the sound in the leakage-free ear: what is context (before the user's speech
    ended), what is the reply, the barge-in's blind stop, and the reply's level and SNR."""
    fs, opt, found, notes = t.fs, t.opt, t.found, t.notes
    assert t.residual is not None and t.leak is not None
    if barge_in is not None:
        found_clip = locate_clip(barge_in, barge_in_rate_hz or fs, fs, t.ref, t.stim_lag)
        if isinstance(found_clip, str):
            notes.append(found_clip)
        else:
            t.clip_at = found_clip
            found["barge_in_onset_s"] = found_clip.onset / fs
    if t.leak.reduction_db > 0:
        spans = [t.clip_at.span] if t.clip_at is not None else []
        t.profile = leakage_floor(t.residual, t.leak, t.fit_lo, t.fit_hi, fs, ref=t.ref, also=spans)
    noise_region = (0, int(t.stim_lag + t.stim_first) - int(0.02 * fs))
    # The lead-in before the stimulus holds only noise (the mouth has not played, the DUT
    # has nothing to answer yet), less whatever the DUT said before (a greeting, an earcon,
    # its previous reply): the best place to learn what the noise looks like.
    t.act = act = detect_activity(
        t.residual,
        fs,
        min_gap_s=opt.min_gap_s,
        floor_profile=t.profile,
        noise_region=noise_region,
    )
    t.noise_spans = list(act.noise_spans)
    if not t.noise_spans and not act.lead_context:
        t.noise_spans = [noise_region]
    if act.lead_context:
        quiet_s = sum(b - a for a, b in act.noise_spans) / fs
        notes.append(
            f"sound at the ear before the stimulus ({len(act.lead_context)} stretch(es), the "
            f"last ending at {t.at(act.lead_context[-1][1])}): the DUT's own "
            "(a greeting, an earcon, an earlier reply), left out of the noise floor"
            + (
                f" ({quiet_s:.2f} s of quiet left to learn the noise from)"
                if t.noise_spans
                else "; too little quiet left, the noise floor is the capture's quietest frames"
            )
        )
    if t.clip_at is not None:
        # Timed from the segments alone, so they stand even if the TTFA is discarded.
        _blind_barge_in(t)
    speech_end = t.speech_end
    t.early = early = [
        s
        for s in act.segments
        if s.start < speech_end and s.end > speech_end + opt.early_reply_s * fs
    ]
    found["context_segments"] = [
        [s.start / fs, s.end / fs]
        for s in act.segments
        if s.start < speech_end and not (early and s.start >= early[0].start)
    ]
    # The agent talking over the user is a reply too: it starts where that sound started.
    t.reply_segs = reply_segs = [
        s for s in act.segments if s.start >= (early[0].start if early else speech_end)
    ]
    if reply_segs and clipped(t.ear[int(reply_segs[0].start) : int(reply_segs[-1].end)]):
        raise Refused(Discard.CLIPPED, "the ear channel clips during the reply; lower the gain")
    if reply_segs:
        y = act.band
        t.seg_power = float(
            np.mean([np.mean(y[int(s.start) : int(s.end)] ** 2) for s in reply_segs[:3]])
        )
        # SNR against the noise's loud moments when a noise-only lead-in showed them
        # (babble is 8 dB louder at its peaks than on average), else against its mean.
        floor = act.floor
        noise_power = floor.ceiling if floor.ceiling is not None else floor.power
        found["snr_db"] = 10 * math.log10(t.seg_power / max(noise_power, 1e-20))
        t.level_dbfs = 10 * math.log10(max(t.seg_power, 1e-20))
        found.update(
            segments=[[s.start / fs, s.end / fs] for s in reply_segs],
            gaps_ms=[(b.start - a.end) / fs * 1000 for a, b in itertools.pairwise(reply_segs)],
            reply_end_s=reply_segs[-1].end / fs,
        )


def _blind_barge_in(t: TurnState) -> None:
    """Stop latency and residual audio from the ear's segments (or why not)."""
    assert t.act is not None and t.clip_at is not None and t.residual is not None
    act, opt, fs = t.act, t.opt, t.fs
    residue_at = None
    if t.profile is not None and t.leak is not None:
        # The interruption's residue on its own, net of the noise (the detection floor,
        # `t.profile`, keeps the noise in: there it is the floor).
        residue_at = leakage_floor(
            t.residual,
            t.leak,
            t.fit_lo,
            t.fit_hi,
            fs,
            ref=t.ref,
            also=[t.clip_at.span],
            net_of_power=noise_level(act.band, t.noise_spans, fs),
        )

    got = blind_stop(
        t.clip_at,
        act.segments,
        act.band,
        fs,
        stop_silence_s=opt.stop_silence_s,
        dry_path=opt.dry_path,
        residue_at=residue_at,
    )
    if got.ring_down_ms is not None:
        t.found["ring_down_ms"] = got.ring_down_ms
    if got.note:
        t.notes.append(got.note)
        t.found["stop_refused"] = got.note
    if got.stop is not None:
        t.found["stop_latency_ms"] = (got.stop - t.clip_at.onset) / fs * 1000
        t.found["residual_ms"] = residual_after(
            act.segments, got.stop, t.clip_at, opt.min_response_s, fs
        )


def _after_onset(t: TurnState, onset: float) -> None:
    """Step 5: what follows from the onset: an overlap with the user's speech, and where
    the answer itself starts after a filler."""
    fs, opt, found = t.fs, t.opt, t.found
    assert t.act is not None and t.residual is not None
    speech_end = t.speech_end
    if onset < speech_end:
        found["overlap_ms"] = (speech_end - onset) / fs * 1000
        t.notes.append(
            f"the agent talked over the user: its reply started {found['overlap_ms']:.0f} ms "
            "before the user's speech ended (a negative TTFA)"
        )
    y = t.act.band
    segs_s = [list(sg) for sg in found["segments"]]
    if len(segs_s) >= 2 and not opt.dry_path:
        # In a room the first stretch's ring fills part of the pause after it: the pause
        # the DUT made starts where its direct sound stopped.
        ring = ring_down(y, int(segs_s[0][0] * fs), int(segs_s[0][1] * fs), fs)
        if ring is not None:
            ring_ms, direct_end = ring
            segs_s[0][1] = (
                direct_end / fs if direct_end is not None else segs_s[0][1] - ring_ms / 1000
            )
    barge_onset = t.clip_at.onset if t.clip_at is not None else None
    content = content_segment(
        segs_s,
        onset / fs,
        barge_onset,
        fs,
        filler_max_s=opt.filler_max_s,
        filler_gap_s=opt.filler_gap_s,
    )
    if content is None:
        found["ttfa_content_ms"] = (onset - speech_end) / fs * 1000
    else:
        c_seg = Segment(content[0] * fs, content[1] * fs)
        c_onset, _ = blind_onset(
            t.residual, [c_seg], t.noise_spans, fs, found.get("snr_db") or 0, y
        )
        found["content_onset_s"] = c_onset / fs
        found["ttfa_content_ms"] = (c_onset - speech_end) / fs * 1000
