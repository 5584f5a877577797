"""Sounds and channel effects the synthetic-turn generator builds from (`harness.groundtruth`):
placing and delaying audio, a clock's stretch, active speech level, white, pink and babble
noise, comfort noise's gate, a shoebox room's impulse responses (pyroomacoustics), an earcon,
a stimulus with a stretch lost (dropped, concealed or stretched) and G.711 companding.

numpy and scipy (G.711 goes through libsndfile, in memory); no files, no clocks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.signal as ss

SPEED_OF_SOUND_M_S = 343.0


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


def noise_of_kind(
    kind: str, n: int, rng: np.random.Generator, babble_talkers: list[np.ndarray] | None
) -> np.ndarray:
    """n samples of "white" (unit variance), "pink" or "babble" noise (unit RMS)."""
    if kind == "white":
        return rng.standard_normal(n)
    if kind == "pink":
        return pink_noise(n, rng)
    if kind == "babble":
        if not babble_talkers:
            raise ValueError("babble noise needs babble_talkers")
        return babble_noise(n, babble_talkers, rng)
    raise ValueError(f"unknown noise {kind!r}: white, pink or babble")


def comfort_noise_gate(
    n: int, talk_spans: tuple[tuple[int, int], ...], direct: float, fs: int
) -> np.ndarray:
    """(n,) gain of comfort noise: 1 while the DUT is silent, 0 while it talks (its `talk_spans`
    on its output, heard `direct` samples later at the ear), 5 ms fades."""
    gate = np.ones(n)
    for a, b in talk_spans:
        gate[max(0, int(a)) : min(n, int(b + direct) + 1)] = 0.0
    fade = max(1, int(0.005 * fs))
    gate = np.convolve(gate, np.ones(fade) / fade, mode="same")
    # No comfort noise ahead of the talk spurt: a gate that opens early would put noise
    # energy inside the reply's onset, which the truth does not have.
    for a, _ in talk_spans:
        gate[max(0, int(a + direct) - fade) : max(0, int(a + direct)) + 1] = 0.0
    return gate


def shoebox(rt60_s: float, size_m: list[float], fs: int) -> Any:
    """A pyroomacoustics ShoeBox room of `size_m` (x, y, z metres) with this RT60 (seconds):
    image sources up to order 40, and causal RIRs."""
    import pyroomacoustics as pra

    # pyroomacoustics high-passes each RIR with a zero-phase filter, which puts a faint
    # echo of the direct sound *before* it; a real room is causal.
    pra.constants.set("rir_hpf_enable", False)
    absorption, max_order = pra.inverse_sabine(rt60_s, size_m)
    return pra.ShoeBox(
        size_m,
        fs=fs,
        materials=pra.Material(absorption),
        max_order=min(max_order, 40),
        use_rand_ism=False,
    )


def room_rirs(
    rt60_s: float, fs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, float]:
    """(DUT speaker -> ear RIR, mouth speaker -> ear RIR, direct-path delay DUT->ear in samples).

    The delay includes pyroomacoustics's constant offset of frac_delay_length // 2 samples.
    """
    import pyroomacoustics as pra

    room_dim = [float(rng.uniform(4.0, 7.0)), float(rng.uniform(3.5, 5.5)), 2.8]
    room = shoebox(rt60_s, room_dim, fs)
    ear = np.array([room_dim[0] / 2, room_dim[1] / 2, 1.2])
    # DUT speaker close to the measurement mic, the mouth speaker further away.
    dut_dist = float(rng.uniform(0.3, 1.0))
    dut = ear + np.array([dut_dist, 0.0, 0.0])
    mouth = ear + np.array([-1.0, float(rng.uniform(0.5, 1.5)), 0.0])
    room.add_source(list(dut))
    room.add_source(list(mouth))
    room.add_microphone(ear)
    room.compute_rir()
    global_delay = pra.constants.get("frac_delay_length") // 2
    direct = global_delay + dut_dist / SPEED_OF_SOUND_M_S * fs
    return np.asarray(room.rir[0][0]), np.asarray(room.rir[0][1]), float(direct)


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
