"""The host clock <-> a session's sample index (`HostClockMap`), fitted to the block stamps a
rig's real-time copy path takes (`fit_host_clock`); and how far a capture fell behind the
wall clock inside an interval (`HostClockMap.slip_ms`).

Pure: numpy and the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class HostClockMap:
    """Host monotonic clock <-> session sample index: ``t_us ≈ intercept_us + slope_us * k``.

    Built from one host timestamp per block, taken in the real-time copy path
    (`StreamBuffers.exchange`) when the block of frames ``[k, k + n)`` was exchanged. So a
    host time maps to the sample index whose block was being exchanged then: on JACK and
    PortAudio that is the callback of the period that delivers input frame k and sends out
    mouth frame k; on the sim, the moment the simulation (and its in-process DUT) ran that
    block. Host times are `time.monotonic_ns() // 1000` µs (one clock per host).

    slope_us: µs per sample (1e6 / rate when the audio clock and the host clock agree; its
        deviation is the drift between them). intercept_us: host µs of sample 0 (the whole
        session's). residual_us: median absolute deviation of the stamps from the line (the
        callbacks' wake-up jitter, and any jump), µs. blocks: stamps used. paced: False when
        the stream ran faster than real time (a sim with a scripted DUT): the map then has
        no acoustic meaning.

    An xrun can make the audio clock lose time against the host clock (a late JACK cycle
    on the dummy driver): the line then has a step. `sample_of_host_us` therefore uses the
    intercept of the stamps within `local_s` of the time it maps (their lower edge), so an
    event is placed by the blocks around it, not by a compromise over the whole session.
    """

    intercept_us: float
    slope_us: float
    residual_us: float
    blocks: int
    paced: bool = True
    stamp_us: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)
    """Host µs of every stamp, shape (blocks,)."""
    offset_us: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)
    """Each stamp's offset from the slope (``t_us - slope_us * start``), µs, shape (blocks,)."""
    local_s: float = 0.5

    def slip_ms(
        self, sample_rate_hz: int, start_s: float, end_s: float, window_s: float = 0.1
    ) -> float:
        """How far the capture's sample clock fell behind the host clock between capture
        times `start_s` and `end_s`, ms (0 when too few blocks were stamped there).

        Each block's stamp is its callback's host time: the block's true time plus a wake-up
        delay that is never negative. The lower edge of the stamps' offsets from the nominal
        rate, per `window_s` window, is the capture's position against the wall clock; its
        range over the interval is the wall-clock time that passed without being recorded."""
        t = np.asarray(self.stamp_us, dtype=np.float64)
        if t.size < 3:
            return 0.0
        k_s = (t - np.asarray(self.offset_us, dtype=np.float64)) / self.slope_us / sample_rate_hz
        inside = (k_s >= start_s - window_s) & (k_s <= end_s + window_s)
        if inside.sum() < 3:
            return 0.0
        behind = t[inside] - k_s[inside] * 1e6
        window = np.floor((k_s[inside] - k_s[inside][0]) / window_s)
        edges = [float(behind[window == w].min()) for w in np.unique(window)]
        return (max(edges) - min(edges)) / 1000.0

    def _intercept_at(self, t_us: float) -> float:
        near = np.abs(self.stamp_us - float(t_us)) <= self.local_s * 1e6
        if near.sum() < 4:
            return self.intercept_us
        return float(np.quantile(self.offset_us[near], 0.2))

    def sample_of_host_us(self, t_us: float) -> float:
        """Session sample index (fractional) at host time `t_us`, µs."""
        return (float(t_us) - self._intercept_at(t_us)) / self.slope_us

    def host_us_of_sample(self, sample_index: float) -> float:
        """Host time, µs, of session sample `sample_index`."""
        t = self.intercept_us + self.slope_us * float(sample_index)
        return self._intercept_at(t) + self.slope_us * float(sample_index)

    def drift_ppm(self, sample_rate_hz: int) -> float:
        """Audio clock vs host clock, ppm (positive: the audio clock runs slow)."""
        return (self.slope_us * sample_rate_hz / 1e6 - 1.0) * 1e6


STEP_US = 2000.0
"""A jump of the stamps' lower envelope bigger than this (µs) is a step of the audio clock
against the host clock (an xrun), not drift or jitter."""


def fit_host_clock(
    starts: np.ndarray, t_us: np.ndarray, sample_rate_hz: int
) -> HostClockMap | None:
    """Fit `HostClockMap` to block stamps: `starts` (block start samples), `t_us` (host µs).

    A callback runs at its period's start plus a wake-up delay that is never negative, so
    the stamps lie on or above the true line. The slope is the median of the slopes between
    every pair of points of the lower envelope (the earliest stamp of each twentieth of the
    session, pairs within one stretch between steps of more than `STEP_US`: an xrun's).
    The intercept is the 20th percentile of the stamps' offsets from that slope (their
    lower edge), over the whole session and, for `sample_of_host_us`, around each mapped
    time. None without stamps.
    """
    k = np.asarray(starts, dtype=np.float64)
    t = np.asarray(t_us, dtype=np.float64)
    nominal = 1e6 / sample_rate_hz
    if k.size == 0:
        return None
    if k.size < 3 or np.ptp(k) == 0:
        return HostClockMap(float(t[0] - nominal * k[0]), nominal, 0.0, int(k.size))
    # The lower envelope: the earliest stamp (least wake-up delay) of each of ~20 chunks.
    chunk = max(1, k.size // 20)
    env_k, env_t = [], []
    for a in range(0, k.size, chunk):
        i = a + int(np.argmin(t[a : a + chunk] - nominal * k[a : a + chunk]))
        env_k.append(k[i])
        env_t.append(t[i])
    ek, et = np.asarray(env_k), np.asarray(env_t)
    # Steps (an xrun: the audio clock lost a period or more) split the envelope into
    # segments; slopes are only taken within one. Drift moves the envelope by microseconds
    # per chunk, a step by milliseconds.
    rough = (et[-1] - et[0]) / (ek[-1] - ek[0]) if ek[-1] > ek[0] else nominal
    segment = np.concatenate([[0], np.cumsum(np.abs(np.diff(et - rough * ek)) > STEP_US)])
    ii, jj = np.triu_indices(ek.size, 1)
    dk = ek[jj] - ek[ii]
    ok = (dk > 0) & (segment[ii] == segment[jj])
    slope = float(np.median((et[jj] - et[ii])[ok] / dk[ok])) if ok.any() else nominal
    offsets = t - slope * k
    icpt = float(np.quantile(offsets, 0.2))
    mad = float(np.median(np.abs(offsets - np.median(offsets))))
    # Faster than real time (or no clock at all): far more samples per µs than the rate.
    paced = bool(abs(slope / nominal - 1.0) < 0.05)
    return HostClockMap(
        icpt,
        slope,
        mad,
        int(k.size),
        paced,
        t,
        offsets,
    )
