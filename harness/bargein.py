"""Barge-in: where the interruption played at the mouth, when the interrupted reply went
quiet at the ear, and what still played after that (docs/measurement.md, "Barge-in").

Two ways to find the stop:

- blind, from the ear's segments: the segment playing at the barge-in onset, chained while
  the pauses stay under `stop_silence_s`; refused when a room rings or the sound fades
  before that end (`harness.signal.decay.ring_down`, `_fall_before`): the end is then the
  room's, not where the agent stopped. On a bench the ear also hears the
  interruption itself; what the leakage fit could not remove of it raises the floor while it
  plays (`ClipAt.span`, used by the analysis' floor profile), and a reply that did not stand
  10 dB above that floor right up to its end cannot be told from the interruption's sound:
  refused, never reported.
- with the reply reference, by following it: the ear holds the DUT's audio, scaled and
  delayed, until the DUT stops; the stop is the sample after which the reference no longer
  explains the ear (a change point on the matched-filter increments), which neither the
  interruption's sound nor the room's ring can move much.

Pure numpy on arrays of one capture; the analysis calls these.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sl
import scipy.signal as ss

from harness.errors import InputError
from harness.signal.activity import Segment, frame_power
from harness.signal.correlate import locate, refine_lag
from harness.signal.decay import ring_down
from harness.signal.leakage import fit_leakage
from harness.signal.resample import first_sound, mono, resample


@dataclass(frozen=True)
class ClipAt:
    """The barge-in clip as found in the ref (samples of the capture).

    onset: its first sound at the mouth. user_done: its last. span: [onset, user_done).
    """

    onset: float
    user_done: float

    @property
    def span(self) -> tuple[int, int]:
        return int(self.onset), int(math.ceil(self.user_done))


def locate_clip(
    clip: np.ndarray, clip_rate: int, fs: int, ref: np.ndarray, after: float
) -> ClipAt | str:
    """Where the barge-in clip played in `ref` (after sample `after`), or a note why not."""
    clip = mono(clip)
    if clip_rate != fs:
        clip = resample(clip, clip_rate, fs)
    if not np.any(clip):
        raise InputError("the barge-in clip holds no sound")
    # A clean recording: its speech starts at its first sample within 50 dB of the peak
    # (the same rule as for a reply reference) and ends at its last.
    clip_start = first_sound(clip, -50.0)
    clip_end = len(clip) - first_sound(clip[::-1], -50.0)
    m = locate(ref, clip, fs, search=(int(after) + 1, len(ref)))
    if m.confidence < 0.5:
        return (
            f"barge-in clip not found in the ref channel (peak {m.peak:.2f}, "
            f"sidelobe {m.sidelobe:.2f}): no stop latency"
        )
    lag = refine_lag(ref, clip, m.lag_samples)
    return ClipAt(lag + clip_start, lag + clip_end)


@dataclass(frozen=True)
class BlindStop:
    """The blind stop: its sample (None when refused), why not, and the room's ring-down
    before the end of the ear's sound when one was found (ms)."""

    stop: float | None
    note: str | None = None
    ring_down_ms: float | None = None


def blind_stop(
    at: ClipAt,
    segments: tuple[Segment, ...],
    band: np.ndarray,
    fs: int,
    *,
    stop_silence_s: float,
    dry_path: bool,
    residue_at: Callable[[np.ndarray], np.ndarray] | None = None,
) -> BlindStop:
    """The interrupted reply's stop from the ear's segments (or why it cannot be placed).

    `band` is the leakage-free ear in the speech band. `residue_at(indices)` is the power
    of what the leakage fit left of the mouth's sound there (the interruption's included),
    net of the noise; None when the ear does not hear the mouth. The stop is None (with the
    note saying why) when it cannot be placed.
    """
    onset = at.onset
    active = [s for s in segments if s.end > onset]
    if not active or active[0].start > onset + stop_silence_s * fs:
        return BlindStop(
            None, "the reply was already quiet when the barge-in started: no stop latency"
        )
    stop = active[0].end
    for s in active[1:]:
        if s.start - stop < stop_silence_s * fs:
            stop = max(stop, s.end)
        else:
            break
    if residue_at is not None:
        # Where the interruption's own sound (what the leakage fit left of it) raised the
        # floor, the reply's end is only where it stopped if the reply stood well above that
        # residue right up to it; otherwise it may have gone on below it, or the chain of
        # segments ran on through the residue: it cannot be told apart.
        w_lo, w_hi = max(0, int(stop) - int(0.025 * fs)), max(0, int(stop) - int(0.005 * fs))
        last = float(np.mean(band[w_lo:w_hi] ** 2)) if w_hi > w_lo else 0.0
        residue = float(residue_at(np.array([int(stop)]))[0])
        above_db = 10 * math.log10(max(last, 1e-20) / max(residue, 1e-20))
        if above_db < 10.0:
            return BlindStop(
                None,
                f"stop latency not measured: where the reply stopped it stood only "
                f"{above_db:.0f} dB above the interruption's own sound at the ear (what the "
                "leakage fit left of it; 10 dB needed); give the reply reference, or move "
                "the ear mic closer to the DUT's speaker",
            )
    if not dry_path:
        ring = ring_down(band, int(onset), int(stop), fs)
        if ring is not None:
            # The end of what is audible is the room's, not the agent's. Where the agent
            # stopped inside the ring could be guessed from where the line starts, but on
            # the benchmark's rooms that guess was 10-300 ms late: refuse rather than guess.
            return BlindStop(
                None,
                f"stop latency not measured: the ear rings down for {ring[0]:.0f} ms before it "
                "goes quiet (a reverberant room, or a fade-out); move the ear mic closer to "
                "the DUT's speaker or damp the room, or give the reply reference",
                ring_down_ms=ring[0],
            )
        fall_db = _fall_before(band, int(onset), int(stop), fs)
        if fall_db > 25.0:
            # Not a line, but the sound still faded for tens of ms before the segment ended:
            # a ring too uneven to fit, or a fade-out; its end is not where the agent stopped.
            return BlindStop(
                None,
                f"stop latency not measured: the ear's sound fades {fall_db:.0f} dB below the "
                "reply's level before it goes quiet (a room's ring, or a fade-out), so its end "
                "is not where the agent stopped; give the reply reference",
            )
    return BlindStop(stop)


def _fall_before(band: np.ndarray, start: int, stop: int, fs: int) -> float:
    """How far (dB) the last 5-25 ms before `stop` sit below the reply's loud level (the 90th
    percentile of 5 ms frames from `start`, the barge-in, on): under ~20 dB for a cut (the
    sound is at speech level up to the end, in noise too), 30 dB or more when a ring or a
    fade led down to the end."""
    frames = frame_power(band[start:stop], max(1, int(0.005 * fs)), max(1, int(0.005 * fs)))
    if frames.size < 8:
        return 0.0
    level = 10 * np.log10(np.maximum(frames, 1e-20))
    last = 10 * np.log10(max(float(np.mean(frames[-5:-1])), 1e-20))
    return float(np.quantile(level, 0.9) - last)


def residual_after(
    segments: tuple[Segment, ...], stop: float, at: ClipAt, min_response_s: float, fs: int
) -> float:
    """Sound at the ear after `stop` and before the agent could be answering (the clip's
    end + `min_response_s`), in ms: stale audio."""
    window_end = at.user_done + min_response_s * fs
    total = sum(
        max(0.0, min(s.end, window_end) - max(s.start, stop)) for s in segments if s.start >= stop
    )
    return total / fs * 1000


def reference_stop(
    ear: np.ndarray,
    reply: np.ndarray,
    lag: float,
    drift_ppm: float | None,
    at: ClipAt,
    fs: int,
    *,
    search_s: float = 5.0,
    response_s: float = 0.04,
) -> tuple[float | None, str | None]:
    """(stop sample, note): where the ear stops holding the DUT's reply audio `reply`.

    `ear` is leakage-free; `reply` starts at its first sample (as `lag` places it in the
    ear, `drift_ppm` its clock against the capture's). Model: while the DUT plays, ear =
    h * x + other sound, x the reference placed on the ear's timeline and h the path to
    the ear (direct sound and early reflections, `response_s` long, fitted on the first
    two thirds of the reply before the barge-in, its scale g measured on the last third).
    Each reference sample x[n] that was played adds the whole of its response to the ear,
    so the matched-filter increment d[n] = 2 x[n] (h * ear)[n] - g x[n]^2 averages
    +g x^2 while the reply plays and -g x^2 after the stop (the cut-off part is missing; a
    reference that ends at the cut adds nothing). Their running sum peaks at the stop.
    Both signals are whitened first (`_whitener`). The interruption's sound and the late
    reverberation are not correlated with the reference, so they only add noise to the sum.
    None with a note when the reference does not explain the ear around the stop.

    The steps: the reference on the ear's timeline (`_reference_on_ear`), whitened, the path
    fitted and scaled (`_fit_path`), the running sum's peak, its evidence; each refusal
    carries the figures computed just before it.
    """
    rate = 1.0 + (drift_ppm or 0.0) * 1e-6
    taps, pre = max(16, int(response_s * fs)), max(4, int(0.001 * fs))
    w_lo = max(0, int(at.onset) - int(1.5 * fs))
    w_hi = min(len(ear), int(at.onset) + int(search_s * fs) + taps)
    placed = _reference_on_ear(ear, reply, lag, rate, at.onset, (w_lo, w_hi))
    if isinstance(placed, str):
        return None, placed
    x, e, onset, first, ref_end = placed
    # Whiten both by the reference's own spectrum (linear prediction): speech samples are
    # strongly correlated, so unwhitened the sum below has few independent terms and its
    # peak wanders tens of ms in a room whose ring is louder than the direct sound.
    a = _whitener(x[first:onset])
    if a is not None:
        x, e = ss.lfilter(a, [1.0], x), ss.lfilter(a, [1.0], e)
    if onset - first < 5 * taps:
        return None, "too little of the reply before the barge-in to follow the reference"
    # Fitted on the first part of the reply before the barge-in, scaled on the rest: a fit
    # also fits some of the noise, and its |h|^2 then exceeds what the ear holds of the
    # reference, which made the increments negative from the barge-in on (a stop latency of
    # 0 ms at 35-50 dB SNR, seen); measured where the fit did not look, the scale is the
    # reference's true share of the ear.
    fitted = _fit_path(e, x, first, onset, taps, pre)
    if isinstance(fitted, str):
        return None, fitted
    mf, scale, held_out = fitted
    d = 2 * x * mf - scale * x * x
    total = np.cumsum(d[onset:])
    k = onset + int(np.argmax(total))
    if k - onset < int(0.01 * fs):
        # No agent stops within 10 ms of the user's first sound (it has to hear it first);
        # a peak there means the increments never rose after the barge-in: no evidence.
        return None, "the reply reference is not followed past the barge-in's start"
    corr = _explained_before(x, mf, k, fs)  # the evidence
    if corr < 0.3:
        return None, (
            f"stop latency not measured: the reply reference explains the ear only weakly "
            f"before its stop (correlation {corr:.2f} over 50 ms)"
        )
    # The whitener smears each sample over the next `order` ones, so a reference that ends
    # where the DUT stopped peaks that much after its end: no stop is later than the last
    # sample of the reference itself.
    k = min(k, ref_end - 1)
    if not _peak_resolved(total, k - onset, ref_end - onset, d, x, scale, held_out, fs):
        return None, (
            "stop latency not measured: the reply reference does not pin the stop to 5 ms "
            "(the ear's other sound and the room's ring are as loud as what it still holds "
            "of the reply there)"
        )
    return float(w_lo + k + 1), None


def _reference_on_ear(
    ear: np.ndarray,
    reply: np.ndarray,
    lag: float,
    rate: float,
    at_onset: float,
    window: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, int, int, int] | str:
    """(x, e, onset, first, ref_end): the reference placed on the ear's timeline (at `lag`,
    played `rate` times the capture's rate) and the ear, over `window` (ear samples lo, hi);
    the barge-in's onset (`at_onset`, ear samples), the reference's first sample and the one
    after its last, in window samples. A str (the refusal) when the reference ends before the
    barge-in."""
    w_lo, w_hi = window
    m = np.arange(len(reply))
    n = np.round(lag + m * rate).astype(np.int64)
    ok = (n >= w_lo) & (n < w_hi)
    if not ok.any() or n[ok].max() < at_onset:
        return "the reply reference ends before the barge-in: its stop cannot be followed"
    x = np.zeros(w_hi - w_lo)
    x[n[ok] - w_lo] = reply[m[ok]]
    e = np.asarray(ear[w_lo:w_hi], dtype=np.float64)
    onset = int(at_onset) - w_lo
    first = int(n[ok].min()) - w_lo
    ref_end = int(n[ok].max()) + 1 - w_lo
    return x, e, onset, first, ref_end


def _fit_path(
    e: np.ndarray, x: np.ndarray, first: int, onset: int, taps: int, pre: int
) -> tuple[np.ndarray, float, slice] | str:
    """(mf, scale, held_out): the path from the reference `x` to the ear `e`, fitted on the
    first two thirds of the reply before the barge-in (`first`..`onset`); mf = (h * e), what
    the ear holds of each reference sample's response; its scale measured on the last third
    (`held_out`). A str (the refusal) when the reference is not heard."""
    mid = first + (onset - first) * 2 // 3
    h = fit_leakage(e, x, (first, mid), taps=taps, pre_samples=pre)
    if h is None or not np.any(h):
        return "the reply reference is not heard at the ear before the barge-in"
    # (h * ear)[i] = sum_k h[k] ear[i + k - pre]: what the ear holds of x[i]'s response.
    mf = ss.correlate(e, h, mode="full", method="fft")[len(h) - 1 - pre :][: len(e)]
    mf = np.pad(mf, (0, len(e) - len(mf)))
    held_out = slice(mid, onset)
    scale = float(np.dot(x[held_out], mf[held_out])) / max(
        float(np.dot(x[held_out], x[held_out])), 1e-30
    )
    if scale <= 0:
        return "the reply reference is not heard at the ear before the barge-in"
    return mf, scale, held_out


def _explained_before(x: np.ndarray, mf: np.ndarray, k: int, fs: int) -> float:
    """How well the reference `x` explains the ear (`mf`, its matched filter) over the 50 ms
    before sample `k`: their normalised correlation."""
    lo = max(0, k - int(0.05 * fs))
    xw, mw = x[lo : k + 1], mf[lo : k + 1]
    return float(np.dot(xw, mw) / math.sqrt(max(np.dot(xw, xw) * np.dot(mw, mw), 1e-30)))


def _peak_resolved(
    total: np.ndarray,
    k: int,
    end: int,
    d: np.ndarray,
    x: np.ndarray,
    scale: float,
    held_out: slice,
    fs: int,
    resolution_s: float = 0.005,
) -> bool:
    """Whether the running sum's peak `k` pins the stop to `resolution_s`.

    Its noise is the increments' scatter on the held-out part of the reply (summed over
    1 ms blocks, so that correlated samples count as what they are), as one standard
    deviation of a 5 ms sum. At the reference's own end (within 5 ms of it) the sum must
    still rise over the last 5 ms: the ear held the reference up to its end. Before it, the
    peak must stand that much above the sum 5 ms before and 5 ms after it: the ear stopped
    holding a reference that went on. The rest (a peak the ear's other sound moved, in a
    room whose ring is louder than what is left of the reply) is refused.
    """
    nu = d[held_out] - scale * x[held_out] ** 2
    b = max(1, int(0.001 * fs))
    nb = len(nu) // b
    m = int(resolution_s * fs)
    if nb < 8 or k - m < 0:
        return False
    margin = float(np.sqrt(np.var(nu[: nb * b].reshape(nb, b).sum(axis=1)) * m / b))
    rise = total[k] - total[k - m]
    if k + m >= min(end, len(total)):
        return rise > 0
    return rise >= margin and total[k] - total[k + m] >= margin


def _whitener(x: np.ndarray, order: int = 24) -> np.ndarray | None:
    """Prediction-error filter [1, -a1, ..., -ap] of `x` (autocorrelation method)."""
    if len(x) < 20 * order:
        return None
    n = len(x)
    r = np.array([float(np.dot(x[: n - k], x[k:])) for k in range(order + 1)])
    if r[0] <= 0:
        return None
    r = r.copy()
    r[0] *= 1.0 + 1e-3
    try:
        a = sl.solve_toeplitz(r[:order], r[1 : order + 1])
    except (np.linalg.LinAlgError, ValueError):
        return None
    return np.concatenate(([1.0], -a))
