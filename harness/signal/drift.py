"""Clock drift between two recordings of the same signal.

When two channels come from separate clocks (an ear mic on its own interface, or a DUT whose
DAC runs at 48 000 Hz * (1 + 150e-6)), the same signal is stretched in one relative to the
other. We cut the template into windows, locate each window in the other signal near where
the first fit predicts it, and fit lag = a + b * t by weighted least squares: b is the drift
(b * 1e6 ppm) and a is the lag at template sample 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal as ss

from harness.signal.correlate import locate, refine_lag

_MAX_WINDOWS = 16


@dataclass(frozen=True)
class DriftFit:
    """lag(t) = lag_at_start + drift * t, t in template samples.

    lag_at_start: where template sample 0 sits in the signal (sub-sample).
    drift_ppm: stretch of the signal relative to the template, parts per million (+ = longer).
    residual_samples: RMS of the windows' lags around the line (the fit's own noise).
    windows: how many windows were located confidently.
    stderr_ppm: standard error of drift_ppm (a drift within 3 of these is not established).
    """

    lag_at_start: float
    drift_ppm: float
    residual_samples: float
    windows: int
    stderr_ppm: float = 0.0


def fit_drift(
    signal: np.ndarray,
    template: np.ndarray,
    approx_lag: float,
    sample_rate_hz: int,
    *,
    window_s: float = 0.4,
    max_drift_ppm: float = 1000.0,
    min_confidence: float = 0.3,
) -> DriftFit | None:
    """Fit offset and drift of `template` inside `signal`, starting from `approx_lag`.

    Windows of `window_s` first; if too few lock on (a broadband template smears by several
    samples over 0.4 s at a few hundred ppm and stops correlating), again with windows a
    quarter as long. Returns None when fewer than three windows could be located with
    confidence (a short or mostly silent template): then drift cannot be told from noise.
    """
    fit = _fit_drift(
        signal, template, approx_lag, sample_rate_hz, window_s, max_drift_ppm, min_confidence
    )
    if fit is None and window_s >= 0.1:
        fit = _fit_drift(
            signal,
            template,
            approx_lag,
            sample_rate_hz,
            window_s / 4,
            max_drift_ppm,
            min_confidence,
        )
    return fit


def _fit_drift(
    signal: np.ndarray,
    template: np.ndarray,
    approx_lag: float,
    sample_rate_hz: int,
    window_s: float,
    max_drift_ppm: float,
    min_confidence: float,
) -> DriftFit | None:
    fs = sample_rate_hz
    win = max(64, int(window_s * fs))
    n_windows = len(template) // win
    if n_windows < 3:
        return None
    slack = int(max_drift_ppm * 1e-6 * len(template)) + 8
    centres, lags, weights = [], [], []
    template = np.asarray(template, dtype=np.float64)
    # The drift's precision comes from the span the windows cover, not their number: a
    # long reply is sampled at most _MAX_WINDOWS evenly spread windows.
    if n_windows > _MAX_WINDOWS:
        indices = np.unique(np.linspace(0, n_windows - 1, _MAX_WINDOWS).round().astype(int))
    else:
        indices = np.arange(n_windows)
    min_energy = 1e-3 * float(np.dot(template, template)) / n_windows
    for i in indices.tolist():
        piece = template[i * win : (i + 1) * win]
        if float(np.dot(piece, piece)) < min_energy:
            continue  # mostly silence: nothing to lock on to
        guess = approx_lag + i * win
        lo = int(guess) - slack
        m = locate(signal, piece, fs, search=(lo, int(guess) + slack + 1))
        if m.peak < min_confidence + m.sidelobe * 0.5 or m.confidence < min_confidence:
            continue
        lag = refine_lag(signal, piece, m.lag_samples)
        # A stretched window matches best at its middle: its lag belongs to its centre.
        centres.append(i * win + win / 2)
        lags.append(lag - i * win)
        weights.append(m.peak**2)
    if len(centres) < 3:
        return None
    t = np.asarray(centres, dtype=np.float64)
    y = np.asarray(lags)
    w = np.asarray(weights)
    # Weighted least squares; windows far off the line (one that locked on to a repeated
    # syllable) are dropped and the line refitted.
    for _ in range(3):
        a_mat = np.stack([np.ones_like(t), t], axis=1) * np.sqrt(w)[:, None]
        coef, *_ = np.linalg.lstsq(a_mat, y * np.sqrt(w), rcond=None)
        resid = y - (coef[0] + coef[1] * t)
        keep = np.abs(resid) <= max(1.0, 4 * np.median(np.abs(resid)))
        if keep.all() or keep.sum() < 3:
            break
        t, y, w = t[keep], y[keep], w[keep]
    # Window i was measured as (lag_i - i*win) = offset + drift * (i*win + win/2).
    rms = float(np.sqrt(np.mean(resid**2)))
    spread_t = float(np.sqrt(np.sum((t - t.mean()) ** 2)))
    # Standard error of the slope; a floor of 0.05 samples of lag noise per window keeps a
    # three-window fit that happens to lie on a line from claiming infinite certainty.
    dof = max(1, len(t) - 2)
    sigma = max(rms * np.sqrt(len(t) / dof), 0.05)
    stderr_ppm = sigma / spread_t * 1e6 if spread_t > 0 else float("inf")
    return DriftFit(float(coef[0]), float(coef[1] * 1e6), rms, len(t), stderr_ppm)


def correct_drift(x: np.ndarray, drift_ppm: float) -> np.ndarray:
    """Undo a stretch of `drift_ppm`: returns x resampled onto the reference clock.

    A signal recorded with a clock `drift_ppm` fast is (1 + drift_ppm * 1e-6) times longer;
    this shrinks it back by band-limited (FFT) resampling. The result has the same length
    as `x` (zero-padded or trimmed at the end) so sample indices stay comparable.
    """
    if drift_ppm == 0:
        return np.asarray(x, dtype=np.float64)
    n = len(x)
    new_len = int(round(n / (1 + drift_ppm * 1e-6)))
    y = ss.resample(np.asarray(x, dtype=np.float64), new_len)
    if new_len >= n:
        return y[:n]
    return np.pad(y, (0, n - new_len))
