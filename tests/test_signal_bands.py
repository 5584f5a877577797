"""The SNR-weighted filterbank onset statistic (harness.signal.bands)."""

import numpy as np
import pytest

from harness.signal.bands import band_energies, band_weights, filterbank, refine_boundary

FS = 48000


def _burst_in_noise(onset: int, snr_db: float, seed: int) -> np.ndarray:
    """Speech-like burst (low-pass noise, 200-1500 Hz) at `onset` in white noise."""
    rng = np.random.default_rng(seed)
    n = FS
    burst = np.fft.irfft(
        np.where(
            (np.fft.rfftfreq(n, 1 / FS) > 200) & (np.fft.rfftfreq(n, 1 / FS) < 1500),
            np.fft.rfft(rng.standard_normal(n)),
            0,
        ),
        n,
    )
    burst /= np.sqrt(np.mean(burst**2))
    x = np.zeros(2 * FS)
    x[onset : onset + n // 2] = burst[: n // 2]
    return x + rng.standard_normal(len(x)) * 10 ** (-snr_db / 20)


def test_filterbank_is_causal():
    """No band puts energy before the first nonzero input sample."""
    x = np.zeros(4800)
    x[1000:] = np.random.default_rng(1).standard_normal(3800)
    e = band_energies(x, filterbank(FS))
    assert np.all(e[:, :1000] == 0.0)
    assert np.all(e[:, 1000:].sum(axis=1) > 0)


def test_weights_follow_the_reply_spectrum():
    """A 200-1500 Hz reply in white noise puts its weight on the bands that hold it."""
    x = _burst_in_noise(30000, 20.0, 2)
    bw = band_weights(x, filterbank(FS), (0, 24000), [(30000, 50000)])
    assert bw is not None
    assert bw.weight[:3].sum() > 0.95  # 120-1500 Hz
    assert bw.snr_db > 20


@pytest.mark.parametrize("seed", [3, 4, 5])
@pytest.mark.parametrize("snr_db", [40.0, 20.0])
def test_refine_boundary_times_a_burst_in_noise(snr_db, seed):
    """Onset of a sharp burst found within 1 ms, even from a coarse guess 20 ms late."""
    onset = 30011
    x = _burst_in_noise(onset, snr_db, seed)
    fb = filterbank(FS)
    bw = band_weights(x, fb, (0, 24000), [(onset, onset + 20000)])
    found, contrast = refine_boundary(x, onset + int(0.02 * FS), fb, bw)
    assert abs(found - onset) <= 0.001 * FS
    assert contrast > 10


def test_refine_boundary_times_an_end():
    """The end of a burst (end=True), from a coarse guess 10 ms early."""
    end = 30000 + FS // 2
    x = _burst_in_noise(30000, 30.0, 6)
    fb = filterbank(FS)
    bw = band_weights(x, fb, (0, 24000), [(30000, 50000)])
    found, _ = refine_boundary(x, end - int(0.01 * FS), fb, bw, end=True)
    assert abs(found - end) <= 0.001 * FS
