"""Small sample-level helpers every step uses: rate conversion, mono, a clean file's first
sound. Pure numpy/scipy."""

from __future__ import annotations

import math

import numpy as np
import scipy.signal as ss


def resample(x: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """`x` (1-D) from `from_hz` to `to_hz` (polyphase, linear phase), float64."""
    if int(from_hz) == int(to_hz):
        return np.asarray(x, dtype=np.float64)
    g = math.gcd(int(from_hz), int(to_hz))
    return ss.resample_poly(np.asarray(x, dtype=np.float64), int(to_hz) // g, int(from_hz) // g)


def mono(x: np.ndarray) -> np.ndarray:
    """`x` as one float64 channel (the mean of its channels)."""
    x = np.asarray(x, dtype=np.float64)
    return x if x.ndim == 1 else x.mean(axis=1)


def first_sound(x: np.ndarray, rel_db: float = -50.0) -> int:
    """Index of the first sample within `rel_db` of the peak (the onset of a clean recording).

    -50 dB sits above 16-bit dither and TTS hiss and below any speech sound.
    """
    a = np.abs(x)
    peak = float(a.max()) if a.size else 0.0
    if peak <= 0:
        return 0
    idx = np.flatnonzero(a >= peak * 10 ** (rel_db / 20))
    return int(idx[0]) if idx.size else 0
