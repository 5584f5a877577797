"""Remove what the ear heard of the mouth (stimulus leakage) before looking for the reply.

On an acoustic rig the measurement mic at the DUT's speaker also hears the harness's own
speaker playing the user's voice. The ref channel holds exactly what was played, on the same
sample clock, so the leakage is ref filtered by an unknown room response. We fit that
response as a least-squares FIR over a stretch where only the mouth was active (the user's
speech, before the reply can have started) and subtract ref filtered by it everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft
import scipy.linalg as sl
import scipy.signal as ss

# Leakage below this level relative to the ear's energy in the fit region is not worth fitting.
_MIN_GAIN_DB = 3.0


@dataclass(frozen=True)
class LeakageFit:
    """The fitted mouth->ear response and what subtracting it did.

    response: FIR taps (1-D), tap 0 at lag -pre_samples.
    pre_samples: taps before zero lag (the ref may lead or lag the acoustic path slightly).
    reduction_db: ear energy over residual energy in the fit region (0 when nothing was removed).
    leakage_db: leakage energy relative to the ear's energy in the fit region (how strong it was).
    late_response: the stage-2 FIR (late reverberation) at late_rate_hz, empty if not used.
    late_rate_hz: its sample rate.
    """

    response: np.ndarray
    pre_samples: int
    reduction_db: float
    leakage_db: float
    late_response: np.ndarray = field(default_factory=lambda: np.zeros(0))
    late_rate_hz: int = 0


def _xcorr_lags(a: np.ndarray, b: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """sum_n a[n] * b[n - k] for k in lo..hi-1 (zero outside the arrays)."""
    n = sfft.next_fast_len(len(a) + len(b) + (hi - lo), real=True)
    spec = sfft.rfft(a, n, workers=-1) * np.conj(sfft.rfft(b, n, workers=-1))
    full = sfft.irfft(spec, n, workers=-1)
    ks = np.arange(lo, hi)
    return full[ks % n]


def fit_leakage(
    ear: np.ndarray,
    ref: np.ndarray,
    fit_region: tuple[int, int],
    *,
    taps: int,
    pre_samples: int = 16,
) -> np.ndarray | None:
    """Least-squares FIR h (length `taps`) with ear ~= h * ref over `fit_region` [lo, hi).

    Solves the Toeplitz normal equations (autocorrelation of ref, cross-correlation with ear)
    with a little diagonal loading. Returns None when ref is silent in the region.
    """
    lo, hi = fit_region
    r = np.asarray(ref[lo:hi], dtype=np.float64)
    e = np.asarray(ear[lo:hi], dtype=np.float64)
    energy = float(np.dot(r, r))
    e_energy = float(np.dot(e, e))
    # An ear in digital silence (a loopback DUT that sends zeros while it listens) has
    # nothing to fit; without this the test below reads 0 < 0 and the solve runs for nothing.
    if energy <= 1e-12 or e_energy <= 1e-20 or hi - lo < 4 * taps:
        return None
    auto = _xcorr_lags(r, r, 0, taps)
    cross = _xcorr_lags(e, r, -pre_samples, taps - pre_samples)
    # No lag where the ear correlates with the mouth by even 0.03 (-30 dB): nothing to fit,
    # and the solve is the costliest step of a turn's analysis.
    if float(np.max(cross**2)) < 1e-3 * energy * e_energy:
        return None
    auto = auto.copy()
    auto[0] *= 1.0 + 1e-4
    try:
        return sl.solve_toeplitz(auto, cross)
    except (np.linalg.LinAlgError, ValueError):
        return None


def _active_extent(ref: np.ndarray) -> tuple[int, int]:
    """[first, last] sample of ref within 80 dB of its peak (where anything was played)."""
    if ref.size == 0:
        return (0, 0)
    a = np.abs(ref)
    mask = a > a.max() * 1e-4
    if not mask.any():
        return (0, 0)
    return int(np.argmax(mask)), len(mask) - int(np.argmax(mask[::-1]))


def _predict(
    ref: np.ndarray, h: np.ndarray, pre_samples: int, length: int, extent: tuple[int, int]
) -> np.ndarray:
    """ref filtered by h (tap 0 at lag -pre_samples), `length` samples long.

    Only the stretch where ref holds sound (plus the filter's length) is filtered: the rest
    of a long capture predicts no leakage at all, and costs nothing.
    """
    out = np.zeros(length)
    first, last = extent
    if last <= first:
        return out
    lo = max(0, first - len(h))
    seg = ss.oaconvolve(np.asarray(ref[lo:last], dtype=np.float64), h)
    # seg[k] is the prediction for sample lo + k - pre_samples.
    start = lo - pre_samples
    a, b = max(0, start), min(length, start + len(seg))
    if b > a:
        out[a:b] = seg[a - start : b - start]
    return out


def remove_leakage(
    ear: np.ndarray,
    ref: np.ndarray,
    fit_region: tuple[int, int],
    sample_rate_hz: int,
    *,
    response_s: float = 0.08,
    late_response_s: float = 0.3,
    late_rate_hz: int = 16000,
    pre_samples: int = 16,
) -> tuple[np.ndarray, LeakageFit]:
    """Return (ear minus fitted leakage, the fit). Both channels 1-D on one sample clock.

    Two stages, because a reverberant room answers for longer than a full-rate FIR can
    afford: a `response_s` FIR at the full rate (direct sound and early reflections), then a
    `late_response_s` FIR fitted at `late_rate_hz` on what is left (the late reverberation,
    which would otherwise linger after the user stops and pass for an early reply).
    When the fit removes less than 3 dB in its own region there is no leakage worth
    removing, and the ear is returned unchanged (subtracting a fit of noise adds noise).
    """
    fs = sample_rate_hz
    taps = max(32, int(response_s * fs))
    lo, hi = fit_region
    lo, hi = max(0, lo), min(len(ear), hi)
    # Short fit regions get a shorter filter rather than no fit at all.
    taps = min(taps, max(32, (hi - lo) // 4))
    h = fit_leakage(ear, ref, (lo, hi), taps=taps, pre_samples=pre_samples)
    ear64 = np.asarray(ear, dtype=np.float64)
    if h is None:
        return ear64, LeakageFit(np.zeros(0), pre_samples, 0.0, -np.inf)
    extent = _active_extent(ref)
    predicted = _predict(ref, h, pre_samples, len(ear64), extent)
    seg_ear = ear64[lo:hi]
    e_ear = float(np.dot(seg_ear, seg_ear)) + 1e-30
    e_pred = float(np.dot(predicted[lo:hi], predicted[lo:hi])) + 1e-30
    residual = ear64 - predicted
    e_res = float(np.dot(residual[lo:hi], residual[lo:hi])) + 1e-30
    reduction_db = 10 * np.log10(e_ear / e_res)
    leakage_db = 10 * np.log10(e_pred / e_ear)
    if reduction_db < _MIN_GAIN_DB:
        return ear64, LeakageFit(h, pre_samples, 0.0, leakage_db)

    q = fs // late_rate_hz if fs % late_rate_hz == 0 else 1
    # A long FIR fitted on little data fits the data, not the room: keep it to a sixth of
    # the fit region.
    late_taps = min(int(late_response_s * fs / q), (hi - lo) // q // 6)
    h2_used = np.zeros(0)
    if late_response_s > response_s and late_taps > taps // q:
        # Stage 2 at the lower rate, on the stage-1 residual. The decimated ref includes
        # everything played (barge-in clips too), so the prediction covers them as well.
        # Work on the stretch where the mouth played (plus the late response) only.
        first, last = extent
        w_lo = (max(0, min(first, lo) - late_taps * q) // q) * q
        w_hi = min(len(ear64), max(last, hi) + late_taps * q)
        ref_d = ss.resample_poly(ref[w_lo:w_hi], 1, q) if q > 1 else ref[w_lo:w_hi]
        res_d = ss.resample_poly(residual[w_lo:w_hi], 1, q) if q > 1 else residual[w_lo:w_hi]
        span = ((lo - w_lo) // q, (hi - w_lo) // q)
        h2 = fit_leakage(res_d, ref_d, span, taps=late_taps, pre_samples=0)
        if h2 is not None:
            late_d = _predict(ref_d, h2, 0, len(res_d), (0, len(ref_d)))
            late_w = ss.resample_poly(late_d, q, 1) if q > 1 else late_d
            late = np.zeros(len(ear64))
            n = min(len(late_w), w_hi - w_lo)
            late[w_lo : w_lo + n] = late_w[:n]
            candidate = residual - late
            e_cand = float(np.dot(candidate[lo:hi], candidate[lo:hi])) + 1e-30
            if e_cand < e_res * 10 ** (-1 / 10):  # keep it only if it helps (>= 1 dB)
                residual, e_res = candidate, e_cand
                reduction_db = 10 * np.log10(e_ear / e_res)
                h2_used = h2
    return residual, LeakageFit(h, pre_samples, reduction_db, leakage_db, h2_used, fs // q)
