"""Watching the ear while a session streams: is the DUT talking, and since when?

`EarWatcher` takes the captured blocks (ref and ear, in order) and cuts them into 5 ms
frames of speech-band power (200 Hz - 4 kHz: a fan's hum and DC are not speech). A frame of
the ear is *loud* when its power is above all of:

- the noise: `margin_db` above the 95th percentile of the ear's frames in the noise-only
  region (the lead-in, before the stimulus plays), so a noise bed's peaks stay quiet;
- the floor: `min_dbfs`, for a digital-silent ear (the JACK loopback);
- the leakage: where the ear hears the mouth (the sim, a lab rig), the mouth's own sound at
  the ear is not the DUT. The ratio ear/ref while the stimulus plays (90th percentile over
  its loud frames) times the loudest ref frame of the last `leak_memory_s` (the room's
  ring-down), plus `leak_margin_db`.

The work per block is a few small numpy calls; it runs between blocks in the harness's
thread and never in the audio callback.
"""

from __future__ import annotations

import numpy as np
import scipy.signal as ss


class EarWatcher:
    """Frame powers of ref and ear as blocks arrive, and the loud/quiet decision per frame.

    sample_rate_hz: the rig's rate. frame_s: frame length, s. Frame i covers session samples
    ``[i * frame, (i + 1) * frame)``.
    """

    def __init__(
        self,
        sample_rate_hz: int,
        *,
        frame_s: float = 0.005,
        margin_db: float = 9.0,
        min_dbfs: float = -75.0,
        leak_margin_db: float = 10.0,
        leak_memory_s: float = 0.15,
    ) -> None:
        fs = int(sample_rate_hz)
        self.fs = fs
        self.frame = max(1, int(round(frame_s * fs)))
        hi = min(4000.0, 0.45 * fs)
        self._sos = ss.butter(2, [200.0, hi], btype="bandpass", fs=fs, output="sos")
        self._zi_ref = np.zeros((self._sos.shape[0], 2))
        self._zi_ear = np.zeros((self._sos.shape[0], 2))
        self._carry_ref = np.zeros(0)
        self._carry_ear = np.zeros(0)
        self.ref_p: list[float] = []
        self.ear_p: list[float] = []
        self.margin = 10 ** (margin_db / 10)
        self.min_power = 10 ** (min_dbfs / 10)
        self.leak_margin = 10 ** (leak_margin_db / 10)
        self.leak_frames = max(1, int(round(leak_memory_s * fs / self.frame)))
        self.noise_power: float | None = None
        self.leak_ratio = 0.0

    @property
    def frames(self) -> int:
        """Complete frames seen so far."""
        return len(self.ear_p)

    def frame_of(self, sample_index: int) -> int:
        """Index of the frame holding session sample `sample_index`."""
        return int(sample_index) // self.frame

    def start_of(self, frame_index: int) -> int:
        """First session sample of frame `frame_index`."""
        return int(frame_index) * self.frame

    def feed(self, ref: np.ndarray, ear: np.ndarray) -> None:
        """The next captured block (contiguous with the previous one)."""
        r, self._zi_ref = ss.sosfilt(self._sos, np.asarray(ref, np.float64), zi=self._zi_ref)
        e, self._zi_ear = ss.sosfilt(self._sos, np.asarray(ear, np.float64), zi=self._zi_ear)
        r = np.concatenate([self._carry_ref, r])
        e = np.concatenate([self._carry_ear, e])
        k = len(e) // self.frame
        if k:
            n = k * self.frame
            self.ref_p.extend(np.mean(r[:n].reshape(k, -1) ** 2, axis=1).tolist())
            self.ear_p.extend(np.mean(e[:n].reshape(k, -1) ** 2, axis=1).tolist())
        self._carry_ref = r[k * self.frame :]
        self._carry_ear = e[k * self.frame :]

    def learn_noise(self, first: int, stop: int) -> None:
        """Take frames ``[first, stop)`` (noise only: nobody speaks) as the noise."""
        p = np.asarray(self.ear_p[max(0, first) : stop])
        if p.size:
            self.noise_power = float(np.quantile(p, 0.95))

    def learn_leakage(self, first: int, stop: int) -> None:
        """Frames ``[first, stop)`` hold the stimulus (the DUT should be listening): how much
        of the ref's power reaches the ear."""
        ref = np.asarray(self.ref_p[max(0, first) : stop])
        ear = np.asarray(self.ear_p[max(0, first) : stop])
        if ref.size == 0:
            return
        loud = ref > max(float(ref.max()) * 1e-3, 1e-10)
        if loud.any():
            self.leak_ratio = float(np.quantile(ear[loud] / ref[loud], 0.9))

    def threshold(self, i: int) -> float:
        """Power above which ear frame `i` is the DUT talking."""
        t = self.min_power
        if self.noise_power is not None:
            t = max(t, self.noise_power * self.margin)
        if self.leak_ratio > 0:
            ref = self.ref_p[max(0, i - self.leak_frames) : i + 1]
            if ref:
                t = max(t, self.leak_ratio * max(ref) * self.leak_margin)
        return t

    def loud(self, i: int) -> bool:
        """Is ear frame `i` loud (see the module docstring)?"""
        return self.ear_p[i] > self.threshold(i)

    def quiet_run(self, frames: int) -> bool:
        """Were the last `frames` frames quiet, judged against the median of everything seen
        (before the noise is known: settling), 15 dB above it?"""
        if self.frames < frames:
            return False
        median = float(np.median(self.ear_p))
        limit = max(self.min_power, median * 10**1.5)
        return max(self.ear_p[-frames:]) <= limit
