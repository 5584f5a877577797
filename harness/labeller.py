"""The corpus' speech labeller: where speech starts and ends in a file, and where the
mid-sentence pauses are, computed from the samples (`label_speech`). Its parameters are
part of what a label means: the manifest records them (`labeller_settings`) and
``scripts/label_corpus.py --check`` notices when they change.

Pure: numpy and the standard library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Labeller parameters. They are part of what a label means, so the manifest records them
# ("labelled_with") and `scripts/label_corpus.py --check` notices when they change.
FRAME_S = 0.010
"""Length of one energy frame, seconds (frames do not overlap)."""
THRESHOLD_DB = -40.0
"""A frame is speech when its mean energy is above the loudest frame's energy plus this, dB."""
MIN_PAUSE_S = 0.250
"""Silences shorter than this inside speech are bridged (hangover); longer ones are pauses, s."""
MIN_SEGMENT_S = 0.020
"""Isolated bursts shorter than this (clicks) are dropped when there is longer speech, s."""
EDGE_SEARCH_S = 0.050
"""How far before/after a detected segment the sample-level edge search may reach, s."""


@dataclass(frozen=True)
class SpeechLabel:
    """Where speech is in one file, as found by `label_speech`.

    ``start_s`` is the time of the first speech sample, ``end_s`` the time just after the last
    one (so a burst occupying samples ``[a, b)`` is labelled ``a / rate`` .. ``b / rate``).
    ``pauses_s`` holds ``(start_s, end_s)`` of every silence of at least `MIN_PAUSE_S` between
    the two, with the same conventions (a pause starts just after the last sample before it).
    ``start_sample``/``end_sample`` are the same edges in samples (end exclusive).
    """

    start_s: float
    end_s: float
    pauses_s: tuple[tuple[float, float], ...]
    start_sample: int
    end_sample: int

    @property
    def duration_s(self) -> float:
        """Labelled speech duration, first to last speech sample, seconds."""
        return self.end_s - self.start_s


def label_speech(
    samples: np.ndarray,
    sample_rate_hz: int,
    *,
    threshold_db: float = THRESHOLD_DB,
    frame_s: float = FRAME_S,
    min_pause_s: float = MIN_PAUSE_S,
) -> SpeechLabel:
    """Find speech start, speech end and the pauses inside one clean recording.

    Method (pure, deterministic):

    1. Split the signal into non-overlapping ``frame_s`` frames from sample 0 and take each
       frame's mean energy. A frame is active when its energy exceeds the loudest frame's
       energy plus ``threshold_db`` (default -40 dB). The threshold is relative, so the result
       does not depend on the file's level or sample format.
    2. Refine each run of active frames to the sample: its start is the first sample whose
       magnitude exceeds the threshold's RMS level, searched from up to `EDGE_SEARCH_S` before
       the run (walking back only through frames that contain such samples), and likewise
       for its end.
    3. Bridge silences shorter than ``min_pause_s`` (hangover) and drop isolated segments
       shorter than `MIN_SEGMENT_S` (clicks) when longer speech exists. The remaining gaps are
       the pauses.

    Made for the corpus's clean recordings (digital silence around and between the words);
    on noisy input the edges can move by up to `EDGE_SEARCH_S`.

    Args:
        samples: mono audio, shape ``(n,)``, any real dtype (int16 or float alike).
        sample_rate_hz: sampling rate of ``samples``, Hz.
        threshold_db: activity threshold relative to the loudest frame, dB (negative).
        frame_s: frame length, seconds.
        min_pause_s: shortest silence reported as a pause, seconds.

    Returns:
        The `SpeechLabel`; times in seconds from the first sample.

    Raises:
        ValueError: ``samples`` is not 1-D, empty, not finite, or contains no signal at all.

    The steps are `_frame_energy` (1), `_sample_edges` (2) and `_bridge_and_declick` (3).
    """
    x = _checked_samples(samples, sample_rate_hz)
    frame = max(1, round(frame_s * sample_rate_hz))
    energy = _frame_energy(x, frame)
    peak_energy = float(energy.max())
    if peak_energy <= 0.0:
        raise ValueError("label_speech got a signal that is all zeros: there is no speech")

    energy_threshold = peak_energy * 10.0 ** (threshold_db / 10.0)
    # A frame whose mean energy exceeds the threshold contains at least one sample whose
    # square does, so every active frame has a "loud" sample to refine to.
    amp_threshold = math.sqrt(energy_threshold)
    loud = np.abs(x) > amp_threshold
    active = energy > energy_threshold

    runs = true_runs(active)
    edge_frames = max(1, round(EDGE_SEARCH_S / (frame / sample_rate_hz)))
    segments = _sample_edges(loud, runs, frame, edge_frames)
    merged = _bridge_and_declick(
        segments, round(min_pause_s * sample_rate_hz), round(MIN_SEGMENT_S * sample_rate_hz)
    )

    rate = float(sample_rate_hz)
    pauses = tuple((merged[k][1] / rate, merged[k + 1][0] / rate) for k in range(len(merged) - 1))
    start_sample, end_sample = merged[0][0], merged[-1][1]
    return SpeechLabel(
        start_s=start_sample / rate,
        end_s=end_sample / rate,
        pauses_s=pauses,
        start_sample=start_sample,
        end_sample=end_sample,
    )


def _checked_samples(samples: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """`samples` as float64 (n,), or ValueError: not 1-D, empty, a bad rate, not finite."""
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"label_speech needs mono samples of shape (n,), got shape {x.shape}")
    if x.size == 0:
        raise ValueError("label_speech got an empty signal")
    if sample_rate_hz <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate_hz} Hz")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("label_speech got NaN or infinite samples")
    return x


def _frame_energy(x: np.ndarray, frame: int) -> np.ndarray:
    """Mean energy of each non-overlapping `frame`-sample frame of `x` from sample 0, shape
    (ceil(n / frame),); the last frame may be partial."""
    n = x.size
    n_frames = -(-n // frame)
    power = np.zeros(n_frames * frame)
    power[:n] = x * x
    counts = np.full(n_frames, frame, dtype=np.float64)
    counts[-1] = n - (n_frames - 1) * frame  # the last frame may be partial
    return power.reshape(n_frames, frame).sum(axis=1) / counts


def _sample_edges(
    loud: np.ndarray, runs: list[tuple[int, int]], frame: int, edge_frames: int
) -> list[tuple[int, int]]:
    """Each run of active frames refined to its first and last loud sample, (start, stop)
    samples: searched up to `edge_frames` frames outside the run, through frames that hold a
    loud sample; runs whose searches overlap are one segment."""
    n = loud.size
    n_frames = -(-n // frame)
    frame_has_loud = np.zeros(n_frames * frame, dtype=bool)
    frame_has_loud[:n] = loud
    frame_has_loud = frame_has_loud.reshape(n_frames, frame).any(axis=1)

    segments: list[tuple[int, int]] = []
    for first, stop in runs:
        lo = first
        while lo > 0 and first - lo < edge_frames and frame_has_loud[lo - 1]:
            lo -= 1
        hi = stop
        while hi < n_frames and hi - stop < edge_frames and frame_has_loud[hi]:
            hi += 1
        region = np.flatnonzero(loud[lo * frame : min(hi * frame, n)])
        start = lo * frame + int(region[0])
        end = lo * frame + int(region[-1]) + 1
        if segments and start < segments[-1][1]:
            # Edge searches of neighbouring runs overlapped: they are one segment.
            segments[-1] = (segments[-1][0], max(end, segments[-1][1]))
        else:
            segments.append((start, end))
    return segments


def _bridge_and_declick(
    segments: list[tuple[int, int]], min_pause: int, min_segment: int
) -> list[tuple[int, int]]:
    """`segments` (samples) with gaps shorter than `min_pause` bridged, then those shorter than
    `min_segment` dropped when a longer one exists (clicks)."""
    merged: list[tuple[int, int]] = [segments[0]]
    for start, end in segments[1:]:
        if start - merged[-1][1] < min_pause:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))

    longest = max(end - start for start, end in merged)
    if longest >= min_segment:
        merged = [(s, e) for s, e in merged if e - s >= min_segment]
    return merged


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True in a 1-D boolean array as ``[(first, stop), ...]`` (stop exclusive)."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[0::2], edges[1::2], strict=True)]


def labeller_settings() -> dict[str, float]:
    """The labeller parameters in force, as stored under ``labelled_with`` in the manifest."""
    return {
        "frame_ms": FRAME_S * 1000.0,
        "threshold_db": THRESHOLD_DB,
        "min_pause_ms": MIN_PAUSE_S * 1000.0,
        "min_segment_ms": MIN_SEGMENT_S * 1000.0,
        "edge_search_ms": EDGE_SEARCH_S * 1000.0,
    }
