"""Clock sync: fit device microseconds to host monotonic microseconds from PING/PONG samples.

Pure functions, no I/O, no clocks. One exchange gives four timestamps (a `PingSample`):
the host sends at ``t_host_tx_us``, the device receives at ``t_device_rx_us`` and answers at
``t_device_tx_us`` (device clock), the host reads the answer at ``t_host_rx_us``. By
causality the device's midpoint ``(rx + tx) / 2`` happened somewhere inside the host window
``[t_host_tx_us + d, t_host_rx_us - d]`` where ``d`` is the device's own turnaround: the
midpoint estimate ``host_mid - device_mid`` is off by at most half the network round trip
``rtt_us = (t_host_rx - t_host_tx) - (t_device_tx - t_device_rx)``.

`fit_clock` takes a first line by least squares through the fastest round trips (queueing
only ever adds delay), then refines it with the causality bounds of every exchange: the
device received after the host sent and answered before the host read, so the lines
``host - device = offset + slope * (device - t_ref)`` that respect every exchange form a
convex set that contains the true clock. The fit is a line inside that set, and its
``uncertainty_us`` is a guarantee, not a standard deviation: no line of the set is further
from it at the reference point (the middle of the fastest exchanges); away from that point
it grows by ``drift_uncertainty_ppm`` (`ClockFit.uncertainty_at_us`). Many exchanges beat
one fast one: the best uplink and the best downlink need not be the same exchange. If the
bounds contradict each other (a clock that is not linear), it falls back to least squares
with a residual-based bound and says so (``consistent=False``).

The host clock is ``time.monotonic_ns() // 1000``, the clock the reference agent stamps
its telemetry with (``device.agent.events.now_us``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: Fraction of the samples `fit_clock` keeps (the fastest round trips).
DEFAULT_KEEP_FRACTION = 0.25
#: Below this time span the drift is not fitted (too short to tell drift from jitter), µs.
MIN_DRIFT_SPAN_US = 200_000


class ClockFitError(ValueError):
    """Samples that cannot give a clock fit (none at all, or none causal)."""


@dataclass(frozen=True)
class PingSample:
    """One PING/PONG exchange: host times on the host clock, device times on the device's."""

    t_host_tx_us: int
    t_device_rx_us: int
    t_device_tx_us: int
    t_host_rx_us: int

    @property
    def rtt_us(self) -> int:
        """Round trip minus the device's own turnaround, µs (the part the link took)."""
        return (self.t_host_rx_us - self.t_host_tx_us) - (self.t_device_tx_us - self.t_device_rx_us)

    @property
    def host_mid_us(self) -> float:
        """Midpoint of the host's send and receive, host µs."""
        return (self.t_host_tx_us + self.t_host_rx_us) / 2.0

    @property
    def device_mid_us(self) -> float:
        """Midpoint of the device's receive and send, device µs."""
        return (self.t_device_rx_us + self.t_device_tx_us) / 2.0

    def is_causal(self) -> bool:
        """True when the times are ordered (device turnaround >= 0, fits in the host window)."""
        return (
            self.t_host_rx_us >= self.t_host_tx_us
            and self.t_device_tx_us >= self.t_device_rx_us
            and self.rtt_us >= 0
        )


@dataclass(frozen=True)
class ClockFit:
    """Device µs -> host µs: ``host = t_ref_host_us + (device - t_ref_device_us) / (1 + drift)``.

    Attributes:
        offset_us: host minus device at the reference point, µs.
        drift_ppm: how much faster the device clock runs than the host's, parts per million
            (+50: the device counts 50 µs too many per host second; 0.0 when the samples span
            less than `MIN_DRIFT_SPAN_US`, see `drift_fitted`).
        uncertainty_us: bound on ``|to_host_us(t) - true host time|`` at the reference
            point ``t_ref_device_us`` (the middle of the fastest exchanges), µs; elsewhere
            see `uncertainty_at_us`.
        rtt_us_p50, rtt_us_min, rtt_us_max: link round trips over all causal samples, µs.
        samples: samples given; used: samples kept for the fit.
        span_us: device-time span of the kept samples, µs.
        t_ref_device_us, t_ref_host_us: the reference point (mean of the kept samples).
        residual_us_rms: RMS residual of the kept samples around the line, µs.
        drift_fitted: whether the drift was fitted (else pinned to 0).
        drift_uncertainty_ppm: bound on the drift's error: each kept midpoint is off by at
            most rtt/2, and a least-squares slope moves by at most
            ``sum(|x - mean| * rtt / 2) / sum((x - mean)^2)`` for such errors (0 when not fitted).
        consistent: True when every exchange fits one straight clock line: then offset,
            drift and both bounds come from the causality bounds (see `_bounded_fit`);
            False: least squares with the residual-based bounds above.
    """

    offset_us: float
    drift_ppm: float
    uncertainty_us: float
    rtt_us_p50: float
    rtt_us_min: int
    rtt_us_max: int
    samples: int
    used: int
    span_us: int
    t_ref_device_us: float
    t_ref_host_us: float
    residual_us_rms: float
    drift_fitted: bool
    drift_uncertainty_ppm: float
    consistent: bool = True

    def to_host_us(self, t_device_us: int) -> int:
        """Map a device time (µs, this boot's clock) to host monotonic µs."""
        return round(
            self.t_ref_host_us
            + (t_device_us - self.t_ref_device_us) / (1.0 + self.drift_ppm * 1e-6)
        )

    def to_device_us(self, t_host_us: int) -> int:
        """Inverse of `to_host_us`: host monotonic µs to device µs."""
        return round(
            self.t_ref_device_us + (t_host_us - self.t_ref_host_us) * (1.0 + self.drift_ppm * 1e-6)
        )

    def uncertainty_at_us(self, t_device_us: int) -> float:
        """Bound on the mapping error at device time ``t_device_us``, µs: `uncertainty_us`
        at the reference point, growing by `drift_uncertainty_ppm` with distance from it."""
        return self.uncertainty_us + abs(t_device_us - self.t_ref_device_us) * (
            self.drift_uncertainty_ppm * 1e-6
        )

    def to_json(self) -> dict[str, Any]:
        """Plain dict (floats rounded to 0.01 µs / 0.001 ppm)."""
        doc = asdict(self)
        for key, value in doc.items():
            if isinstance(value, float):
                doc[key] = round(value, 3 if key == "drift_ppm" else 2)
        return doc


def fastest(
    samples: Sequence[PingSample], keep_fraction: float = DEFAULT_KEEP_FRACTION
) -> list[PingSample]:
    """The causal samples with the shortest round trips: ``ceil(keep_fraction * n)``, >= 1
    (>= 2 when there are two), in their original order."""
    causal = [s for s in samples if s.is_causal()]
    if not causal:
        return []
    n_keep = max(min(2, len(causal)), math.ceil(keep_fraction * len(causal)))
    ranked = sorted(range(len(causal)), key=lambda i: causal[i].rtt_us)[:n_keep]
    return [causal[i] for i in sorted(ranked)]


def fit_clock(
    samples: Sequence[PingSample],
    keep_fraction: float = DEFAULT_KEEP_FRACTION,
    *,
    fit_drift: bool = True,
) -> ClockFit:
    """Fit offset and drift from PING/PONG samples of one device boot.

    Args:
        samples: exchanges, any order, all from the same device boot (its clock restarts).
        keep_fraction: fraction of the causal samples kept, fastest round trips first.
        fit_drift: False pins the drift to 0 (a single burst too short to tell).

    Returns:
        The fit. The drift is fitted only when the kept samples span at least
        `MIN_DRIFT_SPAN_US` of device time.

    Raises:
        ClockFitError: no samples, or none whose times are causally ordered.

    The steps: the fastest exchanges (`fastest`), their least-squares line (`_line`), the
    bounds every causal exchange puts on the clock (`_bounded_fit`), or when those contradict
    each other the line with a residual-based bound (`_residual_fit`).
    """
    if not samples:
        raise ClockFitError("no PING/PONG samples to fit")
    kept = fastest(samples, keep_fraction)
    if not kept:
        raise ClockFitError(
            f"none of {len(samples)} PING/PONG samples is causal (device turnaround or round "
            "trip negative): the device's PONG timestamps are wrong"
        )
    rtts = [s.rtt_us for s in samples if s.is_causal()]
    line = _line(kept, fit_drift)
    common = {
        "rtt_us_p50": float(statistics.median(rtts)),
        "rtt_us_min": min(rtts),
        "rtt_us_max": max(rtts),
        "samples": len(samples),
        "used": len(kept),
        "span_us": round(line.span),
        "t_ref_device_us": line.x_ref,
        "residual_us_rms": math.sqrt(statistics.fmean(r * r for r in line.residuals)),
        "drift_fitted": line.drift_fitted,
    }
    # every causal exchange bounds the clock (slow ones just never bind), so all take part
    causal = [s for s in samples if s.is_causal()]
    bounded = _bounded_fit(causal, line.x_ref, line.slope if line.drift_fitted else 0.0)
    if bounded is not None:
        offset, slope_hat, bound, (s_lo, s_hi) = bounded
        drift_ppm = _ppm(slope_hat)
        drift_bound = max(abs(_ppm(s_lo) - drift_ppm), abs(_ppm(s_hi) - drift_ppm))
        return ClockFit(
            offset_us=offset,
            drift_ppm=drift_ppm,
            uncertainty_us=bound,
            t_ref_host_us=line.x_ref + offset,
            drift_uncertainty_ppm=drift_bound,
            consistent=True,
            **common,
        )
    return _residual_fit(line, kept, common)


@dataclass(frozen=True)
class _Line:
    """The least-squares line of (host - device) against device time over the kept exchanges
    (µs): their device times `xs`, centred on `x_ref` and `d_ref`; `slope` 0 unless
    `drift_fitted`; `sxx` the spread of `xs` it was fitted with (0 when not fitted)."""

    xs: list[float]
    x_ref: float
    d_ref: float
    span: float
    slope: float
    drift_fitted: bool
    sxx: float
    residuals: list[float]


def _line(kept: list[PingSample], fit_drift: bool) -> _Line:
    """The least-squares line through `kept`; a drift only when `fit_drift`, two or more
    exchanges and a span of `MIN_DRIFT_SPAN_US` of device time."""
    xs = [s.device_mid_us for s in kept]
    ys = [s.host_mid_us for s in kept]
    x_ref = statistics.fmean(xs)
    # offsets relative to the device time: small numbers, so float64 keeps sub-µs precision
    ds = [y - x for x, y in zip(xs, ys, strict=True)]
    d_ref = statistics.fmean(ds)
    span = max(xs) - min(xs)
    slope = 0.0  # d(host - device)/d(device) = 1 / (1 + drift) - 1
    sxx = 0.0
    drift_fitted = fit_drift and len(kept) >= 2 and span >= MIN_DRIFT_SPAN_US
    if drift_fitted:
        sxx = sum((x - x_ref) ** 2 for x in xs)
        sxy = sum((x - x_ref) * (d - d_ref) for x, d in zip(xs, ds, strict=True))
        slope = sxy / sxx
    residuals = [d - (d_ref + slope * (x - x_ref)) for x, d in zip(xs, ds, strict=True)]
    return _Line(xs, x_ref, d_ref, span, slope, drift_fitted, sxx, residuals)


def _residual_fit(line: _Line, kept: list[PingSample], common: dict) -> ClockFit:
    """The fit when the causality bounds contradict each other (a clock that is not linear
    over the window, or timestamps taken in the wrong place): least squares, residual-based
    bound."""
    bound = max(abs(r) + s.rtt_us / 2.0 for r, s in zip(line.residuals, kept, strict=True))
    drift_bound = 0.0
    if line.drift_fitted:
        drift_bound = (
            sum(abs(x - line.x_ref) * s.rtt_us / 2.0 for x, s in zip(line.xs, kept, strict=True))
            / line.sxx
            * 1e6
        )
    return ClockFit(
        offset_us=line.d_ref,
        drift_ppm=_ppm(line.slope),
        uncertainty_us=bound,
        t_ref_host_us=line.x_ref + line.d_ref,
        drift_uncertainty_ppm=drift_bound,
        consistent=False,
        **common,
    )


def _ppm(slope: float) -> float:
    """Device drift in ppm from the slope of (host - device) against device time."""
    return (1.0 / (1.0 + slope) - 1.0) * 1e6


_SLOPE_RANGE = 2e-3  # slopes searched around the least-squares one: ±2000 ppm, past any crystal
_ITERATIONS = 80


def _bounded_fit(
    kept: Sequence[PingSample], x_ref: float, prior_slope: float
) -> tuple[float, float, float, tuple[float, float]] | None:
    """Offset and slope from the causality bounds, and a guaranteed error bound.

    Each exchange says: the device's receive happened after the host sent, its send before
    the host received. For a line ``host - device = o + s * (device - x_ref)`` that gives
    ``o >= a_i - s * b_i`` (receive) and ``o <= c_i - s * e_i`` (send). The lines that satisfy
    every exchange form a convex set containing the true clock; the estimate is a line in
    it (slope nearest ``prior_slope``, offset in the middle), and the bound is how far any
    other line of the set strays from it over the sync window.

    Returns ``(offset_us, slope, bound_us, (slope_min, slope_max))`` or None when the set is
    empty (the exchanges contradict a linear clock).
    """
    lo_a = [s.t_host_tx_us - s.t_device_rx_us for s in kept]
    lo_b = [s.t_device_rx_us - x_ref for s in kept]
    hi_a = [s.t_host_rx_us - s.t_device_tx_us for s in kept]
    hi_b = [s.t_device_tx_us - x_ref for s in kept]
    lo_pairs = list(zip(lo_a, lo_b, strict=True))
    hi_pairs = list(zip(hi_a, hi_b, strict=True))

    def lo(s: float) -> float:
        return max(a - s * b for a, b in lo_pairs)

    def hi(s: float) -> float:
        return min(a - s * b for a, b in hi_pairs)

    def width(s: float) -> float:  # concave in s
        return hi(s) - lo(s)

    left, right = prior_slope - _SLOPE_RANGE, prior_slope + _SLOPE_RANGE
    best = prior_slope
    if width(best) < 0:
        best = _argmax(width, left, right)
        if width(best) < 0:
            return None
    s_min = _edge(width, best, left)
    s_max = _edge(width, best, right)
    slope = min(max(prior_slope, s_min), s_max)
    offset = (lo(slope) + hi(slope)) / 2.0
    bound = 0.0
    for dx in (0.0,):  # at the reference point; `ClockFit.uncertainty_at_us` goes further

        def top(s: float, dx: float = dx) -> float:  # concave: the highest line at dx
            return hi(s) + s * dx

        def bottom(s: float, dx: float = dx) -> float:  # convex: the lowest line at dx
            return lo(s) + s * dx

        upper = max(top(s) for s in (_argmax(top, s_min, s_max), s_min, s_max))
        lower = min(bottom(s) for s in (_argmax(lambda s: -bottom(s), s_min, s_max), s_min, s_max))
        line = offset + slope * dx
        bound = max(bound, upper - line, line - lower)
    return offset, slope, bound, (s_min, s_max)


def _argmax(f: Any, left: float, right: float) -> float:
    """Where a concave ``f`` peaks on ``[left, right]`` (ternary search)."""
    for _ in range(_ITERATIONS):
        m1 = left + (right - left) / 3.0
        m2 = right - (right - left) / 3.0
        if f(m1) < f(m2):
            left = m1
        else:
            right = m2
    return (left + right) / 2.0


def _edge(width: Any, inside: float, outside: float) -> float:
    """The end of ``width >= 0`` between ``inside`` (>= 0) and ``outside`` (bisection); the
    returned slope errs outwards, so bounds computed with it stay conservative."""
    if width(outside) >= 0:
        return outside
    for _ in range(_ITERATIONS):
        mid = (inside + outside) / 2.0
        if width(mid) >= 0:
            inside = mid
        else:
            outside = mid
    return outside


def fit_bursts(
    bursts: Sequence[Sequence[PingSample]], keep_fraction: float = DEFAULT_KEEP_FRACTION
) -> ClockFit:
    """Fit over several sync bursts of one boot: the fastest of each burst, then one line.

    Keeping the fastest per burst (rather than over all) spreads the kept samples over the
    whole window, which is what pins the drift down.
    """
    kept: list[PingSample] = []
    total = 0
    all_causal: list[PingSample] = []
    for burst in bursts:
        total += len(burst)
        # the fastest half of each burst: every binding bound, at half the work
        kept.extend(fastest(burst, 0.5))
        all_causal.extend(s for s in burst if s.is_causal())
    fit = fit_clock(kept, keep_fraction=keep_fraction / 0.5)
    rtts = [s.rtt_us for s in all_causal]
    return _replace_rtts(fit, rtts, total)


def _replace_rtts(fit: ClockFit, rtts: list[int], total: int) -> ClockFit:
    from dataclasses import replace

    return replace(
        fit,
        rtt_us_p50=float(statistics.median(rtts)),
        rtt_us_min=min(rtts),
        rtt_us_max=max(rtts),
        samples=total,
    )
