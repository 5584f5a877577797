"""Find where sound is: noise floor, segments of activity, and sample-accurate boundaries.

The definition of an onset used everywhere in tympan (docs/measurement.md says it in words):

1. The channel is band-limited to the speech band (120 Hz to 6 kHz, zero-phase), which keeps
   mains hum, fan rumble and hiss out of the decision.
2. Segments are found on a 10 ms power envelope (2.5 ms hop) with hysteresis: a segment needs
   a frame above the *high* threshold and extends while frames stay above the *low* one.
   Both thresholds sit above the noise floor by a margin that grows with how much the floor
   itself fluctuates. Segments closer than `min_gap_s` are merged; shorter than
   `min_segment_s` are dropped.
3. Each boundary is then refined to the sample with a CUSUM change point on the sample
   energy: the onset is the sample after which the energy persistently exceeds twice the
   local background level (the background measured just before the segment), i.e. the first
   sample from which the reply is at least as loud as what was there before it. Ends are the
   mirror image, with the background measured just after.

Everything here takes arrays and returns values; no files, no clocks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.signal as ss

FRAME_S = 0.010
HOP_S = 0.0025
SPEECH_BAND_HZ = (120.0, 6000.0)
# The change point is where energy exceeds KAPPA times the local background mean.
_KAPPA = 2.0
# Activity is looked for at most this far below the loudest frames (a clean file's pauses
# hold faint breath and TTS hiss that is not speech).
DYNAMIC_RANGE_DB = 50.0
_MAX_SPREAD_DB = 5.0


@dataclass(frozen=True)
class Segment:
    """A stretch of activity, in samples [start, end) of the analysed channel."""

    start: float
    end: float


@dataclass(frozen=True)
class NoiseFloor:
    """Background level of a channel.

    power: mean energy per sample (linear, full scale = 1.0) of the quiet frames.
    spread_db: standard deviation of the quiet frames' level in dB (how much the floor moves).
    ceiling: the 98th percentile frame power of a stretch known to hold only noise, when
        one was given: how loud the noise itself gets (babble has loud moments).
    """

    power: float
    spread_db: float
    ceiling: float | None = None

    @property
    def level_db(self) -> float:
        return float(10 * np.log10(max(self.power, 1e-20)))


@functools.lru_cache(maxsize=8)
def _speech_sos(sample_rate_hz: int) -> np.ndarray:
    lo, hi = SPEECH_BAND_HZ
    hi = min(hi, 0.45 * sample_rate_hz)
    return ss.butter(2, [lo, hi], btype="bandpass", fs=sample_rate_hz, output="sos")


def speech_band(x: np.ndarray, sample_rate_hz: int, *, backward: bool = False) -> np.ndarray:
    """Band-pass of `x` (1-D) to the speech band; float64 out, same length.

    Causal (forward) filtering never puts energy before an onset, and at speech
    frequencies it delays by well under 0.1 ms; a zero-phase filter would smear a sharp
    onset several ms earlier. `backward=True` runs the same filter in reverse time, which
    never puts energy after an end: use it to time ends.
    """
    sos = _speech_sos(int(sample_rate_hz))
    x = np.asarray(x, dtype=np.float64)
    if backward:
        return ss.sosfilt(sos, x[::-1])[::-1]
    return ss.sosfilt(sos, x)


def frame_power(x: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Mean energy per sample of x[i*hop : i*hop + frame] for every full frame i."""
    if len(x) < frame:
        return np.zeros(0)
    cum = np.concatenate(([0.0], np.cumsum(np.asarray(x, dtype=np.float64) ** 2)))
    starts = np.arange(0, len(x) - frame + 1, hop)
    return (cum[starts + frame] - cum[starts]) / frame


def estimate_floor(power: np.ndarray, *, quantile: float = 0.2) -> NoiseFloor:
    """Noise floor from frame powers: the level of the quietest `quantile` of frames.

    Robust to the reply itself being present in most of the stretch, as long as some part
    of it is quiet. Levels are clamped at -120 dBFS (digital silence is not infinitely
    quiet) and the floor is never put more than DYNAMIC_RANGE_DB below the loud frames, so
    a clean recording's near-silent pauses still count as pauses.
    """
    if power.size == 0:
        return NoiseFloor(1e-12, 0.0)
    level = 10 * np.log10(np.maximum(power, 1e-12))
    cut = np.quantile(level, quantile)
    quiet = level[level <= cut + 1e-9]
    spread = float(min(np.std(quiet), _MAX_SPREAD_DB)) if quiet.size > 2 else 0.0
    loud = float(np.quantile(level, 0.99))
    floor_db = max(float(10 * np.log10(np.mean(10 ** (quiet / 10)))), loud - DYNAMIC_RANGE_DB)
    return NoiseFloor(float(10 ** (floor_db / 10)), spread)


def floor_from_noise(power: np.ndarray, loud_power: float) -> NoiseFloor:
    """Noise floor from frames known to hold nothing but noise (a lead-in before the turn).

    Its `ceiling` (98th percentile) lets the thresholds sit above the noise's own loud
    moments rather than above its average. Never more than DYNAMIC_RANGE_DB below
    `loud_power` (see estimate_floor).
    """
    level = 10 * np.log10(np.maximum(power, 1e-12))
    lowest = 10 * np.log10(max(loud_power, 1e-12)) - DYNAMIC_RANGE_DB
    mean_db = max(float(10 * np.log10(np.mean(10 ** (level / 10)))), lowest)
    ceiling_db = max(float(np.quantile(level, 0.98)), lowest)
    spread = float(min(np.std(level), _MAX_SPREAD_DB))
    return NoiseFloor(float(10 ** (mean_db / 10)), spread, float(10 ** (ceiling_db / 10)))


def quiet_frames(
    power: np.ndarray,
    *,
    context_margin_db: float = 15.0,
    guard_before_s: float = 0.05,
    guard_after_s: float = 0.1,
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Which frames of `power` (a stretch with no reply yet: a lead-in) hold only noise.

    Sound that the DUT made before the question (a greeting, an earcon, the previous reply,
    an idle prompt) sits in such a stretch too; estimating the noise over it makes the noise
    as loud as the DUT's voice, and the reply that follows then looks like more noise. So the
    stretch is first segmented against its own quietest tenth, and segments whose mean level
    stands `context_margin_db` or more above that are taken out (babble's segments stand
    about 9 dB above it on average, its loud moments more: they stay), with the room's ring
    after them (down to 3 dB above that quiet tenth) and guards (the soft start before, the
    ring's last trace after). What the noise does itself (white noise wavers by a dB,
    babble by 10-12 dB at its loud moments) stays; runs of noise under 50 ms are dropped.

    Returns (a boolean mask over the frames: True = noise, the excluded segments as
    [first, end) frame spans).
    """
    keep = np.ones(len(power), dtype=bool)
    if power.size == 0:
        return keep, []
    floor0 = estimate_floor(power, quantile=0.1)
    high, low = thresholds(floor0)
    found = find_segments(
        power,
        high,
        low,
        hop=1,
        frame=1,
        min_gap_frames=int(round(0.15 / HOP_S)),
        min_segment_frames=max(1, int(round(0.03 / HOP_S))),
    )
    before, after = int(round(guard_before_s / HOP_S)), int(round(guard_after_s / HOP_S))
    context: list[tuple[int, int]] = []
    for seg in found:
        a, b = int(seg.start), int(seg.end)
        mean_db = 10 * np.log10(max(float(power[a:b].mean()), 1e-20) / max(floor0.power, 1e-20))
        if mean_db < context_margin_db:
            continue
        # The room's ring after it is the DUT's sound too: follow it down to the floor.
        quiet = np.flatnonzero(power[b:] <= floor0.power * 10 ** (3.0 / 10))
        b = b + int(quiet[0]) if quiet.size else len(power)
        context.append((a, b))
        keep[max(0, a - before) : min(len(power), b + after)] = False
    # A few frames between two stretches of sound say little about the noise.
    for lo, hi in _runs(keep):
        if hi - lo < int(round(0.05 / HOP_S)):
            keep[lo:hi] = False
    return keep, context


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index spans of the True runs of a boolean mask."""
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def thresholds(floor: NoiseFloor) -> tuple[float, float]:
    """(high, low) power thresholds above `floor` for segment detection."""
    margin_high_db = max(9.0, 3.0 * floor.spread_db)
    margin_low_db = max(5.0, 1.5 * floor.spread_db)
    high = floor.power * 10 ** (margin_high_db / 10)
    low = floor.power * 10 ** (margin_low_db / 10)
    if floor.ceiling is not None:
        # 6 dB above the loudest noise to start a segment, 2 dB above it to continue one.
        high = max(floor.ceiling * 10 ** (6 / 10), floor.power * 10 ** (7 / 10))
        low = max(floor.ceiling * 10 ** (2 / 10), floor.power * 10 ** (3 / 10))
    return high, low


def find_segments(
    power: np.ndarray,
    high: float | np.ndarray,
    low: float | np.ndarray,
    *,
    hop: int,
    frame: int,
    min_gap_frames: int,
    min_segment_frames: int,
) -> list[Segment]:
    """Hysteresis segmentation of a frame-power envelope; boundaries in samples (frame grid)."""
    above_low = np.asarray(power > low)
    above_high = np.asarray(power > high)
    # Runs of frames above `low` that hold at least one frame above `high`.
    d = np.diff(np.concatenate(([0], above_low.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1  # inclusive ends
    high_cum = np.concatenate(([0], np.cumsum(above_high)))
    keep = high_cum[ends + 1] - high_cum[starts] > 0
    segments: list[list[int]] = []
    for s, e in zip(starts[keep].tolist(), ends[keep].tolist(), strict=True):
        if segments and s - segments[-1][1] <= min_gap_frames:
            segments[-1][1] = e
        else:
            segments.append([s, e])
    out = []
    for s, e in segments:
        if e - s + 1 >= min_segment_frames:
            # Frame s starts at s*hop; the last active frame covers up to e*hop + frame.
            out.append(Segment(float(s * hop), float(e * hop + frame)))
    return out


def refine_onset(y: np.ndarray, approx: int, sample_rate_hz: int, floor_power: float) -> float:
    """Sample-accurate onset near `approx` in band-limited `y` (CUSUM change point).

    The background level is measured in the 100 ms that end 20 ms before `approx` (never
    below `floor_power`, nor below 50 dB under the level just after `approx`, so that the
    band-pass filter's faint pre-ringing in digital silence is not taken for sound); the
    onset is the argmin of the cumulative sum of (energy - KAPPA * background) over a
    window around `approx`.
    """
    fs = sample_rate_hz
    pre_lo, pre_hi = max(0, approx - int(0.12 * fs)), max(0, approx - int(0.02 * fs))
    post = y[approx : approx + int(0.03 * fs)]
    background = max(floor_power, float(np.mean(post**2)) * 1e-5 if post.size else 0.0)
    if pre_hi - pre_lo > int(0.01 * fs):
        background = max(background, float(np.median(frame_power(y[pre_lo:pre_hi], 48, 24))))
    lo = max(0, approx - int(0.03 * fs))
    hi = min(len(y), approx + int(0.02 * fs))
    if hi - lo < 3:
        return float(approx)
    e = y[lo:hi] ** 2 - _KAPPA * background
    s = np.concatenate(([0.0], np.cumsum(e)))
    return float(lo + int(np.argmin(s)))


def refine_offset(y: np.ndarray, approx: int, sample_rate_hz: int, floor_power: float) -> float:
    """Sample-accurate end (one past the last active sample) near `approx`; mirror of onset."""
    rev = y[::-1]
    n = len(y)
    onset_rev = refine_onset(rev, n - approx, sample_rate_hz, floor_power)
    return float(n - onset_rev)


@dataclass(frozen=True)
class Activity:
    """Result of activity detection on one channel.

    segments: refined segments in samples of the analysed channel.
    floor: the noise floor used (speech band).
    band: the channel band-limited to the speech band (forward filtered), for level checks.
    noise_spans: [lo, hi) sample spans the floor was learnt from (empty: the quietest frames
        of the whole channel).
    lead_context: [lo, hi) sample spans of sound found in the noise region and left out of
        the noise (the DUT's own earlier sound).
    """

    segments: tuple[Segment, ...]
    floor: NoiseFloor
    band: np.ndarray
    noise_spans: tuple[tuple[int, int], ...] = ()
    lead_context: tuple[tuple[int, int], ...] = ()


def detect_activity(
    x: np.ndarray,
    sample_rate_hz: int,
    *,
    floor: NoiseFloor | None = None,
    min_gap_s: float = 0.15,
    min_segment_s: float = 0.03,
    floor_profile: Callable[[np.ndarray], np.ndarray] | None = None,
    noise_region: tuple[int, int] | None = None,
) -> Activity:
    """Segments of sound in `x` (1-D, raw), with sample-accurate boundaries.

    `floor` defaults to the noise in `noise_region` [lo, hi) samples, a stretch with no
    reply in it yet (a lead-in), less any sound the DUT made there before (`quiet_frames`),
    when that leaves at least 150 ms; else to the quietest fifth of `x`'s frames (in the
    speech band). Onsets are
    timed on the forward-filtered band, ends on the backward-filtered one (see speech_band).
    `floor_profile`, a power for each sample index it is given, raises the floor where
    something known is in the way (the residue of the mouth's leakage while the user speaks
    and while the room still rings after): the floor used at each frame is the larger of
    the two.
    """
    fs = sample_rate_hz
    y = speech_band(x, fs)
    frame, hop = max(1, int(FRAME_S * fs)), max(1, int(HOP_S * fs))
    power = frame_power(y, frame, hop)
    noise_spans: tuple[tuple[int, int], ...] = ()
    lead_context: tuple[tuple[int, int], ...] = ()
    if floor is None:
        floor = estimate_floor(power)
        if noise_region is not None and power.size:
            lo, hi = (max(0, noise_region[0]) // hop, max(0, noise_region[1] - frame) // hop)
            keep, found = quiet_frames(power[lo:hi])
            lead_context = tuple(((lo + a) * hop, (lo + b - 1) * hop + frame) for a, b in found)
            if keep.sum() * HOP_S >= 0.15:
                floor = floor_from_noise(power[lo:hi][keep], float(np.quantile(power, 0.99)))
                noise_spans = tuple(
                    ((lo + a) * hop, (lo + b - 1) * hop + frame) for a, b in _runs(keep)
                )
                if keep.all():  # nothing taken out: the region as given
                    noise_spans = ((max(0, noise_region[0]), noise_region[1]),)
    high, low = thresholds(floor)
    if floor_profile is not None and power.size:
        starts = np.arange(len(power)) * hop + frame // 2
        local = np.maximum(floor_profile(starts), floor.power)
        high = high * local / floor.power
        low = low * local / floor.power
    coarse = find_segments(
        power,
        high,
        low,
        hop=hop,
        frame=frame,
        min_gap_frames=int(round(min_gap_s / HOP_S)),
        min_segment_frames=max(1, int(round(min_segment_s / HOP_S))),
    )
    refined = []
    for seg in coarse:
        # The coarse start is the first frame above `low`; its window may begin up to a
        # frame before the true onset, so refine around the middle of that first frame.
        start = refine_onset(y, int(seg.start) + frame // 2, fs, floor.power)
        # Ends are timed on the band filtered backwards in time, computed locally: 250 ms
        # after the end lets the reversed filter settle before it reaches the end.
        e_approx = int(seg.end) - frame // 2
        lo, hi = max(0, e_approx - int(0.2 * fs)), min(len(x), e_approx + int(0.25 * fs))
        local = speech_band(x[lo:hi], fs, backward=True)
        end = lo + refine_offset(local, e_approx - lo, fs, floor.power)
        if end > start:
            refined.append(Segment(start, end))
    return Activity(tuple(refined), floor, y, noise_spans, lead_context)
