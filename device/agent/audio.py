"""Audio plumbing: the playback buffer, a streaming decimator, chunk resampling.

Arrays are float32 mono in [-1, 1], shape ``(n,)``.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.signal import firwin, lfilter, resample_poly


def resample(x: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Resample a whole chunk (polyphase, anti-aliased); float32 out."""
    if from_hz == to_hz or len(x) == 0:
        return np.asarray(x, dtype=np.float32)
    g = math.gcd(int(from_hz), int(to_hz))
    return resample_poly(x, to_hz // g, from_hz // g).astype(np.float32)


def earcon(rate_hz: int, duration_s: float = 0.15, level: float = 0.25) -> np.ndarray:
    """A two-note chime (C6 + G6, 3 ms attack, 35 ms decay) peaking at `level`, float32."""
    t = np.arange(int(duration_s * rate_hz)) / rate_hz
    notes = [f for f in (1046.5, 1568.0) if f < 0.45 * rate_hz]
    x = sum(np.sin(2 * np.pi * f * t) for f in notes) * np.exp(-t / 0.035)
    attack = min(len(t), int(0.003 * rate_hz))
    x[:attack] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / max(attack, 1))
    return (level * x / (np.max(np.abs(x)) + 1e-20)).astype(np.float32)


class Decimator:
    """Streaming integer-factor downsampler (FIR low-pass with carried state), so blocks of
    any length can be fed one after another without edge effects."""

    def __init__(self, from_hz: int, to_hz: int) -> None:
        if from_hz % to_hz:
            raise ValueError(
                f"input rate {from_hz} Hz is not a multiple of {to_hz} Hz "
                f"(supported: {', '.join(str(to_hz * k) for k in (1, 2, 3, 6))} Hz)"
            )
        self.factor = from_hz // to_hz
        self._taps = firwin(16 * self.factor + 1, 0.9 / self.factor) if self.factor > 1 else None
        self._zi = np.zeros(16 * self.factor) if self.factor > 1 else None
        self._index = 0  # global index of the next input sample

    def process(self, x: np.ndarray) -> np.ndarray:
        """Filter and decimate one block; returns float32."""
        x = np.asarray(x, dtype=np.float64)
        if self.factor == 1:
            return x.astype(np.float32)
        y, self._zi = lfilter(self._taps, 1.0, x, zi=self._zi)
        first = (-self._index) % self.factor
        self._index += len(x)
        return y[first :: self.factor].astype(np.float32)


@dataclass
class _Segment:
    turn: int
    samples: np.ndarray | None  # None: end-of-reply marker
    offset: int = 0
    first: bool = False


class OutputBuffer:
    """The small playback buffer between the pipeline and the audio device.

    The pipeline `write`s frames of a reply (tagged with its turn); the device `read`s at its
    own pace (any thread) and gets zeros when there is nothing to play. Reading the first
    frame of a reply, the end-of-reply marker, or running dry in the middle of a reply calls
    ``on_event(kind, turn, position)`` with kind ``start``, ``end`` or ``underrun`` and the
    output sample position where it happened (after the lock is released).
    """

    def __init__(
        self, capacity_samples: int, on_event: Callable[[str, int, int], None] | None = None
    ) -> None:
        self.capacity_samples = capacity_samples
        self._segments: deque[_Segment] = deque()
        self._buffered = 0
        self._lock = threading.Lock()
        self._on_event = on_event
        self._active: int | None = None
        self._starved = False
        self.position = 0
        """Samples read so far (the device's playback position)."""

    def buffered(self) -> int:
        """Samples waiting to be played."""
        with self._lock:
            return self._buffered

    def space(self) -> int:
        """Samples that can be written before the buffer is full."""
        with self._lock:
            return self.capacity_samples - self._buffered

    def write(self, turn: int, samples: np.ndarray, first: bool = False) -> None:
        """Queue ``samples`` of reply ``turn``; ``first`` marks the reply's first frame."""
        with self._lock:
            self._segments.append(_Segment(turn, np.asarray(samples, np.float32), 0, first))
            self._buffered += len(samples)

    def end_reply(self, turn: int) -> None:
        """Queue the end-of-reply marker of ``turn``."""
        with self._lock:
            self._segments.append(_Segment(turn, None))

    def clear(self) -> int:
        """Drop everything queued (barge-in); returns the audio samples dropped."""
        with self._lock:
            dropped = self._buffered
            self._segments.clear()
            self._buffered = 0
            self._active = None
            self._starved = False
            return dropped

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` samples to play (zeros where there is nothing)."""
        out = np.zeros(n, dtype=np.float32)
        events: list[tuple[str, int, int]] = []
        with self._lock:
            filled = 0
            while filled < n and self._segments:
                seg = self._segments[0]
                if seg.samples is None:
                    self._segments.popleft()
                    events.append(("end", seg.turn, self.position + filled))
                    self._active = None
                    self._starved = False
                    continue
                if seg.offset == 0 and seg.first:
                    events.append(("start", seg.turn, self.position + filled))
                    self._active = seg.turn
                take = min(n - filled, len(seg.samples) - seg.offset)
                out[filled : filled + take] = seg.samples[seg.offset : seg.offset + take]
                seg.offset += take
                filled += take
                self._buffered -= take
                if seg.offset >= len(seg.samples):
                    self._segments.popleft()
            if filled < n and self._active is not None:
                if not self._starved:
                    events.append(("underrun", self._active, self.position + filled))
                self._starved = True
            elif filled == n:
                self._starved = False
            self.position += n
        if self._on_event is not None:
            for kind, turn, pos in events:
                self._on_event(kind, turn, pos)
        return out
