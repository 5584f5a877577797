"""The simulated rig: an in-process room, no audio server.

Signal flow per block of ``block_frames`` frames (all at the rig's rate)::

    mouth ─DAC(output_latency)─► mouth speaker ─room─► DUT mic ─(clock drift)─► DUT.push
      └──────── DAC + ADC ─────► ref                   ▲ echo (DUT hears itself)
    DUT.pull ─(one block: the DUT's own I/O period)─► DUT speaker ─room─► ear mic ─ADC─► ear
                                   mouth speaker ─room (leakage)─────────► ear mic

Noise beds from the corpus (category "noise") are added at the DUT's mic and at the ear;
electrical noise at the ref and ear inputs; input dropouts at set times are zeroed and
recorded as xruns. Rooms come from pyroomacoustics (RT60 > 0) or are free field (direct
paths as band-limited fractional delays); every path is scaled so its direct sound has the
configured gain.

The DUT is any object with ``push(samples)`` and ``pull(n)`` (`SimDut`): the reference
agent's `AgentHost` fits as it is. A DUT whose ``realtime`` attribute is False (the scripted
ones here) is run as fast as the CPU allows, and the whole rig is then deterministic for a
given profile; any other DUT is paced to the wall clock.
"""

from __future__ import annotations

__all__ = ["SIM_DUTS", "PassthroughDut", "ScriptedDut", "SilentDut", "SimDut", "SimRig"]

import math
import os
import time
from typing import Any

import numpy as np
import scipy.signal as ss

from harness.rigs.base import (
    ProfileError,
    RigBase,
    RigLatency,
    RigSession,
    StreamBuffers,
    Xrun,
)
from harness.rigs.profile import RigProfile
from harness.rigs.simduts import SIM_DUTS, PassthroughDut, ScriptedDut, SilentDut, SimDut
from harness.signal.resample import resample
from harness.synth import SPEED_OF_SOUND_M_S, shoebox

PRA_OFFSET_SAMPLES = 40
"""Constant delay of every path, samples: pyroomacoustics's frac_delay_length // 2 (81 // 2),
used for free-field paths too so both kinds of room have the same delay definition."""

OFF_DB = -120.0
"""A path gain at or below this is no path at all."""


# ------------------------------------------------------------------------------------------
# Acoustic paths
# ------------------------------------------------------------------------------------------


def _fractional_kernel(delay_samples: float, half_width: int = PRA_OFFSET_SAMPLES) -> np.ndarray:
    """A causal band-limited delay of `delay_samples` (>= half_width): Hann-windowed sinc."""
    n = np.arange(int(math.ceil(delay_samples)) + half_width + 1)
    t = n - delay_samples
    w = np.where(np.abs(t) <= half_width, 0.5 + 0.5 * np.cos(np.pi * t / (half_width + 1)), 0.0)
    return np.sinc(t) * w


PATHS = (("mouth_m", "dut_mic_m"), ("mouth_m", "ear_m"), ("dut_speaker_m", "ear_m"))
PATHS += (("dut_speaker_m", "dut_mic_m"),)


def room_kernels(
    room: dict[str, Any], fs: int
) -> tuple[dict[tuple[str, str], np.ndarray], dict[tuple[str, str], float]]:
    """Impulse responses of the four paths (source key, mic key) and their direct-path
    delays in samples. Each response is scaled so its largest tap (the direct sound) is 1.

    RT60 > 0: a pyroomacoustics shoebox (image sources; the zero-phase high-pass that puts
    a pre-echo before the direct sound is disabled: harness.synth.shoebox). RT60 = 0:
    free field, one band-limited fractional delay per path.
    """
    positions = {k: np.asarray(room[k], dtype=float) for k in room if k.endswith("_m")}
    delays = {
        (s, m): PRA_OFFSET_SAMPLES
        + float(np.linalg.norm(positions[s] - positions[m])) / SPEED_OF_SOUND_M_S * fs
        for s, m in PATHS
    }
    kernels: dict[tuple[str, str], np.ndarray] = {}
    if room["rt60_s"] > 0:
        box = shoebox(room["rt60_s"], list(room["size_m"]), fs)
        sources = ("mouth_m", "dut_speaker_m")
        mics = ("dut_mic_m", "ear_m")
        for s in sources:
            box.add_source(list(positions[s]))
        box.add_microphone_array(np.stack([positions[m] for m in mics], axis=1))
        box.compute_rir()
        for s, m in PATHS:
            h = np.asarray(box.rir[mics.index(m)][sources.index(s)], dtype=np.float64)
            kernels[(s, m)] = h / (np.max(np.abs(h)) + 1e-20)
    else:
        for key, d in delays.items():
            h = _fractional_kernel(d)
            kernels[key] = h / np.max(np.abs(h))
    return kernels, delays


class _Conv:
    """Streaming convolution (overlap-add) with a fixed impulse response."""

    def __init__(self, h: np.ndarray, gain: float) -> None:
        self.h = np.asarray(h, dtype=np.float64) * gain
        self.tail = np.zeros(len(self.h) - 1)

    def process(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        y = ss.oaconvolve(x, self.h) if np.any(x) else np.zeros(n + len(self.h) - 1)
        y[: len(self.tail)] += self.tail
        self.tail = y[n:].copy()
        return y[:n]


class _Delay:
    """Streaming integer delay."""

    def __init__(self, samples: int) -> None:
        self.buf = np.zeros(int(samples))

    def process(self, x: np.ndarray) -> np.ndarray:
        if len(self.buf) == 0:
            return np.asarray(x, dtype=np.float64)
        y = np.concatenate([self.buf, x])
        self.buf = y[len(x) :]
        return y[: len(x)]


class _Resampler:
    """Streaming linear-interpolation resampler by `ratio` = output rate / input rate
    (for clock drift of a few hundred ppm, where linear interpolation is transparent)."""

    def __init__(self, ratio: float) -> None:
        self.step = 1.0 / ratio
        self.pos = 0.0
        self.prev = np.zeros(1)

    def process(self, x: np.ndarray) -> np.ndarray:
        buf = np.concatenate([self.prev, np.asarray(x, dtype=np.float64)])
        last = len(buf) - 1
        k = max(0, int(math.ceil((last - self.pos) / self.step)))
        idx = self.pos + self.step * np.arange(k)
        i = np.minimum(idx.astype(np.int64), last - 1)
        f = idx - i
        y = buf[i] * (1 - f) + buf[i + 1] * f
        self.pos = self.pos + self.step * k - last
        self.prev = buf[-1:]
        return y


class _NoiseBed:
    """A corpus noise recording looped from a start offset, scaled to an RMS level."""

    def __init__(self, samples: np.ndarray, level_dbfs: float, offset: int) -> None:
        x = np.asarray(samples, dtype=np.float64)
        self.x = x / (np.sqrt(np.mean(x**2)) + 1e-20) * 10 ** (level_dbfs / 20)
        self.pos = offset % len(self.x)

    def read(self, n: int) -> np.ndarray:
        idx = (self.pos + np.arange(n)) % len(self.x)
        self.pos = (self.pos + n) % len(self.x)
        return self.x[idx]


# ------------------------------------------------------------------------------------------
# The rig
# ------------------------------------------------------------------------------------------


class SimRig(RigBase):
    """The in-process simulated rig (see the module docstring for the signal flow).

    profile: a validated sim profile. dut: a `SimDut` object; default: the profile's
    ``[sim] dut`` backend, owned and made by the rig (``self.dut``).
    """

    def __init__(self, profile: RigProfile, dut: SimDut | None = None) -> None:
        super().__init__(profile.name, profile.sample_rate_hz, profile.block_frames)
        self.profile = profile
        self.options = profile.table("sim")
        self.dry_path = float(profile.table("sim.room")["rt60_s"]) == 0.0  # free field
        self._dut_given = dut
        self.dut: SimDut | None = dut
        fs = self.sample_rate_hz
        self.kernels, self.direct_delays = room_kernels(profile.table("sim.room"), fs)
        self._noise: np.ndarray | None = None
        noise = profile.table("sim.noise")
        if noise["bed"]:
            self._noise = _load_noise(noise["bed"], fs, profile.source)
        self._buffers: StreamBuffers | None = None
        self._opened = False

    @property
    def paced(self) -> bool:  # type: ignore[override]
        """The sim runs in real time unless its DUT says it need not (the scripted ones,
        by default): only then can a host stall change what it measures."""
        return bool(getattr(self.dut, "realtime", True))

    @property
    def dut_shares_process(self) -> bool:  # type: ignore[override]
        """A real-time DUT the sim drives in this process (a DUT object passed in, a
        real-time scripted DUT); one with a ``pid`` of another process (the reference
        agent's `AgentProcess`) does not share it."""
        pid = getattr(self.dut, "pid", None)
        return self.dut is not None and self.paced and pid in (None, os.getpid())

    # --- figures tests and calibration use --------------------------------------------------

    @property
    def mouth_to_ref_samples(self) -> int:
        """Configured mouth -> ref delay (DAC + ADC latency), samples."""
        return int(self.options["output_latency_samples"] + self.options["input_latency_samples"])

    def path_delay_samples(self, path: str) -> float:
        """Direct-path delay from the session timeline to the capture (or to the DUT's clock),
        samples, for "mouth_to_ref", "mouth_to_dut", "mouth_to_ear" and "dut_to_ear" (the
        last from a DUT output sample to the ear, including the DUT's one-block period)."""
        lo, li = self.options["output_latency_samples"], self.options["input_latency_samples"]
        d = self.direct_delays
        return {
            "mouth_to_ref": float(lo + li),
            "mouth_to_dut": lo + d[("mouth_m", "dut_mic_m")],
            "mouth_to_ear": lo + d[("mouth_m", "ear_m")] + li,
            "dut_to_ear": self.block_frames + d[("dut_speaker_m", "ear_m")] + li,
        }[path]

    # --- lifecycle --------------------------------------------------------------------------

    def open(self) -> SimRig:
        """Make the DUT (if the profile names one and none was given)."""
        if self.dut is None:
            self.dut = SIM_DUTS[self.options["dut"]](self.profile)
        self._opened = True
        return self

    def close(self) -> None:
        """Drop the rig-made DUT."""
        if self._dut_given is None:
            self.dut = None
        self._opened = False

    def latency(self) -> RigLatency:
        """Configured figures (the sim's converters are exact)."""
        return RigLatency(
            block_frames=self.block_frames,
            expected_mouth_to_ref=self.mouth_to_ref_samples,
            reported_input=int(self.options["input_latency_samples"]),
            reported_output=int(self.options["output_latency_samples"]),
            calibrated_mouth_to_ref=self.calibrated_mouth_to_ref,
            calibrated_mouth_to_ear=self.calibrated_mouth_to_ear,
        )

    def session(self, *, capacity_s: float = 60.0) -> RigSession:
        """A new session; the acoustic state starts quiet, the DUT carries on."""
        if not self._opened:
            self.open()
        return RigSession(
            _SimDriver(self), self.sample_rate_hz, self.latency, capacity_s=capacity_s
        )


def _load_noise(bed: str, fs: int, source: str) -> np.ndarray:
    from harness.corpus import Corpus
    from harness.errors import CorpusError

    corpus = Corpus.load()
    try:
        u = corpus.by_id(bed)
    except CorpusError as err:
        names = ", ".join(x.id for x in corpus.by_category("noise"))
        raise ProfileError(
            f"{source}: sim.noise.bed = {bed!r}: {err}; noise beds: {names}"
        ) from err
    if u.category != "noise":
        names = ", ".join(x.id for x in corpus.by_category("noise"))
        raise ProfileError(
            f"{source}: sim.noise.bed = {bed!r} is a {u.category!r} utterance; "
            f"expected a corpus id of category 'noise': {names}"
        )
    return resample(u.load(), u.sample_rate_hz, fs)


class _SimDriver:
    """Runs the simulation one block per `pump`."""

    realtime = False
    guard_frames = 0

    def __init__(self, rig: SimRig) -> None:
        self.rig = rig
        o = rig.options
        fs, n = rig.sample_rate_hz, rig.block_frames
        self.n = n
        self.fs = fs
        self.rng = np.random.default_rng(o["seed"])
        self.out_delay = _Delay(o["output_latency_samples"])
        self.ref_delay = _Delay(o["output_latency_samples"] + o["input_latency_samples"])
        self.in_delay = _Delay(o["input_latency_samples"])
        paths = rig.profile.table("sim.paths")
        gains = {
            ("mouth_m", "dut_mic_m"): paths["mouth_to_dut_db"],
            ("mouth_m", "ear_m"): paths["mouth_to_ear_db"],
            ("dut_speaker_m", "ear_m"): paths["dut_to_ear_db"],
            ("dut_speaker_m", "dut_mic_m"): paths["dut_echo_db"],
        }
        self.conv = {
            k: _Conv(rig.kernels[k], 10 ** (g / 20)) for k, g in gains.items() if g > OFF_DB
        }
        self.ref_noise = 10 ** (o["ref_noise_dbfs"] / 20)
        self.ear_noise = 10 ** (o["ear_noise_dbfs"] / 20)
        level = rig.profile.table("sim.noise")["level_dbfs"]
        self.beds: list[_NoiseBed] = []
        if rig._noise is not None:
            length = len(rig._noise)
            start = int(self.rng.integers(length))
            self.beds = [
                _NoiseBed(rig._noise, level, start),
                _NoiseBed(rig._noise, level, start + length // 2),
            ]
        ppm = rig.profile.table("sim.clock")["dut_drift_ppm"]
        self.to_dut = self.from_dut = None
        if ppm:
            self.to_dut = _Resampler(1 + ppm * 1e-6)
            self.from_dut = _Resampler(1 / (1 + ppm * 1e-6))
        self.spk_fifo = np.zeros(4 if ppm else 0)
        self.spk_next = np.zeros(n)
        self.out_scratch = np.zeros(n, dtype=np.float32)
        self.buffers: StreamBuffers | None = None
        self.paced = bool(getattr(rig.dut, "realtime", True))
        self.t0 = 0.0
        self.dropouts: list[tuple[int, int]] = []
        self.noted: set[int] = set()

    def attach(self, buffers: StreamBuffers) -> None:
        self.buffers = buffers
        self.t0 = time.monotonic()
        drop = self.rig.profile.table("sim.dropouts")
        fs = self.fs
        spans = [(int(a * fs), int(a * fs + ms * fs / 1000)) for a, ms in drop["at"]]
        if drop["per_minute"] > 0:
            t = 0.0
            horizon = buffers.capacity / fs
            while True:
                t += float(self.rng.exponential(60.0 / drop["per_minute"]))
                if t >= horizon:
                    break
                spans.append((int(t * fs), int(t * fs + drop["length_ms"] * fs / 1000)))
        self.dropouts = sorted(spans)

    def detach(self) -> None:
        self.buffers = None

    def pump(self) -> bool:
        b = self.buffers
        if b is None or b.position + self.n > b.capacity:
            return False
        n, t = self.n, b.position
        if self.paced:
            delay = self.t0 + (t + n) / self.fs - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        mouth = b.mouth[t : t + n].astype(np.float64)
        mouth_air = self.out_delay.process(mouth)
        ref = self.ref_delay.process(mouth)
        spk_air = self.spk_next
        conv = self.conv
        mic = np.zeros(n)
        ear_air = np.zeros(n)
        if ("mouth_m", "dut_mic_m") in conv:
            mic += conv[("mouth_m", "dut_mic_m")].process(mouth_air)
        if ("dut_speaker_m", "dut_mic_m") in conv:
            mic += conv[("dut_speaker_m", "dut_mic_m")].process(spk_air)
        if ("dut_speaker_m", "ear_m") in conv:
            ear_air += conv[("dut_speaker_m", "ear_m")].process(spk_air)
        if ("mouth_m", "ear_m") in conv:
            ear_air += conv[("mouth_m", "ear_m")].process(mouth_air)
        if self.beds:
            mic += self.beds[0].read(n)
            ear_air += self.beds[1].read(n)
        self._run_dut(mic)
        ear = self.in_delay.process(ear_air)
        if self.ref_noise > 1e-6:
            ref = ref + self.rng.standard_normal(n) * self.ref_noise
        if self.ear_noise > 1e-6:
            ear = ear + self.rng.standard_normal(n) * self.ear_noise
        for a, e in self.dropouts:
            if a < t + n and e > t:
                ref[max(a, t) - t : min(e, t + n) - t] = 0.0
                ear[max(a, t) - t : min(e, t + n) - t] = 0.0
                if a not in self.noted:
                    self.noted.add(a)
                    b.xruns.append(
                        Xrun("dropout", a, f"{(e - a) / self.fs * 1000:.1f} ms of input lost")
                    )
        b.exchange(ref, ear, self.out_scratch)
        return True

    def _run_dut(self, mic: np.ndarray) -> None:
        dut = self.rig.dut
        n = self.n
        if dut is None:
            self.spk_next = np.zeros(n)
            return
        if self.to_dut is None:
            dut.push(mic.astype(np.float32))
            self.spk_next = np.asarray(dut.pull(n), dtype=np.float64)
            return
        assert self.from_dut is not None
        x = self.to_dut.process(mic)
        dut.push(x.astype(np.float32))
        y = self.from_dut.process(np.asarray(dut.pull(len(x)), dtype=np.float64))
        fifo = np.concatenate([self.spk_fifo, y])
        if len(fifo) < n:
            fifo = np.concatenate([fifo, np.zeros(n - len(fifo))])
        self.spk_next, self.spk_fifo = fifo[:n], fifo[n:]
