"""harness.signal.correlate: locate() finds any lag exactly, refine_lag() finds fractional ones.

Property tests over lag, signal length (short, and > 200 000 samples which takes the
coarse-to-fine path), gain (either polarity) and added noise, for white-noise templates and
for a real speech template from the committed corpus.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from harness.corpus import Corpus
from harness.signal.correlate import locate, refine_lag

FS = 48000
# Signals at least this long are searched coarse-to-fine (decimated first, then full rate).
_COARSE_MIN_SAMPLES = 200_000
SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _speech_template() -> np.ndarray:
    """The speech part of one 48 kHz corpus question (float64, ~0.76 s)."""
    u = next(u for u in Corpus.load().by_category("short_question") if u.sample_rate_hz == FS)
    x = u.load().astype(np.float64)
    return x[int(u.speech_start_s * FS) : int(u.speech_end_s * FS)]


SPEECH = _speech_template()
LONG_SPEECH = next(
    u for u in Corpus.load().by_category("long_question") if u.sample_rate_hz == FS
).load()

# Signal lengths: short (single full-rate pass) and long (coarse pass at fs/6, then fine).
LENGTHS = st.one_of(
    st.integers(1_000, 60_000),
    st.integers(_COARSE_MIN_SAMPLES + 1, _COARSE_MIN_SAMPLES + 100_000),
)
GAINS = st.tuples(st.sampled_from([1.0, -1.0]), st.floats(-3.0, 2.0)).map(
    lambda sg: sg[0] * 10 ** sg[1]
)


def _embed(
    template: np.ndarray, extra: int, lag_frac: float, gain: float, snr_db: float | None, seed: int
) -> tuple[np.ndarray, int]:
    """A signal of len(template) + extra samples holding gain * template at an integer lag.

    With `snr_db`, white noise that far below the embedded template's RMS covers the signal.
    """
    rng = np.random.default_rng(seed)
    n = len(template) + extra
    lag = round(lag_frac * extra)
    sig = np.zeros(n)
    sig[lag : lag + len(template)] = gain * template
    if snr_db is not None:
        rms = abs(gain) * float(np.sqrt(np.mean(template**2)))
        sig += rng.standard_normal(n) * rms * 10 ** (-snr_db / 20)
    return sig, lag


def _check_exact(m, lag: int) -> None:
    assert round(m.lag_samples) == lag, (m, lag)
    assert abs(m.lag_samples - lag) < 0.05, (m, lag)


@SETTINGS
@given(
    m_len=st.integers(256, 8_000),
    length=LENGTHS,
    lag_frac=st.floats(0.0, 1.0),
    gain=GAINS,
    noisy=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_locate_white_noise_template_any_lag(m_len, length, lag_frac, gain, noisy, seed):
    """A white-noise template is found at its exact integer lag, any length, gain, polarity.

    Templates under ~20 ms in long signals: test_locate_short_wideband_template_in_long_signal."""
    assume(length < _COARSE_MIN_SAMPLES or m_len >= 1_000)
    template = np.random.default_rng(seed ^ 0x5EED).standard_normal(m_len)
    extra = max(0, length - m_len)
    sig, lag = _embed(template, extra, lag_frac, gain, 20.0 if noisy else None, seed)
    _check_exact(locate(sig, template, FS), lag)


@SETTINGS
@given(
    length=LENGTHS,
    lag_frac=st.floats(0.0, 1.0),
    gain=GAINS,
    noisy=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_locate_speech_template_any_lag(length, lag_frac, gain, noisy, seed):
    """Corpus speech is found at its exact integer lag, any length, gain, polarity, 20 dB noise."""
    extra = max(0, length - len(SPEECH))
    sig, lag = _embed(SPEECH, extra, lag_frac, gain, 20.0 if noisy else None, seed)
    _check_exact(locate(sig, SPEECH, FS), lag)


def test_locate_short_wideband_template_in_long_signal():
    """A 256-sample white-noise template in a 200 001-sample signal at 20 dB SNR is found."""
    template = np.random.default_rng(61 ^ 0x5EED).standard_normal(256)
    sig, lag = _embed(template, 200_001 - 256, 0.5, 1.0, 20.0, 61)
    _check_exact(locate(sig, template, FS), lag)


@pytest.mark.parametrize("extra", [0, 1, 5_000, 2 * _COARSE_MIN_SAMPLES])
@pytest.mark.parametrize("where", [0.0, 1.0])
def test_locate_lag_at_either_end(extra, where):
    """The first and the last lag at which the template fits whole are found exactly."""
    sig, lag = _embed(SPEECH, extra, where, 0.5, 20.0, seed=3)
    _check_exact(locate(sig, SPEECH, FS), lag)


def _band_limited_noise(n: int, rng: np.random.Generator, frac: float = 0.8) -> np.ndarray:
    """White noise with every FFT bin above `frac` of Nyquist removed (circularly band-limited)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[int(len(spec) * frac) :] = 0
    return np.fft.irfft(spec, n)


def _fft_delay(x: np.ndarray, delay: float) -> np.ndarray:
    """x delayed by `delay` samples by a linear phase shift (exact for band-limited x)."""
    spec = np.fft.rfft(x)
    k = np.arange(len(spec))
    return np.fft.irfft(spec * np.exp(-2j * np.pi * k * delay / len(x)), len(x))


@SETTINGS
@given(
    frac=st.floats(0.0, 1.0, exclude_max=True),
    start=st.integers(2_000, 20_000),
    m_len=st.integers(1_000, 8_000),
    first_guess=st.floats(-0.5, 0.5),
    seed=st.integers(0, 2**32 - 1),
)
def test_refine_lag_recovers_fractional_delay(frac, start, m_len, first_guess, seed):
    """refine_lag finds a fractional delay of band-limited noise within 0.01 samples, from
    locate's lag or from any first guess within half a sample (an integer peak's worst)."""
    z = _band_limited_noise(40_000, np.random.default_rng(seed))
    sig = _fft_delay(z, frac)
    template = z[start : start + m_len]
    truth = start + frac
    coarse = locate(sig, template, FS)
    assert abs(coarse.lag_samples - truth) < 1.0
    assert abs(refine_lag(sig, template, coarse.lag_samples) - truth) < 0.01
    assert abs(refine_lag(sig, template, truth + first_guess) - truth) < 0.01


def _delayed(template: np.ndarray, start: int, frac: float, gain: float, seed: int) -> np.ndarray:
    """gain * template placed at start + frac samples (FFT phase shift) in faint noise."""
    rng = np.random.default_rng(seed)
    padded = np.zeros(len(template) + 120_000)
    padded[start : start + len(template)] = template
    return gain * _fft_delay(padded, frac) + 1e-6 * rng.standard_normal(len(padded))


@settings(SETTINGS, max_examples=15)  # each example refines over the whole utterance
@given(
    frac=st.floats(0.0, 1.0, exclude_max=True),
    start=st.integers(0, 100_000),
    gain=st.floats(-3.0, 2.0).map(lambda e: 10**e),
    seed=st.integers(0, 2**32 - 1),
)
def test_refine_lag_fractional_speech_delay(frac, start, gain, seed):
    """refine_lag times a fractionally delayed, scaled copy of corpus speech within 0.01 samples."""
    sig = _delayed(SPEECH, start, frac, gain, seed)
    coarse = locate(sig, SPEECH, FS)
    assert abs(refine_lag(sig, SPEECH, coarse.lag_samples) - (start + frac)) < 0.01


@pytest.mark.parametrize("frac", [0.1, 0.5, 0.83])
def test_refine_lag_long_template(frac):
    """A template of several seconds (refined on its loudest part) is timed within 0.01."""
    sig = _delayed(LONG_SPEECH, 30_000, frac, 0.7, 0)
    coarse = locate(sig, LONG_SPEECH, FS)
    for guess in (coarse.lag_samples, 30_000.0, 30_001.0):
        assert abs(refine_lag(sig, LONG_SPEECH, guess) - (30_000 + frac)) < 0.01


@pytest.mark.parametrize("kind", ["speech", "noise"])
def test_refine_lag_inverted_polarity(kind):
    """An inverted copy (speaker or preamp polarity) is timed as exactly as an upright one."""
    if kind == "speech":
        template = SPEECH
        sig, truth = _delayed(SPEECH, 30_000, 0.25, -0.5, 0), 30_000.25
    else:
        template = _band_limited_noise(4_800, np.random.default_rng(0))
        sig, truth = -_delayed(template, 1_000, 0.25, 1.0, 0), 1_000.25
    coarse = locate(sig, template, FS)
    assert abs(coarse.lag_samples - truth) < 0.5  # locate itself is right
    assert abs(refine_lag(sig, template, round(truth)) - truth) < 0.01


def test_refine_lag_searches_its_radius():
    """From a first guess 1.5 samples off (within radius=2), the true lag is found."""
    z = _band_limited_noise(40_000, np.random.default_rng(3))
    sig = _fft_delay(z, 0.3)
    template = z[10_000:14_800]
    assert abs(refine_lag(sig, template, 10_000.3 + 1.5, radius=2) - 10_000.3) < 0.01


@pytest.mark.parametrize("length", [60_000, 3 * _COARSE_MIN_SAMPLES // 2])
@pytest.mark.parametrize("kind", ["speech", "noise"])
def test_exact_copy_is_confident(kind, length):
    """An exact (scaled) copy scores confidence > 0.9 and a peak of ~1."""
    rng = np.random.default_rng(11)
    template = SPEECH if kind == "speech" else rng.standard_normal(4_800)
    sig, lag = _embed(template, length - len(template), 0.37, -0.3, None, 1)
    m = locate(sig, template, FS)
    _check_exact(m, lag)
    assert m.peak > 0.99
    assert m.confidence > 0.9


@pytest.mark.parametrize("length", [60_000, 3 * _COARSE_MIN_SAMPLES // 2])
@pytest.mark.parametrize("background", ["speech", "noise"])
def test_unrelated_template_is_not_confident(background, length):
    """A noise template that is not in the signal scores confidence < 0.3 (or a low peak)."""
    rng = np.random.default_rng(5)
    template = rng.standard_normal(4_800)
    if background == "speech":
        sig, _ = _embed(SPEECH, length - len(SPEECH), 0.5, 1.0, 30.0, 2)
    else:
        sig = rng.standard_normal(length)
    m = locate(sig, template, FS)
    assert m.confidence < 0.3 or m.peak < 0.2, m


def test_noisy_copy_is_less_confident_than_exact_copy():
    """Confidence falls as noise is added (it carries the evidence, not just the position)."""
    clean, _ = _embed(SPEECH, 50_000, 0.4, 1.0, None, 7)
    noisy, lag = _embed(SPEECH, 50_000, 0.4, 1.0, 0.0, 7)
    m_clean, m_noisy = locate(clean, SPEECH, FS), locate(noisy, SPEECH, FS)
    _check_exact(m_noisy, lag)
    assert m_noisy.peak < m_clean.peak
    assert m_noisy.confidence < m_clean.confidence
