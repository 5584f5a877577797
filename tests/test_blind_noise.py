"""Blind mode in steady noise (issue 17 point 5): it answers at 30 dB SNR, and at 10 dB it
refuses rather than answers wrong.

No other test fails if blind mode starts discarding every noisy turn. These build seeded
synthetic turns at 48 kHz (harness.groundtruth.make_turn, dry path, no leakage) with white
and pink noise (`Condition.noise`: seeded; pink is white noise shaped 1/f in the frequency
domain, harness.synth.pink_noise) at the reply's active level minus the SNR, and measure
them blind. The same seed gives the same turn (user, reply, TTFA, path) at every SNR.

What today's code does (seeds 0..29, 48 kHz; measured when these tests were written):

  condition    answered  refused            median |err|  max |err|  >2 ms  confidence
  white 30 dB  30/30     0                  0.28 ms       4.60 ms    8      0.65-0.73
  pink 30 dB   30/30     0                  0.47 ms       21.45 ms   6      0.56-0.66
  white 10 dB  0/30      30 low_confidence  -             -          -      -
  pink 10 dB   0/30      30 low_confidence  -             -          -      -

So blind mode answers every 30 dB turn, but not every answer is within the issue's
+-2 ms: that target is written as it stands and marked xfail (strict), and what holds
today is guarded beside it with a margin (every turn of SEEDS answered bar one, median
|err| <= 2 ms, none off by more than 10 ms). The 30 dB answers' confidence
is set by the reply's overall SNR and barely differs between turns, so it does not single
out the ones that are off: the worst (pink, seed 26: 21.45 ms early) had 0.625, above the
pink median; that turn is pinned below, xfail (strict) too.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss

from harness.analysis import analyze_capture
from harness.groundtruth import Condition, SyntheticTurn, make_turn
from harness.reasons import Discard
from harness.turnmetrics import TurnMetrics

NOISES = ("white", "pink")
SEEDS = tuple(range(6))
"""The first six seeds, not chosen by their outcome. On them today: white 30 dB |err| 2.03,
2.07, 3.10, 0.21, 0.18, 0.35 ms; pink 30 dB 2.11, 6.15, 0.49, 0.54, 0.10, 0.52 ms; every
turn answered, confidence 0.57-0.70. At 10 dB all 12 are refused (low_confidence)."""
TOLERANCE_MS = 2.0
WRONG_MS = 10.0
"""An answer this far off is wrong, not merely imprecise: a soft onset lost in the noise
is found late by 20-60 ms (docs/measurement.md, blind confidence); today's worst on SEEDS
is 6.15 ms."""
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
    """At 30 dB SNR blind mode answers (today: every turn): all of SEEDS but one at most,
    each answer blind and at least at the confidence a result needs (today 0.57-0.70)."""
    got = _outcomes(measured, noise, 30.0)
    refused = [o for o in got if o[1] is None]
    assert len(refused) <= 1, got
    for seed in SEEDS:
        _, m = measured(noise, 30.0, seed)
        if m.discard is None:
            assert m.mode == "blind"
            assert m.confidence >= 0.3, got


@pytest.mark.parametrize("noise", NOISES)
def test_blind_30db_answers_are_close(measured, noise):
    """What holds today, with a margin: the median answer within 2 ms (white 1.19 ms,
    pink 0.53 ms on SEEDS) and none wrong, i.e. off by more than 10 ms (worst 6.15 ms).
    Over seeds 0..29 one pink answer is 21.45 ms early (seed 26, pinned below)."""
    got = _outcomes(measured, noise, 30.0)
    errors = np.abs([o[1] for o in got if o[1] is not None])
    assert errors.size, got
    assert np.median(errors) <= TOLERANCE_MS, got
    assert errors.max() <= WRONG_MS, got


@pytest.mark.xfail(
    strict=True,
    reason="issue 17 point 5 target not met: at 30 dB (48 kHz, seeds 0..29) blind answers "
    "are off by more than 2 ms in 8/30 white turns (max 4.60 ms) and 6/30 pink (max 21.45 "
    "ms); on SEEDS white 2.03, 2.07, 3.10 ms and pink 2.11, 6.15 ms. In all but two of them "
    "(white seed 1, pink seed 1) the activity detector's broadband edge was within 2 ms and "
    "the filterbank re-timing (harness.reply.blind_onset) moved it",
)
@pytest.mark.parametrize("noise", NOISES)
def test_blind_30db_answers_within_2ms(measured, noise):
    """The issue's target: at 30 dB blind mode answers (all of SEEDS but one at most) and
    every answer is within +-2 ms of the true TTFA (refusing them all does not pass it)."""
    got = _outcomes(measured, noise, 30.0)
    assert sum(o[1] is None for o in got) <= 1, got
    off = [o for o in got if o[1] is not None and abs(o[1]) > TOLERANCE_MS]
    assert not off, got


@pytest.mark.xfail(
    strict=True,
    reason="a confident wrong answer today: pink 30 dB, seed 26 is answered 21.45 ms early "
    "at confidence 0.625 (the pink median is 0.60); the broadband edge was 0.05 ms off, the "
    "filterbank re-timing moved it 21.5 ms into the noise with 20 dB contrast",
)
def test_pink_30db_seed_26_is_refused_or_right(measured):
    """The worst turn of seeds 0..29: refused, or answered within +-2 ms."""
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
