"""The host clock <-> sample map: robust to late callbacks, exact on a real stream."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from harness.judge import capture_kept_time
from harness.rigs import fit_host_clock, open_rig

FS = 48000


def test_late_callbacks_do_not_pull_the_line():
    """Callbacks wake up late (never early): the fit follows the undelayed lower edge."""
    rng = np.random.default_rng(3)
    starts = np.arange(500) * 1024
    drift_ppm = 40.0
    slope = 1e6 / FS * (1 + drift_ppm * 1e-6)
    late_us = rng.exponential(300.0, starts.size)  # wake-up delays
    late_us[rng.random(starts.size) < 0.05] += 5000  # and a few stalls
    t_us = 1_000_000 + slope * starts + late_us
    m = fit_host_clock(starts, t_us.astype(np.int64), FS)
    assert m.paced
    assert m.drift_ppm(FS) == pytest.approx(drift_ppm, abs=5)
    # A host time maps back to its sample within the undelayed callbacks' spread (~50 µs).
    err_us = m.host_us_of_sample(starts[-1]) - (1_000_000 + slope * starts[-1])
    assert 0 <= err_us < 100
    assert m.sample_of_host_us(m.host_us_of_sample(12345.0)) == pytest.approx(12345.0)


def test_too_few_stamps():
    assert fit_host_clock(np.array([], np.int64), np.array([], np.int64), FS) is None
    one = fit_host_clock(np.array([2048]), np.array([5000]), FS)
    assert one.sample_of_host_us(5000) == pytest.approx(2048)


def test_sim_faster_than_real_time_is_not_paced():
    with open_rig("sim", use_cache=False) as rig:
        cap = rig.play_and_record(np.zeros(4800, np.float32), 5.0)
    assert cap.clock is not None and cap.clock.blocks >= 200
    assert not cap.clock.paced  # 5 s of audio in far less than 5 s
    assert cap.capture_s_of_host_us(0) is not None


def test_a_step_after_an_xrun_is_followed_locally():
    """A late JACK cycle on the dummy driver: the audio clock loses 30 ms against the host
    clock half-way. Events on either side still map to their own samples."""
    rng = np.random.default_rng(5)
    starts = np.arange(400) * 1024
    slope = 1e6 / FS
    step = np.where(starts >= 200 * 1024, 30_000.0, 0.0)
    true = 5_000_000 + slope * starts + step
    t_us = true + rng.exponential(200.0, starts.size)
    m = fit_host_clock(starts, t_us.astype(np.int64), FS)
    assert m.slope_us == pytest.approx(slope, rel=1e-4)
    for k in (50 * 1024, 150 * 1024, 250 * 1024, 390 * 1024):
        t_true = 5_000_000 + slope * k + (30_000.0 if k >= 200 * 1024 else 0.0)
        assert m.sample_of_host_us(t_true) == pytest.approx(k, abs=0.002 * FS)  # 2 ms


def test_capture_slip_inside_a_measured_interval():
    """The capture lost 80 ms against the wall clock at 1.0 s (cycles the harness was not
    run for): an interval across that moment reads 80 ms short, one beside it not."""
    rng = np.random.default_rng(5)
    starts = np.arange(150) * 1024  # 3.2 s
    t_us = 1_000_000 + starts * 1e6 / FS + rng.exponential(200.0, starts.size)
    t_us[starts >= FS] += 80_000
    clock = fit_host_clock(starts, t_us.astype(np.int64), FS)
    assert clock.slip_ms(FS, 0.8, 1.5) == pytest.approx(80.0, abs=2.0)
    assert clock.slip_ms(FS, 1.5, 2.8) < 2.0

    @dataclass
    class Measured:
        speech_end_s: float | None = 0.8
        reply_onset_s: float | None = 1.5
        barge_in_onset_s: float | None = None
        stop_latency_ms: float | None = None

    check = capture_kept_time(clock, FS, Measured())
    assert not check.passed and "fell 80 ms behind the wall clock during the TTFA" in check.message
    assert capture_kept_time(clock, FS, Measured(1.6, 2.4)).passed
    assert not capture_kept_time(clock, FS, Measured(None, None)).applicable
