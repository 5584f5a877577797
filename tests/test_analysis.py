"""harness.analysis.analyze_capture on synthetic turns with exactly known truth.

Turns come from harness.groundtruth.make_turn with corpus speech. Blind mode (activity
detection) must land within 2 ms of the true TTFA, reply-reference mode (the DUT's own
audio located by correlation) within 0.1 ms; barge-in onset and stop latency are checked
against the generator's truth; invalid or doubtful captures must be discarded with the
documented reason, never answered with a confident wrong number.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.analysis import AnalysisOptions, analyze_capture
from harness.errors import InputError
from harness.groundtruth import Condition, SyntheticTurn, make_turn
from harness.signal.resample import first_sound
from harness.signal.resample import resample as _resample

CONTRACT_KEYS = {
    "ttfa_ms",
    "confidence",
    "speech_end_s",
    "reply_onset_s",
    "reply_end_s",
    "segments",
    "gaps_ms",
    "discard",
}
BARGE_IN_KEYS = {"barge_in_onset_s", "stop_latency_ms", "residual_ms"}

CONDITIONS = {
    "clean48": Condition("clean48"),
    "clean16": Condition("clean16", sample_rate_hz=16000),
    "leakage0dB": Condition("leakage0dB", leakage_db=0.0),
    "reverb0.4s": Condition("reverb0.4s", rt60_s=0.4),
    "dutdrift200": Condition("dutdrift200", dut_drift_ppm=200.0),
}
# Seeds whose turns are short (3.7 and 4.4 s of speech), to keep the suite fast.
SEEDS = (1, 2)


@pytest.fixture(scope="module")
def turn_of(sources):
    """turn_of(condition_name, seed) -> SyntheticTurn, built once per module."""
    cache: dict[tuple[str, int], SyntheticTurn] = {}

    def build(name: str, seed: int) -> SyntheticTurn:
        if (name, seed) not in cache:
            rng = np.random.default_rng(seed)
            user, reply, clip, answer = sources.pick_turn(rng)
            cache[name, seed] = make_turn(
                CONDITIONS[name], user, reply, rng, barge_clip=clip, answer=answer
            )
        return cache[name, seed]

    return build


@pytest.fixture(scope="module")
def metrics_of(turn_of):
    """metrics_of(condition_name, seed, mode) -> TurnMetrics, mode "blind" or "reply", cached."""
    cache: dict = {}

    def measure(name: str, seed: int, mode: str = "blind"):
        if (name, seed, mode) not in cache:
            turn = turn_of(name, seed)
            kwargs = {"reply_reference": turn.reply} if mode == "reply" else {}
            cache[name, seed, mode] = _analyze(turn, **kwargs)
        return cache[name, seed, mode]

    return measure


def _analyze(turn: SyntheticTurn, **kwargs):
    fs = turn.sample_rate_hz
    return analyze_capture(
        turn.capture, fs, turn.stimulus, fs, speech_end_s=turn.speech_end_s, **kwargs
    )


def _check_consistent(m) -> None:
    """Invariants of any answered TurnMetrics."""
    assert m.discard is None
    assert 0.0 <= m.confidence <= 1.0
    assert m.ttfa_ms == pytest.approx((m.reply_onset_s - m.speech_end_s) * 1000, abs=1e-6)
    assert m.segments and m.segments[0][1] > m.reply_onset_s
    assert all(a < b for a, b in m.segments)
    assert len(m.gaps_ms) == len(m.segments) - 1
    json.dumps(m.to_json(), allow_nan=False)


# ---- TTFA under recording conditions ---------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", CONDITIONS)
def test_blind_ttfa_within_2ms(turn_of, metrics_of, name, seed):
    """Blind mode: TTFA within 2 ms of the truth, speech end within 0.05 ms."""
    turn = turn_of(name, seed)
    m = metrics_of(name, seed)
    _check_consistent(m)
    assert m.speech_end_s == pytest.approx(turn.truth.speech_end_s, abs=5e-5)
    assert abs(m.ttfa_ms - turn.truth.ttfa_ms) < 2.0, (m.ttfa_ms, turn.truth)
    assert m.confidence >= 0.3
    assert m.mode == "blind"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", CONDITIONS)
def test_reply_reference_ttfa_within_0_1ms(turn_of, metrics_of, name, seed):
    """Reply-reference mode (the DUT's own audio): TTFA within 0.1 ms of the truth."""
    turn = turn_of(name, seed)
    m = metrics_of(name, seed, "reply")
    _check_consistent(m)
    assert m.mode == "reply-reference"
    assert abs(m.ttfa_ms - turn.truth.ttfa_ms) < 0.1, (m.ttfa_ms, turn.truth)


@pytest.mark.parametrize(("name", "seed"), [("clean48", 1), ("reverb0.4s", 1)])
def test_blind_first_segment_starts_at_reply_onset(metrics_of, name, seed):
    """The first reply segment starts exactly at reply_onset_s (one onset, not two)."""
    m = metrics_of(name, seed)
    assert m.discard is None
    assert m.segments[0][0] == m.reply_onset_s


def test_reply_reference_at_nominal_rate_under_dut_drift(sources):
    """The reference as generated (before the DUT's 200 ppm fast clock stretched it) is still
    located within 0.1 ms, and the drift is reported."""
    rng = np.random.default_rng(3)  # a 1.9 s reply: long enough for a drift fit
    user, reply, _, _ = sources.pick_turn(rng)
    turn = make_turn(Condition("drift", dut_drift_ppm=200.0), user, reply, rng)
    fs = turn.sample_rate_hz
    nominal = _resample(reply.samples, reply.sample_rate_hz, fs)
    nominal = nominal[round(reply.speech_start_s * fs) : round(reply.speech_end_s * fs) + 1]
    m = _analyze(turn, reply_reference=nominal)
    _check_consistent(m)
    assert abs(m.ttfa_ms - turn.truth.ttfa_ms) < 0.1, (m.ttfa_ms, turn.truth)
    assert m.reply_drift_ppm == pytest.approx(200.0, abs=10.0)


def test_reply_reference_at_another_rate(turn_of):
    """A reply reference at 16 kHz for a 48 kHz capture is resampled (noted) and still exact."""
    turn = turn_of("clean48", 1)
    m = _analyze(
        turn,
        reply_reference=_resample(turn.reply, 48000, 16000),
        reply_reference_rate_hz=16000,
    )
    _check_consistent(m)
    assert any("resampled" in n for n in m.notes)
    assert abs(m.ttfa_ms - turn.truth.ttfa_ms) < 0.1


# ---- barge-in --------------------------------------------------------------------------------


BARGE_CLIPS = (
    "bi01_stop",
    "bi02_wait_actually",
    "bi03_hold_on",
    "bi04_cancel",
    "bi05_never_mind",
    "bi06_stop_talking",
    "bi07_wait_second",
    "bi08_actually_weather",
)


def test_barge_clip_list_matches_corpus(sources):
    """BARGE_CLIPS (the parametrisation below) is every barge-in clip of the corpus."""
    assert tuple(c.name for c in sources.clips) == BARGE_CLIPS


def _barge_turn(sources, clip_name: str, sample_rate_hz: int) -> SyntheticTurn:
    rng = np.random.default_rng(sum(map(ord, clip_name)))
    user, reply, _, answer = sources.pick_turn(rng)
    clip = next(c for c in sources.clips if c.name == clip_name)
    condition = Condition("barge", sample_rate_hz=sample_rate_hz, barge_in=True)
    return make_turn(condition, user, reply, rng, barge_clip=clip, answer=answer)


# Every clip at 16 kHz (cheap), and one at 48 kHz. Some clips start softly (bi03_hold_on,
# bi05_never_mind): their onset must still be the labelled speech start, not the first vowel.
@pytest.mark.parametrize(
    ("clip_name", "rate"),
    [(name, 16000) for name in BARGE_CLIPS] + [("bi02_wait_actually", 48000)],
)
def test_barge_in_onset_and_stop_latency(sources, clip_name, rate):
    """Barge-in onset within 1 ms, stop latency within 5 ms, TTFA still within 2 ms."""
    turn = _barge_turn(sources, clip_name, rate)
    m = _analyze(turn, barge_in=turn.barge_in_clip)
    _check_consistent(m)
    truth = turn.truth
    assert abs(m.ttfa_ms - truth.ttfa_ms) < 2.0
    assert m.barge_in_onset_s is not None and m.stop_latency_ms is not None, m.notes
    assert m.residual_ms is not None and m.residual_ms >= 0.0
    assert abs(m.stop_latency_ms - truth.stop_latency_ms) < 5.0, (m.stop_latency_ms, truth)
    assert abs(m.barge_in_onset_s - truth.barge_in_onset_s) < 0.001, (m.barge_in_onset_s, truth)
    assert set(m.to_json()) >= BARGE_IN_KEYS


def _barge_turn_in(condition: Condition, sources, seed: int) -> SyntheticTurn:
    """A barge-in turn under `condition` from seeded corpus picks."""
    rng = np.random.default_rng(seed)
    user, reply, clip, answer = sources.pick_turn(rng)
    return make_turn(condition, user, reply, rng, barge_clip=clip, answer=answer)


@pytest.mark.parametrize("seed", [11, 12])
def test_barge_in_in_a_ringing_room_is_refused_not_guessed(sources, seed):
    """RT60 0.3 s: the room rings on after the cut; stop latency is either within 5 ms of the
    truth (direct sound's end found) or absent with a note saying why, never a guess."""
    turn = _barge_turn_in(Condition("barge-reverb", rt60_s=0.3, barge_in=True), sources, seed)
    m = _analyze(turn, barge_in=turn.barge_in_clip)
    assert m.barge_in_onset_s is not None
    if m.stop_latency_ms is None:
        assert any("rings down" in n or "fades" in n for n in m.notes), m.notes
    else:
        assert abs(m.stop_latency_ms - turn.truth.stop_latency_ms) < 5.0, (m, turn.truth)


def test_barge_in_metrics_survive_a_ttfa_discard(sources):
    """Stop latency comes from the segments: a blind TTFA refused at 20 dB SNR keeps it."""
    condition = Condition("barge-noise", noise="white", snr_db=20.0, barge_in=True)
    turn = _barge_turn_in(condition, sources, 5)
    m = _analyze(turn, barge_in=turn.barge_in_clip)
    assert m.stop_latency_ms is not None, m
    assert abs(m.stop_latency_ms - turn.truth.stop_latency_ms) < 5.0


# ---- discards --------------------------------------------------------------------------------


def test_no_reply_is_discarded(turn_of):
    """An ear that holds only noise (no reply): discard 'no_reply', in both modes no number."""
    turn = turn_of("clean16", 1)
    capture = turn.capture.astype(np.float64)
    capture[:, 1] = 1e-3 * np.random.default_rng(3).standard_normal(len(capture))
    fs = turn.sample_rate_hz
    m = analyze_capture(capture, fs, turn.stimulus, fs, speech_end_s=turn.speech_end_s)
    assert m.ttfa_ms is None and m.confidence == 0.0
    assert m.discard.startswith("no_reply"), m.discard
    m_rr = analyze_capture(
        capture, fs, turn.stimulus, fs, speech_end_s=turn.speech_end_s, reply_reference=turn.reply
    )
    assert m_rr.ttfa_ms is None and m_rr.discard


def _early_reply_capture(sources, before_s: float):
    """A capture built by hand: ref = the stimulus, ear = a reply starting `before_s` before
    the user's speech ends (plus faint noise). Returns (capture, fs, stimulus, user, reply)."""
    fs = 16000
    rng = np.random.default_rng(2)
    user, reply, _, _ = sources.pick_turn(rng)
    stim = _resample(user.samples, user.sample_rate_hz, fs)
    rep = _resample(reply.samples, reply.sample_rate_hz, fs)
    rep = rep[round(reply.speech_start_s * fs) : round(reply.speech_end_s * fs)]
    lead = int(0.5 * fs)
    at = lead + round((user.speech_end_s - before_s) * fs)
    capture = np.zeros((at + len(rep) + fs, 2))
    capture[lead : lead + len(stim), 0] = stim
    capture[at : at + len(rep), 1] = rep
    capture[:, 1] += 1e-4 * rng.standard_normal(len(capture))
    return capture, fs, stim, user, rep


@pytest.mark.parametrize("before_s", [0.5, 0.1])
def test_agent_talking_over_the_user_is_a_negative_ttfa(sources, before_s):
    """The agent talking over the user is a result, not a discard: blind mode reports the
    negative TTFA and how long the reply overlapped the user's speech."""
    capture, fs, stim, user, rep = _early_reply_capture(sources, before_s)
    dry = AnalysisOptions(dry_path=True)  # the ear holds the DUT's output alone
    m = analyze_capture(capture, fs, stim, fs, speech_end_s=user.speech_end_s, options=dry)
    truth_ms = -before_s * 1000 + first_sound(rep) / fs * 1000
    assert m.discard is None, m.discard
    assert abs(m.ttfa_ms - truth_ms) < 2.0, (m.ttfa_ms, truth_ms)
    assert m.overlap_ms == pytest.approx(-m.ttfa_ms)
    assert any("talked over the user" in n for n in m.notes), m.notes


def test_sound_before_the_speech_end_on_an_unknown_path_is_measured_not_timed(sources):
    """Without dry_path the ear may hold anything (a burst of noise, another talker): the
    overlap is measured and the turn refused (reply_before_speech_end), never a TTFA."""
    capture, fs, stim, user, rep = _early_reply_capture(sources, 0.5)
    m = analyze_capture(capture, fs, stim, fs, speech_end_s=user.speech_end_s)
    assert m.ttfa_ms is None and m.discard.startswith("reply_before_speech_end"), m.discard
    assert m.overlap_ms == pytest.approx(500.0 - first_sound(rep) / fs * 1000, abs=3.0)
    # A burst of white noise over the end of the question, the reply 1 s after it: the
    # burst is not taken for a reply starting 500 ms early.
    capture, fs, stim, user, rep = _early_reply_capture(sources, -1.0)
    rng = np.random.default_rng(3)
    burst = capture.copy()
    end = int(0.5 * fs + user.speech_end_s * fs)
    burst[end - fs // 2 : end + int(0.4 * fs), 1] += 0.05 * rng.standard_normal(int(0.9 * fs))
    m = analyze_capture(burst, fs, stim, fs, speech_end_s=user.speech_end_s)
    assert m.ttfa_ms is None and m.discard.startswith("reply_before_speech_end"), m.discard


@pytest.mark.parametrize("before_s", [0.5, 0.1])
def test_talking_over_in_reply_reference_mode(sources, before_s):
    """Reply-reference mode finds a reply that started before the speech end and reports
    its (negative) TTFA to the sample."""
    capture, fs, stim, user, rep = _early_reply_capture(sources, before_s)
    m = analyze_capture(capture, fs, stim, fs, speech_end_s=user.speech_end_s, reply_reference=rep)
    truth_ms = -before_s * 1000 + first_sound(rep) / fs * 1000
    assert m.discard is None, m.discard
    assert m.mode == "reply-reference"
    assert abs(m.ttfa_ms - truth_ms) < 0.1, (m.ttfa_ms, truth_ms)
    assert m.overlap_ms > 0


@pytest.mark.parametrize("seed", [23, 34, 36])
def test_white_noise_0db_never_confidently_wrong(sources, seed):
    """At 0 dB SNR blind mode either discards or lands within 20 ms."""
    rng = np.random.default_rng(seed)
    user, reply, _, _ = sources.pick_turn(rng)
    turn = make_turn(Condition("w0", noise="white", snr_db=0.0), user, reply, rng)
    m = _analyze(turn)
    if m.discard is None:
        assert abs(m.ttfa_ms - turn.truth.ttfa_ms) < 20.0, (m, turn.truth)
    else:
        assert m.ttfa_ms is None
        assert m.discard.split(":")[0] in {"too_noisy", "low_confidence", "no_reply"}


def test_clipping_ear_is_discarded(turn_of):
    """An ear channel that clips during the reply: discard 'clipped'."""
    turn = turn_of("clean48", 1)
    capture = turn.capture.astype(np.float64)
    capture[:, 1] = np.clip(capture[:, 1] * 30.0, -1.0, 1.0)
    fs = turn.sample_rate_hz
    m = analyze_capture(capture, fs, turn.stimulus, fs, speech_end_s=turn.speech_end_s)
    assert m.ttfa_ms is None
    assert m.discard.startswith("clipped"), m.discard


def test_stimulus_missing_from_ref_is_discarded(turn_of):
    """A ref channel that does not hold the stimulus: low_confidence, not a number."""
    turn = turn_of("clean48", 1)
    capture = turn.capture.astype(np.float64)
    capture[:, 0] = 0.1 * np.random.default_rng(9).standard_normal(len(capture))
    fs = turn.sample_rate_hz
    m = analyze_capture(capture, fs, turn.stimulus, fs, speech_end_s=turn.speech_end_s)
    assert m.ttfa_ms is None
    assert m.discard.startswith("low_confidence"), m.discard


# ---- invalid input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda c: c[:, 0], "shape"),
        (lambda c: c[:, :1], "channel"),
        (lambda c: np.where(np.arange(len(c))[:, None] == 10, np.nan, c), "NaN"),
        (lambda c: np.stack([c[:, 0], np.zeros(len(c))], axis=1), "all zeros"),
        (lambda c: np.stack([np.zeros(len(c)), c[:, 1]], axis=1), "all zeros"),
    ],
    ids=["1-D", "one-channel", "nan", "silent-ear", "silent-ref"],
)
def test_unanalysable_capture_raises_input_error(turn_of, change, match):
    """Input that cannot be analysed at all raises InputError saying what is wrong."""
    turn = turn_of("clean16", 1)
    capture = change(turn.capture.astype(np.float64))
    fs = turn.sample_rate_hz
    with pytest.raises(InputError, match=match):
        analyze_capture(capture, fs, turn.stimulus, fs, speech_end_s=turn.speech_end_s)


def test_speech_end_outside_stimulus_raises(turn_of):
    turn = turn_of("clean16", 1)
    fs = turn.sample_rate_hz
    with pytest.raises(InputError, match="outside the stimulus"):
        analyze_capture(turn.capture, fs, turn.stimulus, fs, speech_end_s=1e3)


# ---- the JSON contract -----------------------------------------------------------------------


def test_to_json_holds_the_contract_keys(metrics_of):
    """to_json() holds every contract key; the barge-in keys only when a clip was given."""
    m = metrics_of("clean16", 1)
    d = m.to_json()
    assert set(d) >= CONTRACT_KEYS
    assert not BARGE_IN_KEYS & set(d)
    assert isinstance(d["segments"], list) and all(len(s) == 2 for s in d["segments"])
    assert d["discard"] is None and isinstance(d["ttfa_ms"], float)
    # With a clip given (the CLI passes barge_in=True), the keys are there even when null.
    assert set(m.to_json(barge_in=True)) >= BARGE_IN_KEYS
    json.dumps(d, allow_nan=False)


def test_to_json_of_a_discard(turn_of):
    """A discarded turn still gives every contract key, with ttfa_ms null and a reason."""
    turn = turn_of("clean16", 1)
    capture = turn.capture.astype(np.float64)
    capture[:, 1] = 1e-3 * np.random.default_rng(3).standard_normal(len(capture))
    fs = turn.sample_rate_hz
    d = analyze_capture(capture, fs, turn.stimulus, fs, speech_end_s=turn.speech_end_s).to_json()
    assert set(d) >= CONTRACT_KEYS
    assert d["ttfa_ms"] is None and isinstance(d["discard"], str)
    json.dumps(d, allow_nan=False)
