"""The blind stop's refusal for the interruption's residue (harness.bargein.blind_stop) and
the residue it is judged against (harness.reply.leakage_floor net of the noise)."""

from __future__ import annotations

import numpy as np

from harness.bargein import ClipAt, blind_stop
from harness.reply import leakage_floor, noise_level
from harness.signal.activity import Segment, speech_band
from harness.signal.leakage import remove_leakage

FS = 16000
NOISE_DBFS = -57.0


def _faded_reply_ear(seed: int = 0) -> tuple[np.ndarray, int]:
    """A reply that fades 25 dB over its last 100 ms into noise at -57 dBFS (a word
    ending), then the noise alone."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 10 ** (NOISE_DBFS / 20), 3 * FS)
    stop = int(1.5 * FS)
    reply = rng.normal(0, 10 ** (-25 / 20), stop - FS)
    reply[-int(0.1 * FS) :] *= np.logspace(0, -25 / 20, int(0.1 * FS))
    x[FS:stop] += reply
    return x, stop


def _stop(residue_dbfs: float):
    band, stop = _faded_reply_ear()
    at = ClipAt(int(1.45 * FS), int(2.5 * FS))  # the interruption: from 50 ms before the stop

    def residue_at(index: np.ndarray) -> np.ndarray:
        return np.full(index.shape, 10 ** (residue_dbfs / 10))

    got = blind_stop(
        at,
        (Segment(FS, stop),),
        band,
        FS,
        stop_silence_s=0.3,
        dry_path=True,
        residue_at=residue_at,
    )
    return got, stop


def test_a_reply_well_above_the_residue_is_stopped_where_it_ends():
    got, stop = _stop(residue_dbfs=-80.0)
    assert got.stop == stop and got.note is None


def test_a_reply_that_ends_near_the_residue_is_refused():
    got, _ = _stop(residue_dbfs=-54.0)  # the reply's last 20 ms stand ~5 dB above it
    assert got.stop is None
    assert "above the interruption's own sound" in (got.note or "")


def test_the_residue_net_of_the_noise_is_not_the_noise_scaled_by_the_clip():
    """Where the noise, not the leakage, limits the fit, the fit region's residual is the
    noise; net of the noise the interruption's residue is far below it (on the sim rig a
    noise-scaled "residue" refused the stop of 1 clean barge-in turn in 3)."""
    rng = np.random.default_rng(1)
    n = 4 * FS
    ref = np.zeros(n)
    ref[FS : 2 * FS] = rng.normal(0, 0.1, FS)  # the question
    ref[3 * FS : int(3.5 * FS)] = rng.normal(0, 0.2, FS // 2)  # a louder interruption
    noise = rng.normal(0, 10 ** (NOISE_DBFS / 20), n)
    ear = noise + 0.1 * np.concatenate([np.zeros(8), ref[:-8]])  # leakage at -20 dB
    residual, leak = remove_leakage(ear, ref, (FS, 2 * FS), FS, response_s=0.02)
    band = speech_band(residual, FS)
    spans = [(0, FS - int(0.02 * FS))]
    args = (residual, leak, FS, 2 * FS, FS)
    with_noise = leakage_floor(*args, ref=ref, also=[(3 * FS, int(3.5 * FS))])
    net = leakage_floor(
        *args, ref=ref, also=[(3 * FS, int(3.5 * FS))], net_of_power=noise_level(band, spans, FS)
    )
    at = np.array([int(3.2 * FS)])
    noise_power = float(np.mean(band[spans[0][0] : spans[0][1]] ** 2))
    assert with_noise(at)[0] > 2 * noise_power  # the noise, scaled up by the clip's level
    assert net(at)[0] < 0.5 * noise_power
