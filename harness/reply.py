"""Finding the reply in the leakage-free ear: the floor the mouth's residue sets, blind
onsets (refined on the SNR-weighted filterbank), the DUT's own reference located by
correlation, and where the answer starts after a filler. The analysis' steps call these
(harness.analysis); docs/measurement.md says what each does and why.

Pure numpy/scipy on one capture's arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harness.signal.activity import Segment, frame_power, speech_band
from harness.signal.bands import band_weights, filterbank, refine_boundary
from harness.signal.correlate import locate, refine_lag
from harness.signal.decay import decay_db_per_s
from harness.signal.drift import fit_drift
from harness.signal.leakage import LeakageFit, remove_leakage
from harness.signal.resample import first_sound


def content_segment(
    segments: list[list[float]],
    onset_s: float,
    barge_onset: float | None,
    fs: int,
    *,
    filler_max_s: float,
    filler_gap_s: float,
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
    if first[1] - onset_s > filler_max_s or second[0] - first[1] < filler_gap_s:
        return None
    if barge_onset is not None and second[0] * fs >= barge_onset:
        return None
    return second


def leakage_floor(
    residual: np.ndarray,
    leak: LeakageFit,
    fit_lo: int,
    fit_hi: int,
    fs: int,
    *,
    ref: np.ndarray,
    also: list[tuple[int, int]],
    net_of_power: float = 0.0,
) -> Callable[[np.ndarray], np.ndarray]:
    """Power below which ear sound is taken for the leakage's residue, per sample index.

    Up to the end of the fit region it is the residual's loud level there (90th percentile
    of 10 ms frames, in the speech band); after that it decays at the room's rate (from the
    fitted late response, else 200 dB/s), so the room ringing down is not mistaken for an
    early reply. The mouth's later sound (`also`: the barge-in clip's span) leaves a residue
    of the same proportion to its level at the ref, which rings down after it the same way.
    Returned as a function so it is only evaluated where it is needed.

    `net_of_power`: the same statistic of the noise alone, taken off the level: the residue
    without the noise (where the noise, not the leakage, limits the fit, the level is the
    noise's, and scaled by a loud interruption it would be a "residue" far above the true
    one).
    """
    band = speech_band(residual[fit_lo:fit_hi], fs)
    p = frame_power(band, int(0.01 * fs), int(0.0025 * fs))
    level = float(np.quantile(p, 0.9)) if p.size else 0.0
    level = max(level - net_of_power, 0.0)
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


def noise_level(band: np.ndarray, spans: list[tuple[int, int]], fs: int) -> float:
    """The 90th percentile power of 10 ms frames of `band` (the speech band) inside `spans`
    (stretches that hold only noise): `leakage_floor`'s statistic, of the noise alone; 0
    without spans."""
    frames = [frame_power(band[a:b], int(0.01 * fs), int(0.0025 * fs)) for a, b in spans if b > a]
    p = np.concatenate(frames) if frames else np.zeros(0)
    return float(np.quantile(p, 0.9)) if p.size else 0.0


ONSET_VETO_DB = 6.0
"""A refined onset whose contrast (the 20 ms after it over the 40 ms before) is below this
is not the start of a reply (docs/measurement.md)."""


def blind_onset(
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
        return first.start, onset_confidence(band, int(first.start), fs, snr_db)
    onset, contrast = refine_boundary(residual, int(first.start), fb, bw, search_before_s=0.1)
    if contrast < ONSET_VETO_DB:
        # So little contrast is a bump in what precedes the reply (the noise, what the room
        # still rings with), not its start: the broadband edge stands, with its own
        # confidence (a tuning seed in RT60 0.4 s, leakage -10 dB, 42 dB SNR: the refined
        # onset was 23 ms early at 5 dB contrast, the broadband edge exact at 30 dB).
        return first.start, onset_confidence(band, int(first.start), fs, snr_db)
    return onset, blind_confidence(contrast, snr_db)


def hears_mouth(ear: np.ndarray, ref: np.ndarray, lo: int, hi: int, fs: int) -> bool:
    """Whether the ear hears the mouth in [lo, hi) (before the agent's own sound started):
    a leakage fit there that explains more than 1/1000 of the ear's energy. A stretch too
    short to tell (under 100 ms) counts as hearing it: the doubt goes to a refusal."""
    hi = hi - int(0.02 * fs)
    if hi - lo < int(0.1 * fs):
        return True
    _, fit = remove_leakage(ear, ref, (lo, hi), fs, response_s=0.02, late_response_s=0.0)
    return fit.leakage_db > -30.0


def rings_before(
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


def blind_confidence(contrast_db: float, snr_db: float) -> float:
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


def onset_confidence(y: np.ndarray, onset: int, fs: int, snr_db: float) -> float:
    """Blind confidence from the broadband band `y` (no noise-only lead-in to weight bands)."""
    after = y[onset + int(0.005 * fs) : onset + int(0.025 * fs)]
    before = y[max(0, onset - int(0.045 * fs)) : max(0, onset - int(0.005 * fs))]
    if after.size == 0:
        return 0.0
    p_after = float(np.mean(after**2))
    p_before = float(np.mean(before**2)) if before.size else 0.0
    contrast_db = 10 * math.log10(max(p_after, 1e-20) / max(p_before, p_after * 1e-6, 1e-20))
    return blind_confidence(contrast_db, snr_db)


@dataclass(frozen=True)
class ReplyAt:
    """Where the DUT's own reply audio sits in the ear: its first sample's position, the
    location's confidence, and the DUT's clock drift when its length let it be fitted."""

    onset: float
    confidence: float
    drift_ppm: float | None = None


def locate_reply(ear: np.ndarray, reply: np.ndarray, fs: int, search_from: int) -> ReplyAt | str:
    """Onset of the DUT's own reply audio in the (leakage-free) ear, sample-exact, or the
    detail of why it was not found (the reason is `low_confidence`)."""
    first = first_sound(reply)
    body = reply[first:]
    # Lock on with the first 3 s (enough to be unique, cheap), then fit drift over the rest.
    head = body[: 3 * fs]
    # Reflections arrive within tens of ms of the direct sound: they are not competitors.
    m = locate(ear, head, fs, search=(max(0, search_from), len(ear)), exclusion_s=0.05)
    if reply_confidence(m.psr_db) < 0.3 or m.peak < 0.1:
        return (
            f"reply reference not found in the ear channel (peak {m.peak:.2f}, sidelobe "
            f"{m.sidelobe:.2f}; need the peak 3.8 dB clear)"
        )
    lag = refine_lag(ear, head, m.lag_samples)
    drift = fit_drift(ear, body, lag, fs) if len(body) >= 1.2 * fs else None
    if drift is not None and drift.windows >= 3 and drift.residual_samples < 1.0:
        return ReplyAt(drift.lag_at_start, reply_confidence(m.psr_db), drift.drift_ppm)
    return ReplyAt(lag, reply_confidence(m.psr_db))


def reply_confidence(psr_db: float) -> float:
    """0..1 from the peak-to-sidelobe ratio of the reply's correlation: 2 dB -> 0, 8 dB -> 1.

    In a reverberant room the reply's normalised peak is low (0.3-0.5: most of what the mic
    hears is the room), but a peak that stands clear of every competitor is still exactly
    where the reply is; what makes a location doubtful is a competitor of similar height.
    """
    return float(np.clip((psr_db - 2.0) / 6.0, 0.0, 1.0))
