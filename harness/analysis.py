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

import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.signal as ss

from harness.errors import InputError
from harness.signal.activity import Segment, detect_activity, frame_power, speech_band
from harness.signal.bands import band_weights, filterbank, refine_boundary
from harness.signal.correlate import locate, refine_lag
from harness.signal.drift import correct_drift, fit_drift
from harness.signal.leakage import LeakageFit, remove_leakage

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


@dataclass(frozen=True)
class TurnMetrics:
    """What one turn measured. Times are seconds in the capture's timeline (ref clock).

    ttfa_ms: labelled end of user speech at the mouth -> first acoustic event of the reply at
        the ear; None when discarded.
    confidence: 0..1, how much to trust ttfa_ms (see docs/measurement.md).
    segments: spoken stretches of the reply [[start_s, end_s], ...]; gaps_ms between them.
    discard: None, or a reason starting with one of the module's discard words.
    barge_in_onset_s / stop_latency_ms / residual_ms: present when a barge-in clip was given.
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
    notes: list[str] = field(default_factory=list)

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


def _first_sound(x: np.ndarray, rel_db: float = -50.0) -> int:
    """Index of the first sample within `rel_db` of the peak (the onset of a clean recording).

    -50 dB sits above 16-bit dither and TTS hiss and below any speech sound.
    """
    a = np.abs(x)
    peak = float(a.max()) if a.size else 0.0
    if peak <= 0:
        return 0
    idx = np.flatnonzero(a >= peak * 10 ** (rel_db / 20))
    return int(idx[0]) if idx.size else 0


def _clipped(x: np.ndarray, level: float = 0.999, run: int = 3) -> bool:
    """True when `run` or more consecutive samples sit at full scale."""
    hot = np.abs(x) >= level
    if hot.sum() < run:
        return False
    # Length of the longest run of hot samples.
    d = np.diff(np.concatenate(([0], hot.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return bool(np.max(ends - starts) >= run)


def _resample(x: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    g = math.gcd(int(from_hz), int(to_hz))
    return ss.resample_poly(x, to_hz // g, from_hz // g)


def _mono(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x if x.ndim == 1 else x.mean(axis=1)


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
    speech_end_s: float | None = None,
    ref_channel: int = 0,
    ear_channel: int = 1,
    reply_reference: np.ndarray | None = None,
    reply_reference_rate_hz: int | None = None,
    barge_in: np.ndarray | None = None,
    barge_in_rate_hz: int | None = None,
    options: AnalysisOptions | None = None,
) -> TurnMetrics:
    """Measure one turn. `capture` is (samples, channels) float in [-1, 1].

    `speech_end_s` is in seconds of the stimulus (its labelled end of speech); None detects
    it from the stimulus. Other audio at a different rate is resampled (noted in `notes`).
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

    # 1. Where did the stimulus play? (ref channel, normalised correlation)
    m = locate(ref, stim, fs)
    base["stimulus_confidence"] = m.confidence
    if m.confidence < 0.5:
        return _discarded(
            base,
            f"{LOW_CONFIDENCE}: stimulus not found in ref channel {ref_channel} "
            f"(peak {m.peak:.2f}, sidelobe {m.sidelobe:.2f}; need a clear peak)",
        )
    stim_lag = refine_lag(ref, stim, m.lag_samples)
    stim_first = _first_sound(stim)
    speech_end = stim_lag + speech_end_s * fs
    base["stimulus_onset_s"] = (stim_lag + stim_first) / fs
    base["speech_end_s"] = speech_end / fs
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
            ear = correct_drift(ear, drift.drift_ppm)
            notes.append(f"ear clock drift {drift.drift_ppm:+.1f} ppm vs ref corrected")
            residual, leak = remove_leakage(
                ear, ref, (fit_lo, fit_hi), fs, response_s=opt.leakage_response_s
            )
        elif drift is not None and abs(drift.drift_ppm) > 3 * drift.stderr_ppm:
            base["ear_drift_ppm"] = drift.drift_ppm
    base["leakage_reduction_db"] = leak.reduction_db

    # 3. The reply: activity in the leakage-free ear.
    profile = _leakage_floor(residual, leak, fit_lo, fit_hi, fs) if leak.reduction_db > 0 else None
    noise_region = (0, int(stim_lag + stim_first) - int(0.02 * fs))
    # The lead-in before the stimulus holds only noise (the mouth has not played, the DUT
    # has nothing to answer yet): the best place to learn what the noise looks like.
    act = detect_activity(
        residual,
        fs,
        min_gap_s=opt.min_gap_s,
        floor_profile=profile,
        noise_region=noise_region,
    )
    y = act.band
    if barge_in is not None:
        # Timed from the segments alone, so they stand even if the TTFA is discarded.
        barge = _barge_in(barge_in, barge_in_rate_hz or fs, fs, ref, act.segments, stim_lag, opt, y)
        if "note" in barge:
            notes.append(barge.pop("note"))
        base.update(barge)
    floor = act.floor
    early = [
        s
        for s in act.segments
        if s.start < speech_end and s.end > speech_end + opt.early_reply_s * fs
    ]
    reply_segs = [s for s in act.segments if s.start >= speech_end]
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
        found = _locate_reply(residual, rr, fs, int(speech_end - opt.early_reply_s * fs), base)
        if isinstance(found, str):
            return _discarded(base, found)
        onset, confidence = found
        base["mode"] = "reply-reference"
        if onset < speech_end:
            return _discarded(
                base,
                f"{EARLY_REPLY}: the reply reference starts at {onset / fs:.4f} s, before the "
                f"user's speech ended at {speech_end / fs:.4f} s",
            )
        segs = base.setdefault("segments", [])
        # Blind segments that start before the located onset are not the reply.
        segs[:] = [sg for sg in segs if sg[1] > onset / fs]
        if segs:
            segs[0][0] = onset / fs
        else:
            segs.append([onset / fs, (onset + len(rr) - _first_sound(rr)) / fs])
            base["reply_end_s"] = segs[-1][1]
    else:
        if early:
            s = early[0]
            return _discarded(
                base,
                f"{EARLY_REPLY}: sound at the ear from {s.start / fs:.3f} s, before the user's "
                f"speech ended at {speech_end / fs:.3f} s, lasting "
                f"{(s.end - speech_end) / fs * 1000:.0f} ms past it "
                "(the agent talked over the user)",
                segments=[[s.start / fs, s.end / fs]],
            )
        if not reply_segs:
            return _discarded(
                base,
                f"{NO_REPLY}: no sound at the ear after the user's speech ended at "
                f"{speech_end / fs:.3f} s (noise floor {floor.level_db:.1f} dBFS)",
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
        onset, confidence = _blind_onset(residual, reply_segs, noise_region, fs, onset_snr_db, y)
        base["segments"][0][0] = onset / fs  # one onset: the refined one
        if confidence < opt.min_confidence:
            return _discarded(
                base,
                f"{LOW_CONFIDENCE}: reply onset at {onset / fs:.3f} s is not sharp enough to "
                f"time (confidence {confidence:.2f} < {opt.min_confidence:.2f}, "
                f"SNR {snr_db:.1f} dB)",
            )

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


def _decay_db_per_s(h: np.ndarray, fs: int) -> float | None:
    """Energy decay rate of a room response (Schroeder integral, -5..-25 dB), None if unclear."""
    if h.size < 16:
        return None
    edc = np.cumsum((h**2)[::-1])[::-1]
    edc_db = 10 * np.log10(np.maximum(edc / (edc[0] + 1e-30), 1e-12))
    sel = (edc_db <= -5) & (edc_db >= -25)
    if sel.sum() < 8:
        return None
    t = np.arange(len(edc_db)) / fs
    slope = float(np.polyfit(t[sel], edc_db[sel], 1)[0])
    return float(np.clip(-slope, 30.0, 1000.0)) if slope < 0 else None


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
    residual: np.ndarray, leak: LeakageFit, fit_lo: int, fit_hi: int, fs: int
) -> Callable[[np.ndarray], np.ndarray]:
    """Power below which ear sound is taken for the leakage's residue, per sample index.

    Up to the end of the fit region it is the residual's loud level there (90th percentile
    of 10 ms frames, in the speech band); after that it decays at the room's rate (from the
    fitted late response, else 200 dB/s), so the room ringing down is not mistaken for an
    early reply. Returned as a function so it is only evaluated where it is needed.
    """
    band = speech_band(residual[fit_lo:fit_hi], fs)
    p = frame_power(band, int(0.01 * fs), int(0.0025 * fs))
    level = float(np.quantile(p, 0.9)) if p.size else 0.0
    rate = _decay_db_per_s(leak.late_response, leak.late_rate_hz) or 200.0

    def profile(index: np.ndarray) -> np.ndarray:
        t = np.maximum(index - fit_hi, 0) / fs
        out = level * 10 ** (-rate * t / 10)
        out[index < fit_lo] = 0.0
        return out

    return profile


def _blind_onset(
    residual: np.ndarray,
    reply_segs: list[Segment],
    noise_region: tuple[int, int],
    fs: int,
    snr_db: float,
    band: np.ndarray,
) -> tuple[float, float]:
    """(onset in samples, confidence) of the first reply segment, refined in noise.

    With a noise-only lead-in, the onset is re-timed on the SNR-weighted filterbank
    statistic (harness.signal.bands), which sees a soft onset through noise that
    broadband energy misses; without one, the broadband refinement stands.
    """
    first = reply_segs[0]
    regions = [(int(s.start), int(min(s.end, s.start + fs))) for s in reply_segs[:3]]
    fb = filterbank(fs)
    bw = band_weights(residual, fb, noise_region, regions)
    if bw is None:
        return first.start, _onset_confidence(band, int(first.start), fs, snr_db)
    onset, contrast = refine_boundary(residual, int(first.start), fb, bw, search_before_s=0.1)
    return onset, _blind_confidence(contrast, snr_db)


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


def _ring_down(
    band: np.ndarray, start: int, end: int, fs: int
) -> tuple[float, float | None] | None:
    """(ring-down length in ms, where the direct sound stopped or None) before `end`.

    A reply cut off in a dry path stops within a few ms. In a reverberant room the sound
    keeps falling along a roughly straight line in dB after the cut. Going back from `end`
    over 5 ms frames, the longest stretch that fits a line (RMS misfit under 4 dB, falling
    30-1000 dB/s, by at least 15 dB, at least 60 ms) is the ring-down; None when there is
    none (the sound simply stops). The direct sound stopped where that stretch starts, if
    the level just before it stands at least 6 dB above the line (the direct sound dropping
    out); otherwise the cut cannot be placed and the second value is None.
    """
    hop, frame = max(1, int(0.0025 * fs)), max(1, int(0.005 * fs))
    lo = max(start, end - int(0.4 * fs))
    p = frame_power(band[lo:end], frame, hop)
    n_min = int(0.06 * fs / hop)
    if p.size < n_min + 8:
        return None
    level = 10 * np.log10(np.maximum(p, 1e-14))
    # The segment's refined end lies where the decay meets the noise: leave out the last
    # frames within 6 dB of the quietest, which are floor, not decay.
    loud = np.flatnonzero(level > level.min() + 6.0)
    if loud.size == 0:
        return None
    level = level[: int(loud[-1]) + 1]
    if level.size < n_min + 8:
        return None
    t = np.arange(len(level)) * hop / fs
    longest = line = None
    for n in range(n_min, len(level) - 3):
        tt, yy = t[-n:], level[-n:]
        slope, icpt = np.polyfit(tt, yy, 1)
        misfit = float(np.sqrt(np.mean((yy - (slope * tt + icpt)) ** 2)))
        fits = misfit < 4.0 and -1000 <= slope <= -30
        if fits:
            longest, line = n, (slope, icpt)
        elif longest is not None and misfit > 5.0:
            break
        elif longest is None and n > n_min + 8:
            return None
    if longest is None or line is None or -line[0] * (longest - 1) * hop / fs < 15.0:
        return None
    ms = longest * hop / fs * 1000
    k = len(level) - longest
    before = level[max(0, k - 3) : k]
    expected = line[0] * t[max(0, k - 3) : k] + line[1]
    if before.size and float(np.mean(before - expected)) >= 6.0:
        return ms, float(lo + k * hop + frame // 2)
    return ms, None


def _barge_in(
    clip: np.ndarray,
    clip_rate: int,
    fs: int,
    ref: np.ndarray,
    segments: tuple[Segment, ...],
    stim_lag: float,
    opt: AnalysisOptions,
    band: np.ndarray,
) -> dict:
    """Barge-in onset at the mouth, stop latency and residual audio at the ear.

    `band` is the leakage-free ear in the speech band (for the end of the direct sound).
    """
    clip = _mono(clip)
    if clip_rate != fs:
        clip = _resample(clip, clip_rate, fs)
    if not np.any(clip):
        raise InputError("the barge-in clip holds no sound")
    # A clean recording: its speech starts at its first sample within 50 dB of the peak
    # (the same rule as for a reply reference) and ends at its last.
    clip_start = _first_sound(clip, -50.0)
    clip_end = len(clip) - _first_sound(clip[::-1], -50.0)
    m = locate(ref, clip, fs, search=(int(stim_lag) + 1, len(ref)))
    if m.confidence < 0.5:
        return {
            "note": f"barge-in clip not found in the ref channel (peak {m.peak:.2f}, "
            f"sidelobe {m.sidelobe:.2f}): no stop latency"
        }
    lag = refine_lag(ref, clip, m.lag_samples)
    onset = lag + clip_start
    user_done = lag + clip_end
    out: dict = {"barge_in_onset_s": onset / fs}
    # The interrupted reply: segments from the one playing at (or first after) the onset,
    # chained while the silences between them stay shorter than stop_silence.
    active = [s for s in segments if s.end > onset]
    if not active or active[0].start > onset + opt.stop_silence_s * fs:
        out["note"] = "the reply was already quiet when the barge-in started: no stop latency"
        return out
    stop = active[0].end
    for s in active[1:]:
        if s.start - stop < opt.stop_silence_s * fs:
            stop = max(stop, s.end)
        else:
            break
    ring = None if opt.dry_path else _ring_down(band, int(onset), int(stop), fs)
    if ring is not None:
        ring_ms, direct_end = ring
        if direct_end is None:
            # The end of what is audible is the room's, not the agent's, and where the agent
            # stopped inside the ring-down cannot be placed: refuse rather than guess.
            out["note"] = (
                f"stop latency not measured: the ear rings down for {ring_ms:.0f} ms before it "
                "goes quiet (a reverberant room, or a fade-out); move the ear mic closer to "
                "the DUT's speaker or damp the room"
            )
            return out
        out["note"] = (
            f"the room rang for {(stop - direct_end) / fs * 1000:.0f} ms after the reply "
            "stopped: stop latency is timed at the end of the direct sound"
        )
        stop = direct_end
    out["stop_latency_ms"] = (stop - onset) / fs * 1000
    window_end = user_done + opt.min_response_s * fs
    residual = sum(
        max(0.0, min(s.end, window_end) - max(s.start, stop)) for s in segments if s.start >= stop
    )
    out["residual_ms"] = residual / fs * 1000
    return out
