"""How a sound dies away: a room's decay rate and where a cut-off sound's ring-down starts.

A reply that an agent cuts off in a dry path stops within a few ms; in a room its sound
keeps falling along a roughly straight line in dB. Telling the two apart is what lets a stop
latency be timed at the end of the direct sound, or refused when it cannot be.

Pure numpy: arrays in, values out.
"""

from __future__ import annotations

import numpy as np

from harness.signal.activity import frame_power


def decay_db_per_s(h: np.ndarray, fs: int) -> float | None:
    """Energy decay rate of a room response (Schroeder integral, -5..-25 dB), None if unclear."""
    if h.size < 16:
        return None
    edc = np.cumsum((h**2)[::-1])[::-1]
    edc_db = 10 * np.log10(np.maximum(edc / (edc[0] + 1e-30), 1e-12))
    sel = (edc_db <= -5) & (edc_db >= -25)
    if sel.sum() < 8:
        return None
    t = np.arange(len(edc_db)) / fs
    slope = float(np.polyfit(t[sel], edc_db[sel], 1)[0])
    return float(np.clip(-slope, 30.0, 1000.0)) if slope < 0 else None


def ring_down(band: np.ndarray, start: int, end: int, fs: int) -> tuple[float, float | None] | None:
    """(ring-down length in ms, where the direct sound stopped or None) before `end`.

    A reply cut off in a dry path stops within a few ms. In a reverberant room the sound
    keeps falling along a roughly straight line in dB after the cut. Going back from `end`
    over 5 ms frames, the longest stretch that fits a line (RMS misfit under 4 dB, falling
    30-1000 dB/s, by at least 15 dB, at least 60 ms) is the ring-down; None when there is
    none (the sound simply stops). The direct sound stopped where that stretch starts, if
    the level just before it stands at least 6 dB above the line (the direct sound dropping
    out); otherwise the cut cannot be placed and the second value is None.
    """
    hop, frame = max(1, int(0.0025 * fs)), max(1, int(0.005 * fs))
    lo = max(start, end - int(0.4 * fs))
    p = frame_power(band[lo:end], frame, hop)
    n_min = int(0.06 * fs / hop)
    if p.size < n_min + 8:
        return None
    level = 10 * np.log10(np.maximum(p, 1e-14))
    # The segment's refined end lies where the decay meets the noise: leave out the last
    # frames within 6 dB of the quietest, which are floor, not decay.
    loud = np.flatnonzero(level > level.min() + 6.0)
    if loud.size == 0:
        return None
    level = level[: int(loud[-1]) + 1]
    if level.size < n_min + 8:
        return None
    t = np.arange(len(level)) * hop / fs
    longest = line = None
    for n in range(n_min, len(level) - 3):
        tt, yy = t[-n:], level[-n:]
        slope, icpt = np.polyfit(tt, yy, 1)
        misfit = float(np.sqrt(np.mean((yy - (slope * tt + icpt)) ** 2)))
        fits = misfit < 4.0 and -1000 <= slope <= -30
        if fits:
            longest, line = n, (slope, icpt)
        elif longest is not None and misfit > 5.0:
            break
        elif longest is None and n > n_min + 8:
            return None
    if longest is None or line is None or -line[0] * (longest - 1) * hop / fs < 15.0:
        return None
    ms = longest * hop / fs * 1000
    k = len(level) - longest
    before = level[max(0, k - 3) : k]
    expected = line[0] * t[max(0, k - 3) : k] + line[1]
    if before.size and float(np.mean(before - expected)) >= 6.0:
        return ms, float(lo + k * hop + frame // 2)
    return ms, None
