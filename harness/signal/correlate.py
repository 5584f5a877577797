"""Locate a known signal inside a longer one by normalised cross-correlation.

The answer carries its own evidence: the normalised peak height (1.0 = an exact scaled copy)
and the ratio of that peak to the strongest peak elsewhere, the way jack_iodelay and
OboeTester refuse to answer when the signal is poor.

All functions take 1-D float arrays and return values; no I/O, no clocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

# Above this many samples, search on a decimated copy first and refine at full rate.
_COARSE_MIN_SAMPLES = 200_000
_COARSE_FACTOR = 6
_COARSE_MIN_TEMPLATE_S = 0.1
# Main lobe exclusion when looking for the strongest competing peak.
_SIDELOBE_EXCLUSION_S = 0.004


@dataclass(frozen=True)
class Match:
    """Where a template sits in a signal.

    lag_samples: position of template sample 0 in the signal, sub-sample refined.
    peak: normalised correlation at the peak, 0..1 (1 = exact scaled copy, sign ignored).
    sidelobe: strongest normalised correlation outside the main lobe, 0..1.
    confidence: how much of the headroom above the sidelobe the peak takes,
        (peak - sidelobe) / (1 - sidelobe), 0..1. An exact copy scores 1 even when the signal
        is periodic (voiced speech correlates highly one pitch period away); a noisy or
        ambiguous match scores low. Below ~0.3 the position should not be trusted.
    """

    lag_samples: float
    peak: float
    sidelobe: float

    @property
    def confidence(self) -> float:
        return float(np.clip((self.peak - self.sidelobe) / max(1.0 - self.sidelobe, 1e-9), 0, 1))

    @property
    def psr_db(self) -> float:
        """Peak-to-sidelobe ratio in dB."""
        return float(20 * np.log10(max(self.peak, 1e-12) / max(self.sidelobe, 1e-12)))


def _xcorr_valid(signal: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Raw correlation c[k] = sum_n signal[k + n] * template[n] for k in 0..len(signal)-1.

    Lags where the template runs past the end of the signal see zeros there (partial overlap).
    """
    n = len(signal) + len(template) - 1
    nfft = sfft.next_fast_len(n, real=True)
    spec = sfft.rfft(signal, nfft, workers=-1) * np.conj(sfft.rfft(template, nfft, workers=-1))
    return sfft.irfft(spec, nfft, workers=-1)[: len(signal)]


def _normalised(signal: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Normalised correlation in [-1, 1] for every lag 0..len(signal)-1 (partial overlap at end)."""
    raw = _xcorr_valid(signal, template)
    m = len(template)
    # Energy of the signal under the template at each lag, and of the overlapping template part.
    sig_cum = np.concatenate(([0.0], np.cumsum(signal.astype(np.float64) ** 2)))
    k = np.arange(len(signal))
    end = np.minimum(k + m, len(signal))
    sig_energy = sig_cum[end] - sig_cum[k]
    tpl_cum = np.concatenate(([0.0], np.cumsum(template.astype(np.float64) ** 2)))
    tpl_energy = tpl_cum[end - k]
    # Near-silent windows (digital silence) would turn rounding noise into huge "peaks":
    # never normalise by less than a millionth of the loudest window's energy.
    sig_energy = np.maximum(sig_energy, 1e-6 * float(sig_energy.max()) + 1e-30)
    denom = np.sqrt(np.maximum(sig_energy * tpl_energy, 1e-30))
    out = raw / denom
    # Demand at least half of the template's energy to be inside the signal: a peak made from
    # a sliver of overlap is not a match.
    out[tpl_energy < 0.5 * tpl_cum[-1]] = 0.0
    return out


def _decimate(x: np.ndarray, q: int) -> np.ndarray:
    """x averaged over blocks of q samples: a crude but cheap anti-aliased decimation,
    good enough to find a correlation peak that the full-rate pass then pins down."""
    n = len(x) // q
    return x[: n * q].reshape(n, q).mean(axis=1)


def _refine_peak(corr: np.ndarray, k: int) -> float:
    """Sub-sample peak position by fitting a parabola through the three samples around k."""
    if k <= 0 or k >= len(corr) - 1:
        return float(k)
    y0, y1, y2 = corr[k - 1], corr[k], corr[k + 1]
    denom = y0 - 2 * y1 + y2
    if denom >= 0:  # not a local maximum of a concave shape
        return float(k)
    delta = 0.5 * (y0 - y2) / denom
    return float(k + np.clip(delta, -0.5, 0.5))


def _sidelobe(corr: np.ndarray, k: int, exclusion: int) -> float:
    lo, hi = max(0, k - exclusion), min(len(corr), k + exclusion + 1)
    outside = np.concatenate((np.abs(corr[:lo]), np.abs(corr[hi:])))
    return float(outside.max()) if outside.size else 0.0


def locate(
    signal: np.ndarray,
    template: np.ndarray,
    sample_rate_hz: int,
    *,
    search: tuple[int, int] | None = None,
    exclusion_s: float = _SIDELOBE_EXCLUSION_S,
) -> Match:
    """Find where `template` (1-D) occurs in `signal` (1-D), both at `sample_rate_hz`.

    `search` limits template start positions to [lo, hi) samples of `signal`. Long signals
    are searched on a decimated copy first, then refined at full rate around the coarse peak,
    so a 60 s capture costs a fraction of a second. The returned lag is sub-sample refined
    by parabolic interpolation of the normalised correlation. `exclusion_s` is the half-width
    of the main lobe left out when looking for the strongest competing peak: widen it when
    the signal went through a room, whose early reflections are echoes, not ambiguity.
    """
    signal = np.asarray(signal, dtype=np.float64)
    template = np.asarray(template, dtype=np.float64)
    if template.size == 0 or signal.size == 0:
        return Match(0.0, 0.0, 1.0)
    lo, hi = (
        (0, len(signal)) if search is None else (max(0, search[0]), min(len(signal), search[1]))
    )
    if hi <= lo:
        return Match(float(lo), 0.0, 1.0)
    exclusion = max(3, int(exclusion_s * sample_rate_hz))

    region_hi = min(len(signal), hi + len(template))
    region = signal[lo:region_hi]
    coarse_ok = (
        len(region) >= _COARSE_MIN_SAMPLES
        and sample_rate_hz >= 8000 * _COARSE_FACTOR // 2
        # A short template keeps too little after decimation to be found reliably.
        and len(template) >= _COARSE_MIN_TEMPLATE_S * sample_rate_hz
    )
    if coarse_ok:
        # Coarse pass at sample_rate/6 (8 kHz for 48 kHz), anti-aliased, then a full-rate
        # pass in a small window around the coarse peak.
        q = _COARSE_FACTOR
        coarse = _normalised(_decimate(region, q), _decimate(template, q))
        coarse = coarse[: max(1, (hi - lo) // q)]
        kc = int(np.argmax(np.abs(coarse)))
        coarse_peak = float(abs(coarse[kc]))
        sidelobe = _sidelobe(coarse, kc, max(2, exclusion // q))
        centre = lo + kc * q
        margin = 4 * q
        flo, fhi = max(lo, centre - margin), min(hi, centre + margin + 1)
        fine = _normalised(signal[flo : min(len(signal), fhi + len(template))], template)
        fine = fine[: fhi - flo]
        kf = int(np.argmax(np.abs(fine)))
        # The coarse pass keeps only what survives decimation (below ~4 kHz); if the peak
        # it found does not hold up at full rate, search the whole region at full rate.
        if abs(fine[kf]) >= 0.5 * coarse_peak or abs(fine[kf]) >= 0.9:
            sign = np.sign(fine[kf]) or 1.0
            lag = flo + _refine_peak(sign * fine, kf)
            return Match(lag, float(abs(fine[kf])), sidelobe)

    corr = _normalised(region, template)[: hi - lo]
    k = int(np.argmax(np.abs(corr)))
    sign = np.sign(corr[k]) or 1.0
    lag = lo + _refine_peak(sign * corr, k)
    return Match(lag, float(abs(corr[k])), _sidelobe(corr, k, exclusion))


def refine_lag(
    signal: np.ndarray,
    template: np.ndarray,
    lag_samples: float,
    *,
    radius: int = 2,
    max_samples: int = 24000,
) -> float:
    """Sub-sample lag of `template` in `signal` near `lag_samples`, by band-limited interpolation.

    Evaluates the cross-correlation at fractional lags in the frequency domain (exact for
    band-limited signals) and maximises its magnitude in [lag - radius, lag + radius]: a
    half-sample grid, then Newton steps. More accurate than a parabola when the
    correlation peak is narrow (wide-band signals). Uses the loudest `max_samples` of the
    template.
    """
    tpl = np.asarray(template, dtype=np.float64)
    # Half a second of speech pins a sub-sample lag as well as the whole of it does, at a
    # fraction of the cost: use the loudest `max_samples`.
    offset = 0
    if len(tpl) > max_samples:
        block = max_samples // 8
        n_blocks = len(tpl) // block
        blocks = np.sum(tpl[: n_blocks * block].reshape(n_blocks, block) ** 2, axis=1)
        window = np.convolve(blocks, np.ones(8), mode="valid")
        offset = min(int(np.argmax(window)) * block, len(tpl) - max_samples)
        tpl = tpl[offset : offset + max_samples]
    lag_samples = lag_samples + offset
    start = int(np.floor(lag_samples)) - radius - 8
    start = max(0, start)
    seg = np.asarray(signal[start : start + len(tpl) + 2 * radius + 16], dtype=np.float64)
    n = sfft.next_fast_len(len(seg) + len(tpl), real=True)
    cross = sfft.rfft(seg, n) * np.conj(sfft.rfft(tpl, n))
    w = np.full(len(cross), 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    cross = w * cross / n
    omega = 2 * np.pi * np.arange(len(cross)) / n

    def derivatives(tau: float) -> tuple[float, float]:
        # c(tau) = Re sum cross e^{j omega tau}; Newton on c'(tau) = 0 needs c' and c''.
        z = cross * np.exp(1j * omega * tau)
        return float(np.real(np.sum(1j * omega * z))), float(np.real(np.sum(-(omega**2) * z)))

    centre = lag_samples - start
    # Start Newton from the best point of a half-sample grid over +-radius, on the side
    # of the peak's polarity (an inverted speaker or preamp gives a negative peak).
    grid = centre + np.arange(-2 * radius, 2 * radius + 1) / 2
    values = np.real(np.exp(1j * np.outer(grid, omega)) @ cross)
    sign = 1.0 if values[np.argmax(np.abs(values))] >= 0 else -1.0
    tau = float(grid[np.argmax(sign * values)])
    for _ in range(8):
        d1, d2 = derivatives(tau)
        d1, d2 = sign * d1, sign * d2
        if d2 >= 0:  # not near a maximum: keep the grid point
            break
        step = float(np.clip(-d1 / d2, -0.25, 0.25))
        tau += step
        if abs(step) < 1e-4:
            break
    tau = float(np.clip(tau, centre - radius, centre + radius))
    return start + tau - offset
