"""harness.signal.activity: segments of sound with sample-accurate boundaries.

Bursts of noise and tones are placed at exact sample offsets in digital silence and in white
noise 30 dB down; detect_activity must put each boundary within 1 ms (silence) or 3 ms
(noise) of where it really is, merge bursts closer than min_gap_s and keep apart those
further apart. speech_band is causal: nothing comes out before the first input sample.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.signal.activity import detect_activity, speech_band

FS = 48000
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _burst(kind: str, n: int, rng: np.random.Generator, fs: int = FS) -> np.ndarray:
    """n samples of white noise or of a tone (200..3000 Hz, starting at phase 0)."""
    if kind == "noise":
        return 0.3 * rng.standard_normal(n)
    f = rng.uniform(200.0, 3000.0)
    return 0.5 * np.sin(2 * np.pi * f * np.arange(n) / fs)


def _scene(
    bursts: list[tuple[int, int]], total: int, kind: str, snr_db: float | None, seed: int
) -> np.ndarray:
    """`total` samples of silence (or white noise snr_db below the bursts) with bursts [a, b)."""
    rng = np.random.default_rng(seed)
    x = np.zeros(total)
    for a, b in bursts:
        x[a:b] = _burst(kind, b - a, rng)
    if snr_db is not None:
        active = np.concatenate([x[a:b] for a, b in bursts])
        rms = float(np.sqrt(np.mean(active**2)))
        x += rng.standard_normal(total) * rms * 10 ** (-snr_db / 20)
    return x


def _assert_segments(found, bursts: list[tuple[int, int]], tol_s: float) -> None:
    tol = tol_s * FS
    spans = [(round(s.start), round(s.end)) for s in found]
    assert len(found) == len(bursts), (spans, bursts)
    for seg, (a, b) in zip(found, bursts, strict=True):
        assert abs(seg.start - a) <= tol, (spans, bursts)
        assert abs(seg.end - b) <= tol, (spans, bursts)


@SETTINGS
@given(
    kind=st.sampled_from(["noise", "tone"]),
    background=st.sampled_from([None, 30.0]),
    start_s=st.floats(0.2, 1.5),
    length_s=st.floats(0.05, 1.0),
    tail_s=st.floats(0.3, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_single_burst_boundaries(kind, background, start_s, length_s, tail_s, seed):
    """One burst: start and end within 1 ms in silence, within 3 ms in white noise at 30 dB."""
    a = int(start_s * FS)
    b = a + int(length_s * FS)
    x = _scene([(a, b)], b + int(tail_s * FS), kind, background, seed)
    act = detect_activity(x, FS)
    _assert_segments(act.segments, [(a, b)], 0.001 if background is None else 0.003)


@pytest.mark.parametrize("background", [None, 30.0])
@pytest.mark.parametrize("kind", ["noise", "tone"])
def test_burst_at_known_offsets(kind, background):
    """Three bursts at fixed offsets with long silences between them come out as three."""
    bursts = [(24_000, 40_000), (60_001, 61_999), (100_007, 130_000)]
    x = _scene(bursts, 160_000, kind, background, seed=1)
    act = detect_activity(x, FS)
    _assert_segments(act.segments, bursts, 0.001 if background is None else 0.003)


def _two_bursts(first_s, gap_s, second_s, kind, background, seed):
    """A scene with two bursts (first_s, then a gap of gap_s, then second_s), 0.3 s in."""
    a1 = int(0.3 * FS)
    b1 = a1 + int(first_s * FS)
    a2 = b1 + int(gap_s * FS)
    b2 = a2 + int(second_s * FS)
    x = _scene([(a1, b1), (a2, b2)], b2 + int(0.4 * FS), kind, background, seed)
    return x, (a1, b1), (a2, b2)


@SETTINGS
@given(
    kind=st.sampled_from(["noise", "tone"]),
    background=st.sampled_from([None, 30.0]),
    min_gap_s=st.sampled_from([0.15, 0.3]),
    gap_fraction=st.floats(0.1, 0.7),
    first_s=st.floats(0.05, 0.6),
    second_s=st.floats(0.05, 0.6),
    seed=st.integers(0, 2**32 - 1),
)
def test_short_gap_merges(kind, background, min_gap_s, gap_fraction, first_s, second_s, seed):
    """Two bursts separated by a gap well under min_gap_s come out as one segment."""
    x, (a1, _), (_, b2) = _two_bursts(
        first_s, gap_fraction * min_gap_s, second_s, kind, background, seed
    )
    act = detect_activity(x, FS, min_gap_s=min_gap_s)
    _assert_segments(act.segments, [(a1, b2)], 0.001 if background is None else 0.003)


@SETTINGS
@given(
    kind=st.sampled_from(["noise", "tone"]),
    background=st.sampled_from([None, 30.0]),
    min_gap_s=st.sampled_from([0.15, 0.3]),
    gap_factor=st.floats(1.4, 4.0),
    first_s=st.floats(0.05, 0.6),
    second_s=st.floats(0.05, 0.6),
    seed=st.integers(0, 2**32 - 1),
)
def test_long_gap_stays_separate(kind, background, min_gap_s, gap_factor, first_s, second_s, seed):
    """Two bursts separated by a gap well over min_gap_s stay two segments, each timed."""
    x, first, second = _two_bursts(
        first_s, gap_factor * min_gap_s, second_s, kind, background, seed
    )
    act = detect_activity(x, FS, min_gap_s=min_gap_s)
    _assert_segments(act.segments, [first, second], 0.001 if background is None else 0.003)


@pytest.mark.parametrize("fs", [8000, 16000, 44100, 48000])
def test_boundaries_at_other_rates(fs):
    """The 1 ms accuracy in silence holds at the other common sample rates."""
    rng = np.random.default_rng(4)
    a, b = int(0.4 * fs), int(0.9 * fs)
    x = np.zeros(int(1.5 * fs))
    x[a:b] = 0.3 * rng.standard_normal(b - a)
    (seg,) = detect_activity(x, fs).segments
    assert abs(seg.start - a) <= 0.001 * fs
    assert abs(seg.end - b) <= 0.001 * fs


@pytest.mark.parametrize("level", [0.0, 1e-3, 0.3])
def test_no_burst_no_segment(level):
    """Digital silence, or steady white noise at any level, yields no segment."""
    x = level * np.random.default_rng(0).standard_normal(FS * 2)
    assert detect_activity(x, FS).segments == ()


@settings(max_examples=40, deadline=None)
@given(
    fs=st.sampled_from([8000, 16000, 44100, 48000]),
    first=st.integers(0, 5_000),
    length=st.integers(1, 3_000),
    tail=st.integers(0, 3_000),
    seed=st.integers(0, 2**32 - 1),
)
def test_speech_band_is_causal(fs, first, length, tail, seed):
    """Forward filtering puts nothing before the first nonzero input sample; backward
    filtering puts nothing after the last one."""
    rng = np.random.default_rng(seed)
    x = np.zeros(first + length + tail)
    x[first : first + length] = rng.uniform(-1, 1, length)
    x[first] = 0.5  # the first nonzero sample is exactly `first`
    x[first + length - 1] = -0.5  # and the last is exactly first + length - 1
    y = speech_band(x, fs)
    assert y.dtype == np.float64 and y.shape == x.shape
    assert np.all(y[:first] == 0.0)
    assert y[first] != 0.0
    yb = speech_band(x, fs, backward=True)
    assert np.all(yb[first + length :] == 0.0)
    assert yb[first + length - 1] != 0.0
