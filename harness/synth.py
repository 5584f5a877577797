"""Sounds and channel effects the synthetic-turn generator builds from (`harness.groundtruth`):
placing and delaying audio, a clock's stretch, active speech level, pink and babble noise, an
earcon, a stimulus with a stretch lost (dropped, concealed or stretched) and G.711
companding.

numpy and scipy (G.711 goes through libsndfile, in memory); no files, no clocks.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.signal as ss


def stretch(x: np.ndarray, ppm: float) -> np.ndarray:
    """x played/recorded by a clock `ppm` fast relative to the reference: longer by (1+ppm)."""
    if ppm == 0:
        return x
    new_len = int(round(len(x) * (1 + ppm * 1e-6)))
    return ss.resample(x, new_len)


def place(out: np.ndarray, x: np.ndarray, at: int) -> None:
    end = min(len(out), at + len(x))
    if end > at:
        out[at:end] += x[: end - at]


def fractional_delay(x: np.ndarray, delay_samples: float, length: int) -> np.ndarray:
    """x delayed by a (fractional) number of samples, band-limited, output `length` long."""
    n = 1 << int(math.ceil(math.log2(max(len(x) + int(delay_samples) + 64, length))))
    spec = np.fft.rfft(x, n)
    k = np.arange(len(spec))
    spec *= np.exp(-2j * np.pi * k * delay_samples / n)
    return np.fft.irfft(spec, n)[:length]


def active_rms(x: np.ndarray, fs: int) -> float:
    """RMS over the frames within 30 dB of the loudest (an 'active speech level')."""
    frame = max(1, int(0.02 * fs))
    n = len(x) // frame
    if n == 0:
        return float(np.sqrt(np.mean(x**2))) if x.size else 0.0
    p = np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1)
    active = p[p >= p.max() * 1e-3]
    return float(np.sqrt(np.mean(active)))


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS 1/f noise of n samples (white noise shaped in the frequency domain)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    y = np.fft.irfft(spec / np.sqrt(f), n)
    return y / (np.sqrt(np.mean(y**2)) + 1e-20)


def babble_noise(n: int, talkers: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS babble: several talkers (at the output rate) looped with random offsets, summed."""
    out = np.zeros(n)
    for t in talkers:
        if len(t) == 0:
            continue
        reps = int(math.ceil((n + len(t)) / len(t))) + 1
        looped = np.tile(t, reps)
        off = int(rng.integers(0, len(t)))
        out += looped[off : off + n] / (active_rms(t, 16000) + 1e-20)
    return out / (np.sqrt(np.mean(out**2)) + 1e-20)


def earcon(sample_rate_hz: int, duration_s: float = 0.18) -> np.ndarray:
    """A two-note chime (C6 + G6, 3 ms attack, 40 ms decay), peak 1.0: a device's earcon."""
    fs = sample_rate_hz
    t = np.arange(int(duration_s * fs)) / fs
    notes = [f for f in (1046.5, 1568.0) if f < 0.45 * fs]
    x = sum(np.sin(2 * np.pi * f * t) for f in notes) * np.exp(-t / 0.04)
    attack = min(len(t), int(0.003 * fs))
    x[:attack] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / max(attack, 1))
    return x / (np.max(np.abs(x)) + 1e-20)


def lossy(stim: np.ndarray, fs: int, lost_ms: float, kind: str, at: int) -> tuple[np.ndarray, int]:
    """`stim` with `lost_ms` of it lost from sample `at` on, and how far every later sample
    moved (samples; negative = earlier). See Condition.loss for the kinds."""
    n = int(round(lost_ms / 1000 * fs))
    if n <= 0:
        return stim, 0
    if kind == "drop":
        return np.concatenate((stim[:at], stim[at + n :])), -n
    if kind == "conceal":
        out = stim.copy()
        src = stim[max(0, at - n) : at]
        out[at : at + len(src)] = src[: len(out) - at]
        return out, 0
    if kind == "stretch":
        return np.concatenate((stim[: at + n], stim[at:])), n
    raise ValueError(f"unknown loss {kind!r}: drop, conceal or stretch")


def g711(capture: np.ndarray, fs: int, codec: str) -> np.ndarray:
    """`capture` through G.711 (libsndfile's mu-law or A-law WAV), back as float64."""
    import io

    import soundfile as sf

    subtype = {"mulaw": "ULAW", "alaw": "ALAW"}.get(codec)
    if subtype is None:
        raise ValueError(f"unknown codec {codec!r}: mulaw or alaw")
    buf = io.BytesIO()
    sf.write(buf, np.clip(capture, -1.0, 1.0), fs, format="WAV", subtype=subtype)
    buf.seek(0)
    out, _ = sf.read(buf, dtype="float64", always_2d=True)
    return out
