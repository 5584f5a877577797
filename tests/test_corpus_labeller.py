"""label_speech on synthetic signals whose speech start/end/pauses are known to the sample."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.corpus import label_speech

TOL_S = 0.001  # the labeller's promise: edges within 1 ms


def place(
    rate: int,
    total_s: float,
    bursts: list[tuple[float, float]],
    *,
    kind: str = "noise",
    amplitude: float = 0.5,
    freq_hz: float = 440.0,
    phase: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Silence of ``total_s`` with bursts over ``[(start_s, end_s), ...]``; returns the signal
    and the bursts' exact sample spans ``[(first, stop), ...]``."""
    rng = np.random.default_rng(seed)
    x = np.zeros(round(total_s * rate))
    spans = []
    for start_s, end_s in bursts:
        a, b = round(start_s * rate), round(end_s * rate)
        n = np.arange(b - a)
        if kind == "noise":
            x[a:b] = amplitude * rng.standard_normal(b - a)
        else:
            x[a:b] = amplitude * np.sin(2 * np.pi * freq_hz * n / rate + phase)
        spans.append((a, b))
    return x, spans


@pytest.mark.parametrize("rate", [16_000, 22_050, 44_100, 48_000])
@pytest.mark.parametrize("kind", ["noise", "tone"])
def test_burst_edges_recovered(rate, kind):
    x, [(a, b)] = place(rate, 2.0, [(0.4123, 1.3377)], kind=kind)
    lab = label_speech(x, rate)
    assert abs(lab.start_s - a / rate) <= TOL_S
    assert abs(lab.end_s - b / rate) <= TOL_S
    assert lab.pauses_s == ()


def test_noise_burst_is_sample_exact():
    x, [(a, b)] = place(48_000, 1.0, [(0.25, 0.75)], seed=3)
    lab = label_speech(x, 48_000)
    # a Gaussian sample is below 1 % of the RMS only rarely: the edges are the burst's
    assert (lab.start_sample, lab.end_sample) == (a, b)
    assert lab.start_s == a / 48_000 and lab.end_s == b / 48_000


def test_level_and_format_do_not_matter():
    x, _ = place(16_000, 1.5, [(0.3, 1.0)])
    ref = label_speech(x, 16_000)
    quiet = label_speech(x * 1e-3, 16_000)
    pcm = label_speech(np.round(x / np.max(np.abs(x)) * 30_000).astype(np.int16), 16_000)
    assert quiet == ref
    assert abs(pcm.start_s - ref.start_s) <= TOL_S and abs(pcm.end_s - ref.end_s) <= TOL_S


def test_pause_between_two_bursts():
    x, [(a1, b1), (a2, b2)] = place(48_000, 3.0, [(0.5, 1.2), (1.8, 2.5)])
    lab = label_speech(x, 48_000)
    assert abs(lab.start_s - a1 / 48_000) <= TOL_S
    assert abs(lab.end_s - b2 / 48_000) <= TOL_S
    assert len(lab.pauses_s) == 1
    p_start, p_end = lab.pauses_s[0]
    assert abs(p_start - b1 / 48_000) <= TOL_S and abs(p_end - a2 / 48_000) <= TOL_S


def test_short_gap_is_bridged():
    # 150 ms < the 250 ms minimum pause: one stretch of speech, no pause
    x, [(a, _), (_, b)] = place(48_000, 2.0, [(0.3, 0.8), (0.95, 1.5)])
    lab = label_speech(x, 48_000)
    assert lab.pauses_s == ()
    assert abs(lab.start_s - a / 48_000) <= TOL_S and abs(lab.end_s - b / 48_000) <= TOL_S


def test_isolated_click_is_ignored():
    x, [_, (a, b)] = place(48_000, 2.0, [(0.1, 0.105), (0.6, 1.4)])
    lab = label_speech(x, 48_000)
    assert abs(lab.start_s - a / 48_000) <= TOL_S and abs(lab.end_s - b / 48_000) <= TOL_S
    assert lab.pauses_s == ()


def test_quiet_tail_below_threshold_is_not_speech():
    x, [(_, b)] = place(48_000, 2.0, [(0.3, 1.0)])
    # -60 dB re the burst: below the -40 dB threshold, so not speech
    x[round(1.0 * 48_000) : round(1.5 * 48_000)] = 5e-4 * np.sin(np.arange(24_000) * 0.3)
    lab = label_speech(x, 48_000)
    assert abs(lab.end_s - b / 48_000) <= TOL_S


def test_burst_touching_both_file_edges():
    x, [(a, b)] = place(16_000, 0.5, [(0.0, 0.5)])
    lab = label_speech(x, 16_000)
    assert abs(lab.start_s - a / 16_000) <= TOL_S and abs(lab.end_s - b / 16_000) <= TOL_S


@pytest.mark.parametrize(
    ("samples", "rate", "message"),
    [
        (np.zeros((100, 2)), 16_000, "shape"),
        (np.zeros(0), 16_000, "empty"),
        (np.zeros(16_000), 16_000, "all zeros"),
        (np.array([0.0, np.nan, 0.1]), 16_000, "NaN"),
        (np.ones(100), 0, "positive"),
    ],
)
def test_bad_input_raises(samples, rate, message):
    with pytest.raises(ValueError, match=message):
        label_speech(samples, rate)


@settings(max_examples=80, deadline=None)
@given(
    rate=st.sampled_from([16_000, 22_050, 48_000]),
    lead_s=st.floats(0.0, 1.0),
    burst_s=st.floats(0.03, 1.5),
    tail_s=st.floats(0.0, 0.6),
    amplitude=st.floats(1e-3, 1.0),
    kind=st.sampled_from(["noise", "tone"]),
    freq_hz=st.floats(100.0, 4000.0),
    phase=st.floats(0.0, 2 * np.pi),
    seed=st.integers(0, 2**16),
)
def test_any_placement_is_recovered(
    rate, lead_s, burst_s, tail_s, amplitude, kind, freq_hz, phase, seed
):
    x, [(a, b)] = place(
        rate,
        lead_s + burst_s + tail_s,
        [(lead_s, lead_s + burst_s)],
        kind=kind,
        amplitude=amplitude,
        freq_hz=freq_hz,
        phase=phase,
        seed=seed,
    )
    lab = label_speech(x, rate)
    assert abs(lab.start_s - a / rate) <= TOL_S
    assert abs(lab.end_s - b / rate) <= TOL_S
    assert lab.pauses_s == ()


@settings(max_examples=50, deadline=None)
@given(
    rate=st.sampled_from([16_000, 48_000]),
    lead_s=st.floats(0.0, 0.6),
    first_s=st.floats(0.05, 1.0),
    pause_s=st.floats(0.27, 1.2),
    second_s=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
)
def test_any_pause_is_recovered(rate, lead_s, first_s, pause_s, second_s, seed):
    mid = lead_s + first_s
    x, [(a1, b1), (a2, b2)] = place(
        rate,
        mid + pause_s + second_s + 0.2,
        [(lead_s, mid), (mid + pause_s, mid + pause_s + second_s)],
        seed=seed,
    )
    lab = label_speech(x, rate)
    assert abs(lab.start_s - a1 / rate) <= TOL_S and abs(lab.end_s - b2 / rate) <= TOL_S
    assert len(lab.pauses_s) == 1
    (p_start, p_end) = lab.pauses_s[0]
    assert abs(p_start - b1 / rate) <= TOL_S and abs(p_end - a2 / rate) <= TOL_S
