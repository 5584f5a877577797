"""harness.signal.leakage and harness.signal.drift on signals with a known answer.

remove_leakage: the ear hears the ref through a known FIR (a short response, or a 0.3 s
reverberant tail longer than the full-rate fit) plus an independent reply; the fit must
take the leakage down by > 20 dB where it was fitted and leave the reply as it was.
fit_drift / correct_drift: corpus speech stretched by a known number of ppm.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss

from harness.corpus import Corpus
from harness.signal.drift import correct_drift, fit_drift
from harness.signal.leakage import fit_leakage, remove_leakage

FS = 48000


def _speech(category: str, index: int) -> tuple[np.ndarray, float, float]:
    """(samples as float64, speech start s, speech end s) of a 48 kHz corpus utterance."""
    utts = [u for u in Corpus.load().by_category(category) if u.sample_rate_hz == FS]
    u = utts[index]
    return u.load().astype(np.float64), u.speech_start_s, u.speech_end_s


USER, USER_START_S, USER_END_S = _speech("long_question", 0)
REPLY, _, _ = _speech("short_question", 1)
# 2.5 s of the user's speech: six 0.4 s drift windows, enough for a fit, quick to run.
DRIFT_TEMPLATE = USER[int(USER_START_S * FS) : int((USER_START_S + 2.5) * FS)]


def _stretch(x: np.ndarray, ppm: float) -> np.ndarray:
    """x as a clock `ppm` fast records it: (1 + ppm 1e-6) times longer, band-limited."""
    return ss.resample(x, round(len(x) * (1 + ppm * 1e-6)))


def _response(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A mouth->ear FIR: a delayed direct path plus an exponentially decaying noise tail."""
    delay = int(rng.integers(20, 200))
    if kind == "short":
        tail_s, rt60_s = 0.03, 0.02
    else:
        tail_s, rt60_s = 0.4, 0.3
    n = int(tail_s * FS)
    t = np.arange(n) / FS
    tail = rng.standard_normal(n) * 0.3 * 10 ** (-3 * t / rt60_s)
    h = np.zeros(delay + n)
    h[delay:] = tail
    h[delay] = 1.0
    return h


def _leaky_ear(kind: str, seed: int, gap_s: float):
    """(ear, ref, reply at the ear, fit region): ref played, heard through the FIR, reply later."""
    rng = np.random.default_rng(seed)
    lead = int(0.5 * FS)
    reply_at = lead + len(USER) + int(gap_s * FS)
    n = reply_at + len(REPLY) + FS
    ref = np.zeros(n)
    ref[lead : lead + len(USER)] = USER
    leak = ss.oaconvolve(ref, _response(kind, rng))[:n] * 0.7
    reply = np.zeros(n)
    reply[reply_at : reply_at + len(REPLY)] = REPLY
    ear = leak + reply + 1e-5 * rng.standard_normal(n)
    fit = (lead + int(USER_START_S * FS), lead + int(USER_END_S * FS))
    return ear, ref, reply, fit


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


@pytest.mark.parametrize(("kind", "seed"), [("short", 0), ("short", 1), ("room", 2)])
def test_remove_leakage_takes_leakage_out_and_leaves_the_reply(kind, seed):
    """> 20 dB less energy in the fit region; outside it the residual is the reply."""
    ear, ref, reply, (lo, hi) = _leaky_ear(kind, seed, gap_s=0.6)
    residual, fit = remove_leakage(ear, ref, (lo, hi), FS)
    assert residual.shape == ear.shape
    e_ear = float(np.dot(ear[lo:hi], ear[lo:hi]))
    e_res = float(np.dot(residual[lo:hi], residual[lo:hi]))
    assert 10 * np.log10(e_ear / e_res) > 20
    assert fit.reduction_db > 20
    assert fit.leakage_db > -1  # the leakage was (almost) all the ear held there
    outside = slice(hi, None)
    assert _corr(residual[outside], reply[outside]) > 0.99
    # Untouched also means not rescaled: the reply's energy is kept within 0.1 dB.
    r = slice(int(np.flatnonzero(reply)[0]), None)
    ratio_db = 10 * np.log10(np.dot(residual[r], residual[r]) / np.dot(reply[r], reply[r]))
    assert abs(ratio_db) < 0.1


def test_remove_leakage_without_leakage_returns_the_ear_unchanged():
    """An ear that does not hear the ref comes back as it was (nothing is subtracted)."""
    _, ref, reply, fit_region = _leaky_ear("short", 3, gap_s=0.6)
    ear = reply + 1e-3 * np.random.default_rng(3).standard_normal(len(reply))
    residual, fit = remove_leakage(ear, ref, fit_region, FS)
    np.testing.assert_array_equal(residual, ear)
    assert fit.reduction_db == 0.0


def test_an_ear_in_digital_silence_is_not_fitted():
    """A loopback DUT sends zeros while it listens: no fit is attempted (it used to run the
    whole Toeplitz solve, ~45 ms of a turn's analysis, to find nothing) and no leakage is
    claimed, so the drift estimate that follows a strong leakage is not tried either."""
    _, ref, reply, (lo, hi) = _leaky_ear("short", 3, gap_s=0.6)
    ear = reply.copy()
    ear[lo:hi] = 0.0
    assert fit_leakage(ear, ref, (lo, hi), taps=3840) is None
    residual, fit = remove_leakage(ear, ref, (lo, hi), FS)
    np.testing.assert_array_equal(residual, ear)
    assert fit.reduction_db == 0.0 and fit.leakage_db == -np.inf and fit.response.size == 0


def _stretched_at(template: np.ndarray, ppm: float, offset: int, seed: int) -> np.ndarray:
    """template stretched by ppm with its sample 0 at `offset`, in faint noise."""
    stretched = _stretch(template, ppm)
    sig = np.zeros(len(stretched) + 2 * offset)
    sig[offset : offset + len(stretched)] = stretched
    return sig + 1e-4 * np.random.default_rng(seed).standard_normal(len(sig))


@pytest.mark.parametrize("ppm", [-200.0, 200.0])
def test_fit_drift_recovers_ppm_of_speech(ppm):
    """Corpus speech stretched by ppm, placed at a known lag: drift within 10 ppm."""
    sig = _stretched_at(DRIFT_TEMPLATE, ppm, 12_345, seed=int(ppm) & 0xFF)
    fit = fit_drift(sig, DRIFT_TEMPLATE, 12_345, FS)
    assert fit is not None
    assert abs(fit.drift_ppm - ppm) < 10, fit
    assert abs(fit.lag_at_start - 12_345) < 3.0, fit
    assert fit.windows >= 3


@pytest.mark.parametrize("ppm", [-200.0, 200.0])
def test_fit_drift_lag_at_start_is_where_sample_0_sits(ppm):
    """lag_at_start is where template sample 0 sits, within half a sample, under drift."""
    sig = _stretched_at(DRIFT_TEMPLATE, ppm, 12_345, seed=1)
    fit = fit_drift(sig, DRIFT_TEMPLATE, 12_345, FS)
    assert fit is not None
    assert abs(fit.lag_at_start - 12_345) < 0.5, fit


@pytest.mark.parametrize("ppm", [-200.0, 200.0])
def test_fit_drift_recovers_ppm_of_white_noise(ppm):
    """A broadband (white-noise) template stretched by +-200 ppm: drift within 10 ppm."""
    rng = np.random.default_rng(0)
    template = rng.standard_normal(3 * FS)
    stretched = _stretch(template, ppm)
    offset = 12_345
    sig = np.zeros(len(stretched) + 2 * offset)
    sig[offset : offset + len(stretched)] = stretched
    fit = fit_drift(sig, template, offset, FS)
    assert fit is not None
    assert abs(fit.drift_ppm - ppm) < 10, fit


def test_fit_drift_of_an_unstretched_copy_is_zero():
    """No stretch: drift within 2 ppm of zero."""
    sig = np.concatenate([np.zeros(5_000), DRIFT_TEMPLATE, np.zeros(5_000)])
    fit = fit_drift(sig, DRIFT_TEMPLATE, 5_000, FS)
    assert fit is not None
    assert abs(fit.drift_ppm) < 2
    assert abs(fit.lag_at_start - 5_000) < 0.1


def test_fit_drift_refuses_a_too_short_template():
    """A template shorter than three of the shortest windows (0.1 s) gives None, not a guess."""
    short = USER[: int(0.25 * FS)]
    assert fit_drift(np.concatenate([np.zeros(100), short]), short, 100, FS) is None


def test_fit_drift_on_a_short_template_reports_its_uncertainty():
    """A 1 s template falls back to short windows: no drift found, within its stderr."""
    short = USER[: int(1.0 * FS)]
    fit = fit_drift(np.concatenate([np.zeros(100), short]), short, 100, FS)
    assert fit is not None
    assert abs(fit.lag_at_start - 100) < 0.1
    assert abs(fit.drift_ppm) <= 3 * fit.stderr_ppm


def _band_limited_noise(n: int, seed: int) -> np.ndarray:
    spec = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    spec[int(len(spec) * 0.8) :] = 0
    return np.fft.irfft(spec, n)


@pytest.mark.parametrize("ppm", [-200.0, 200.0, 1000.0])
@pytest.mark.parametrize("kind", ["speech", "noise"])
def test_correct_drift_undoes_a_stretch(kind, ppm):
    """correct_drift(stretch(x, ppm), ppm) is x again, to -40 dB (same length as its input)."""
    x = USER if kind == "speech" else _band_limited_noise(3 * FS, 1)
    stretched = _stretch(x, ppm)
    back = correct_drift(stretched, ppm)
    assert len(back) == len(stretched)
    n = min(len(x), len(back))
    err = back[:n] - x[:n]
    edge = 1_000  # FFT resampling wraps around at the ends
    rel_db = 10 * np.log10(np.sum(err[edge:-edge] ** 2) / np.sum(x[edge : n - edge] ** 2))
    assert rel_db < -40


def test_correct_drift_zero_is_identity():
    x = _band_limited_noise(10_000, 2)
    np.testing.assert_array_equal(correct_drift(x, 0.0), x)
