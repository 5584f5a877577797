"""Levels in a capture: clipping, and where something new starts after the user stopped.

Pure numpy: arrays in, values out.
"""

from __future__ import annotations

import numpy as np

from harness.signal.activity import frame_power, speech_band


def clipped(x: np.ndarray, level: float = 0.999, run: int = 3) -> bool:
    """True when `run` or more consecutive samples sit at full scale."""
    hot = np.abs(x) >= level
    if hot.sum() < run:
        return False
    # Length of the longest run of hot samples.
    d = np.diff(np.concatenate(([0], hot.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return bool(np.max(ends - starts) >= run)


def reply_free_until(ear: np.ndarray, speech_end: int, fs: int, limit_s: float = 1.0) -> int:
    """Last sample after the user's speech end before anything new starts at the ear.

    After the user stops, the ear can only decay (the room rings down) until the reply
    begins. The first 10 ms frame that rises 10 dB above the quietest frame since the
    speech end marks something new; the stretch before it is reply-free and shows the
    room's late response clearly, which makes the leakage fit generalise.
    """
    seg = ear[speech_end : speech_end + int(limit_s * fs)]
    p = frame_power(speech_band(seg, fs), int(0.01 * fs), int(0.0025 * fs))
    if p.size == 0:
        return speech_end
    level = 10 * np.log10(np.maximum(p, 1e-12))
    rise = np.flatnonzero(level > np.minimum.accumulate(level) + 10.0)
    i = int(rise[0]) if rise.size else len(p)
    return speech_end + max(0, i * int(0.0025 * fs) - int(0.02 * fs))
