"""Blind mode in steady noise (issue 17 point 5): it answers at 30 dB SNR, and at 10 dB it
refuses rather than answers wrong.

No other test fails if blind mode starts discarding every noisy turn. These build seeded
synthetic turns at 48 kHz (harness.groundtruth.make_turn, dry path, no leakage) with white
and pink noise (`Condition.noise`: seeded; pink is white noise shaped 1/f in the frequency
domain, harness.synth.pink_noise) at the reply's active level minus the SNR, and measure
them blind. The same seed gives the same turn (user, reply, TTFA, path) at every SNR.

Before the blind gate (issue 17 point 5), on seeds 0..29 at 48 kHz, every 30 dB turn was
answered, 8/30 white and 6/30 pink more than 2 ms off (max 4.60 and 21.45 ms, confidence
0.56-0.73, the reply's SNR alone, which did not single out the bad ones). Now the filterbank
re-timing stands only where the noise allows it and the confidence is capped by how many ms
of the onset may lie under the noise (harness.reply.buried_ms; docs/measurement.md, "Blind
confidence"):

  condition    answered  refused            median |err|  max |err|  >2 ms  confidence
  white 30 dB  24/30     6 low_confidence   0.08 ms       0.55 ms    0      0.40-0.71
  pink 30 dB   19/30     11 low_confidence  0.28 ms       2.11 ms    1      0.31-0.64
  white 10 dB  0/30      30 low_confidence  -             -          -      -
  pink 10 dB   0/30      30 low_confidence  -             -          -      -

(seeds 5000+, which tuned the gate, and 1000+, the accuracy benchmark's: every 30 dB answer
within 2 ms, 41-49 of 60 answered at 48 kHz; docs/benchmarks.md.) The issue's target as it
stands (all of SEEDS answered bar one, every answer within +-2 ms) is still not met on these
seeds: seeds 1 and 2 are refused in both noises and pink seed 0 is answered 2.11 ms late;
it stays xfail (strict). What holds is guarded beside it with a margin (at least half of
SEEDS answered, median |err| <= 2 ms, none off by more than 10 ms), and the worst turn
before the gate (pink, seed 26, 21.45 ms early) is pinned: it is refused now.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss

from harness.analysis import analyze_capture
from harness.groundtruth import Condition, SyntheticTurn, make_turn
from harness.reasons import Discard
from harness.reply import burial_confidence, buried_ms, onset_depth_db
from harness.signal.activity import speech_band
from harness.turnmetrics import TurnMetrics

NOISES = ("white", "pink")
SEEDS = tuple(range(6))
"""The first six seeds, not chosen by their outcome. On them today: white 30 dB |err| 0.13,
refused, refused, 0.21, 0.18, 0.04 ms; pink 30 dB 2.11, refused, refused, 1.19, 0.10,
0.04 ms (before the gate: white 2.03, 2.07, 3.10, 0.21, 0.18, 0.35; pink 2.11, 6.15, 0.49,
0.54, 0.10, 0.52, all answered). At 10 dB all 12 are refused (low_confidence)."""
TOLERANCE_MS = 2.0
WRONG_MS = 10.0
"""An answer this far off is wrong, not merely imprecise: a soft onset lost in the noise
is found late by 20-60 ms (docs/measurement.md, blind confidence); today's worst on SEEDS
is 2.11 ms (6.15 ms before the gate)."""
REFUSALS = {Discard.TOO_NOISY, Discard.LOW_CONFIDENCE}


@pytest.fixture(scope="module")
def measured(sources):
    """measured(noise, snr_db, seed) -> (SyntheticTurn, blind TurnMetrics), built once."""
    cache: dict[tuple[str, float, int], tuple[SyntheticTurn, TurnMetrics]] = {}

    def get(noise: str, snr_db: float, seed: int) -> tuple[SyntheticTurn, TurnMetrics]:
        key = (noise, snr_db, seed)
        if key not in cache:
            rng = np.random.default_rng(seed)
            user, reply, _, _ = sources.pick_turn(rng)
            cond = Condition(f"{noise} {snr_db:g} dB", noise=noise, snr_db=snr_db)
            turn = make_turn(cond, user, reply, rng)
            fs = turn.sample_rate_hz
            m = analyze_capture(turn.capture, fs, turn.stimulus, fs, speech_end_s=turn.speech_end_s)
            cache[key] = (turn, m)
        return cache[key]

    return get


def _error_ms(turn: SyntheticTurn, m: TurnMetrics) -> float | None:
    return None if m.ttfa_ms is None else m.ttfa_ms - turn.truth.ttfa_ms


def _outcomes(measured, noise: str, snr_db: float, seeds=SEEDS) -> list[tuple]:
    """(seed, error ms or None, confidence, discard reason) per seed, for messages."""
    out = []
    for seed in seeds:
        turn, m = measured(noise, snr_db, seed)
        err = _error_ms(turn, m)
        out.append((seed, None if err is None else round(err, 2), round(m.confidence, 3),
                    m.discard_reason))  # fmt: skip
    return out


@pytest.mark.parametrize("noise", NOISES)
def test_30db_noise_is_pink_or_white_as_named(measured, noise):
    """The conditions are what they say: the noise-only lead-in of each turn has a flat
    spectrum (white: +3 dB per octave band) or a 1/f one (pink: 0 dB per octave band)."""
    centres = 250.0 * 2.0 ** np.arange(6)  # 250 Hz .. 8 kHz octave bands
    want = {"white": 3.0, "pink": 0.0}[noise]
    for seed in SEEDS:
        turn, _ = measured(noise, 30.0, seed)
        fs = turn.sample_rate_hz
        lead = turn.capture[: int(0.25 * fs), 1].astype(np.float64)  # the lead is >= 0.3 s
        f, psd = ss.welch(lead, fs, nperseg=2048)
        band_db = [
            10 * np.log10(np.sum(psd[(f >= c / np.sqrt(2)) & (f < c * np.sqrt(2))]))
            for c in centres
        ]
        slope = np.polyfit(np.arange(len(centres)), band_db, 1)[0]
        assert abs(slope - want) < 1.0, (seed, slope, band_db)


@pytest.mark.parametrize("noise", NOISES)
def test_blind_answers_at_30db(measured, noise):
    """At 30 dB SNR blind mode answers most turns: at least half of SEEDS (today 4 of 6
    in both noises; seeds 1 and 2 are refused, their onsets too soft against the noise to
    time to 2 ms), each answer blind and at least at the confidence a result needs. The
    guard against a gate that refuses every noisy turn."""
    got = _outcomes(measured, noise, 30.0)
    refused = [o for o in got if o[1] is None]
    assert len(refused) <= len(SEEDS) // 2, got
    assert all(o[3] in REFUSALS for o in refused), got
    for seed in SEEDS:
        _, m = measured(noise, 30.0, seed)
        if m.discard is None:
            assert m.mode == "blind"
            assert m.confidence >= 0.3, got


@pytest.mark.parametrize("noise", NOISES)
def test_blind_30db_answers_are_close(measured, noise):
    """What holds today, with a margin: the median answer within 2 ms (white 0.15 ms,
    pink 0.65 ms on SEEDS) and none wrong, i.e. off by more than 10 ms (worst 2.11 ms).
    Before the gate one pink answer of seeds 0..29 was 21.45 ms early (seed 26, pinned
    below)."""
    got = _outcomes(measured, noise, 30.0)
    errors = np.abs([o[1] for o in got if o[1] is not None])
    assert errors.size, got
    assert np.median(errors) <= TOLERANCE_MS, got
    assert errors.max() <= WRONG_MS, got


@pytest.mark.xfail(
    strict=True,
    reason="issue 17 point 5 target not met on these seeds: at 30 dB (48 kHz) seeds 1 and 2 "
    "are refused in both noises (onsets too soft against the noise to time to 2 ms: seed 1's "
    "first 6 ms lie under it, seed 2's were timed right), so 4 of SEEDS are answered where "
    "the target wants 5; and pink seed 0 is answered 2.11 ms late at confidence 0.50 (its "
    "broadband edge 1.91 ms late). Over seeds 0..29 every white answer is within 0.55 ms "
    "(24/30 answered), pink 18 of 19 within 2 ms",
)
@pytest.mark.parametrize("noise", NOISES)
def test_blind_30db_answers_within_2ms(measured, noise):
    """The issue's target: at 30 dB blind mode answers (all of SEEDS but one at most) and
    every answer is within +-2 ms of the true TTFA (refusing them all does not pass it)."""
    got = _outcomes(measured, noise, 30.0)
    assert sum(o[1] is None for o in got) <= 1, got
    off = [o for o in got if o[1] is not None and abs(o[1]) > TOLERANCE_MS]
    assert not off, got


def test_pink_30db_seed_26_is_refused_or_right(measured):
    """The worst turn of seeds 0..29 before the gate: answered 21.45 ms early at confidence
    0.625, the filterbank re-timing having moved the (0.05 ms off) broadband edge into the
    noise with 20 dB contrast. Now refused, or answered within +-2 ms (today refused)."""
    turn, m = measured("pink", 30.0, 26)
    err = _error_ms(turn, m)
    if err is None:
        assert m.discard_reason in REFUSALS, m.discard
    else:
        assert abs(err) <= TOLERANCE_MS, (err, m.confidence)


@pytest.mark.parametrize("noise", NOISES)
def test_blind_refuses_rather_than_answers_wrong_at_10db(measured, noise):
    """At 10 dB SNR every turn is refused as too noisy or not confident enough, or (should
    blind mode learn to answer there) answered within +-2 ms: never a wrong number. Today
    all of SEEDS are refused (low_confidence; 30/30 over seeds 0..29), and rightly: the
    onsets they withheld were up to 61 ms off (20/30 white and 24/30 pink more
    than 2 ms)."""
    got = _outcomes(measured, noise, 10.0)
    for seed, err, _, reason in got:
        if err is None:
            assert reason in REFUSALS, (seed, got)
        else:
            assert abs(err) <= TOLERANCE_MS, (seed, got)


def _reply_in_noise(soft_ms: float, snr_db: float) -> tuple[np.ndarray, int, int]:
    """(speech band, onset sample, FS) of a noise-like reply at 48 kHz whose first
    `soft_ms` are 25 dB softer than its body (an /h/ before a vowel), `snr_db` over white
    noise; 0.45 s of noise alone before it."""
    fs = 48000
    rng = np.random.default_rng(0)
    x = np.zeros(fs)
    at = int(0.5 * fs)
    body = rng.standard_normal(int(0.3 * fs))
    body[: int(soft_ms * fs / 1000)] *= 10 ** (-25 / 20)
    x[at : at + len(body)] = body
    x += rng.standard_normal(len(x)) * 10 ** (-snr_db / 20)
    return speech_band(x, fs), at, fs


def test_a_soft_start_may_lie_under_the_noise_a_sharp_one_not():
    """The gate's mechanism (harness.reply.buried_ms): at 30 dB an onset whose first 3 ms
    stand high over the noise's loudest moments hides about 1 ms of its rise (under the
    2 ms tolerance); one whose first 10 ms are 25 dB softer (5 dB over the noise) may hide
    several ms, and is refused."""
    noise = [(0, int(0.45 * 48000))]
    got = {}
    for soft_ms in (0.0, 10.0):
        y, at, fs = _reply_in_noise(soft_ms, 30.0)
        depth = onset_depth_db(y, noise, [(at, at + int(0.3 * fs))], fs)
        assert depth > 0
        got[soft_ms] = buried_ms(y, at, noise, fs, depth)
    assert got[0.0] < 2.0 < got[10.0], got
    assert burial_confidence(got[0.0]) >= 0.3 > burial_confidence(got[10.0]), got


def test_nothing_is_buried_in_a_quiet_capture():
    """80 dB over the noise, the onset's trace down to ONSET_DEPTH_DB under its peak is all
    above the noise: nothing is buried, and blind mode times it as before the gate."""
    y, at, fs = _reply_in_noise(10.0, 80.0)
    assert onset_depth_db(y, [(0, int(0.45 * fs))], [(at, at + int(0.3 * fs))], fs) < 0
