"""Clock-sync fit (device.bridge.clock): pure functions against exactly known clocks."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.bridge.clock import (
    ClockFitError,
    PingSample,
    fastest,
    fit_bursts,
    fit_clock,
)


class TrueClock:
    """A device clock that runs ``drift_ppm`` fast and started at ``origin_host_us``."""

    def __init__(self, origin_host_us: int, drift_ppm: float, start_device_us: int = 0) -> None:
        self.origin = origin_host_us
        self.rate = 1.0 + drift_ppm * 1e-6
        self.start = start_device_us

    def device(self, t_host_us: float) -> int:
        return round(self.start + (t_host_us - self.origin) * self.rate)

    def host(self, t_device_us: float) -> float:
        return self.origin + (t_device_us - self.start) / self.rate


def exchange(clock, t_host_tx, up_us, turn_us, down_us) -> PingSample:
    """One ping sent at t_host_tx: ``up_us`` to the device, ``turn_us`` inside, ``down_us`` back."""
    rx = clock.device(t_host_tx + up_us)
    tx = clock.device(t_host_tx + up_us + turn_us)
    return PingSample(t_host_tx, rx, tx, round(t_host_tx + up_us + turn_us + down_us))


def q(rng: random.Random) -> float:
    """One leg's delay: 40 µs of wire plus exponential queueing (mean 200 µs)."""
    return 40 + rng.expovariate(1 / 200)


def test_symmetric_link_gives_exact_offset_and_bound_is_half_rtt():
    clock = TrueClock(origin_host_us=5_000_000, drift_ppm=0.0, start_device_us=123)
    samples = [exchange(clock, 6_000_000 + i * 10_000, 40, 10, 40) for i in range(20)]
    fit = fit_clock(samples)
    assert fit.offset_us == pytest.approx(5_000_000 - 123, abs=1)
    assert fit.rtt_us_min == 80 and fit.rtt_us_p50 == 80
    assert fit.uncertainty_us == pytest.approx(40, abs=1)
    assert fit.to_host_us(clock.device(6_100_000)) == pytest.approx(6_100_000, abs=1)
    assert not fit.drift_fitted  # 190 ms span: too short to tell drift from jitter


def test_drift_is_recovered_with_its_sign_and_mapping_holds_far_away():
    clock = TrueClock(origin_host_us=1_000_000, drift_ppm=80.0, start_device_us=10**9)
    rng = random.Random(1)
    samples = [
        # a fixed 40 µs each way plus queueing (exponential, mean 200 µs) on either leg
        exchange(clock, 2_000_000 + i * 20_000, q(rng), 15, q(rng))
        for i in range(100)
    ]
    fit = fit_clock(samples)
    assert fit.drift_fitted
    assert abs(fit.drift_ppm - 80.0) <= fit.drift_uncertainty_ppm < 200
    # 10 s after the window the mapping is still within the bound plus drift error
    t_host = 14_000_000
    assert abs(fit.to_host_us(clock.device(t_host)) - t_host) < fit.uncertainty_us + 200
    assert fit.to_device_us(fit.to_host_us(clock.device(t_host))) == pytest.approx(
        clock.device(t_host), abs=2
    )


def test_slow_round_trips_are_dropped():
    clock = TrueClock(0, 0.0)
    rng = random.Random(2)
    samples = []
    for i in range(40):
        # every fourth exchange is fast and symmetric; the others queue on the way back only,
        # which would bias a plain average by hundreds of µs
        slow = i % 4 != 0
        samples.append(
            exchange(
                clock, 1_000_000 + i * 5_000, 50, 5, 50 + (rng.uniform(500, 2000) if slow else 0)
            )
        )
    fit = fit_clock(samples, keep_fraction=0.25)
    assert fit.used == 10
    assert all(s.rtt_us == 100 for s in fastest(samples, 0.25))
    assert fit.offset_us == pytest.approx(0, abs=1)
    naive = sum(s.host_mid_us - s.device_mid_us for s in samples) / len(samples)
    assert abs(naive) > 200  # the filter is what makes the difference


def test_bursts_spread_the_fit_over_the_window():
    clock = TrueClock(0, -40.0, start_device_us=77)
    rng = random.Random(3)
    bursts = [
        [exchange(clock, b * 2_000_000 + i * 3_000, q(rng), 10, q(rng)) for i in range(16)]
        for b in range(5)
    ]
    fit = fit_bursts(bursts)
    assert fit.samples == 80 and fit.used == 5 * 4
    assert fit.span_us > 7_000_000
    assert abs(fit.drift_ppm + 40.0) <= fit.drift_uncertainty_ppm < 50


def test_non_causal_and_empty_samples_are_refused():
    with pytest.raises(ClockFitError, match="no PING/PONG samples"):
        fit_clock([])
    bad = [PingSample(100, 50, 40, 200), PingSample(100, 0, 500, 200)]  # tx<rx; turnaround>window
    with pytest.raises(ClockFitError, match="none of 2 PING/PONG samples is causal"):
        fit_clock(bad)


@settings(max_examples=200, deadline=None)
@given(
    drift_ppm=st.floats(-200, 200),
    start=st.integers(0, 2**40),
    delays=st.lists(
        st.tuples(st.floats(5, 5000), st.floats(0, 100), st.floats(5, 5000)),
        min_size=1,
        max_size=60,
    ),
    keep=st.floats(0.05, 1.0),
)
def test_bound_holds_at_every_kept_sample(drift_ppm, start, delays, keep):
    """Whatever the (causal) delays, the true host time of each kept exchange's device
    midpoint is within `uncertainty_us` of the mapping (1 µs for rounding)."""
    clock = TrueClock(10**7, drift_ppm, start)
    samples = [
        exchange(clock, 2 * 10**7 + i * 7_000, up, turn, down)
        for i, (up, turn, down) in enumerate(delays)
    ]
    fit = fit_clock(samples, keep_fraction=keep)
    for s in fastest(samples, keep):
        true_host = clock.host(s.device_mid_us)
        err = abs(fit.to_host_us(round(s.device_mid_us)) - true_host)
        assert err <= fit.uncertainty_at_us(round(s.device_mid_us)) + 1.5
    if fit.drift_fitted:  # the slope's bound holds too (1e-3 ppm for the float maths)
        assert abs(fit.drift_ppm - drift_ppm) <= fit.drift_uncertainty_ppm + 1e-3
