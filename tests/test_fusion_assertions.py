"""Telemetry fusion and the contract checks, on the shapes the turn runner produces.

The events are the reference agent's vocabulary (device/agent/events.py) with the capture
times the turn runner adds; the end-to-end proof that each check catches its fault on the
real agent is the fault-knob matrix (tests/plugin/test_fault_matrix.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from harness.analysis import TurnMetrics
from harness.assertions import (
    ContractError,
    Sample,
    assert_budget,
    assert_checks,
    check_budget,
    check_cancellation,
    check_chunking,
    check_partial_gate,
    check_pause_trap,
    check_reply,
    not_measured_under_stall,
)
from harness.budgets import Budget, ChunkingRules
from harness.corpus import Corpus
from harness.fusion import stage_breakdown
from harness.stalls import Stall, TurnStalls


def metrics(**kw) -> TurnMetrics:
    base = dict(
        ttfa_ms=700.0,
        confidence=1.0,
        speech_end_s=2.0,
        reply_onset_s=2.7,
        reply_end_s=5.0,
        segments=[[2.7, 5.0]],
        gaps_ms=[],
        discard=None,
    )
    base.update(kw)
    return TurnMetrics(**base)


@dataclass
class Turn:
    metrics: TurnMetrics
    events: list = field(default_factory=list)
    name: str = "t"
    plan: object = None
    paths: dict = field(default_factory=lambda: {"capture_wav": "turns/t/capture.wav"})
    timeout: str | None = None
    stalls: TurnStalls | None = None


def ev(name, t_s, **fields):
    return {"event": name, "t_s": t_s, **fields}


STREAMING = [
    ev("vad_speech_end", 2.25, turn=1),
    ev("llm_request", 2.20, turn=1, partial=False, speculative=True),
    ev("asr_final", 2.30, turn=1),
    ev("llm_first_token", 2.40, turn=1),
    ev("tts_chunk", 2.45, turn=1, text="Mount Everest is", tokens=4, reason="max_tokens"),
    ev("tts_first_audio", 2.60, turn=1),
    ev("playback_start", 2.68, turn=1),
    ev("tts_chunk", 2.70, turn=1, text="eight thousand meters tall.", tokens=5, reason="sentence"),
    ev("llm_done", 2.72, turn=1),
    ev("queue_depth", 2.45, queue="tts", depth=1, bound=4),
    ev("turn_summary", 3.0, turn=1, end_of_speech_to_playback_ms=610.0),
]


def test_stage_breakdown_lines_up_with_the_acoustic_truth():
    b = stage_breakdown(STREAMING, speech_end_s=2.0, reply_onset_s=2.7, ttfa_ms=700.0)
    s = b.stages_ms
    assert b.turn == 1
    assert s["eou_delay_ms"] == pytest.approx(250.0)
    assert s["llm_ttft_ms"] == pytest.approx(200.0)  # the speculative request, before the EOU
    assert s["first_chunk_ms"] == pytest.approx(50.0)
    assert s["tts_first_audio_ms"] == pytest.approx(150.0)
    assert s["output_path_ms"] == pytest.approx(20.0)
    assert s["self_reported_ttfa_ms"] == 610.0
    assert s["heard_minus_reported_ms"] == pytest.approx(90.0)
    assert {label for label, _, _ in b.spans} >= {"output path", "LLM first token"}


def test_stage_breakdown_without_telemetry_says_so():
    b = stage_breakdown([], speech_end_s=2.0, reply_onset_s=2.7, ttfa_ms=700.0)
    assert all(v is None for v in b.stages_ms.values())
    assert b.notes == ["no telemetry from the device"]


def test_a_streaming_reply_passes_every_chunking_rule():
    checks = check_chunking(Turn(metrics(), STREAMING), ChunkingRules())
    assert all(c.passed for c in checks), [str(c) for c in checks]
    assert_checks(checks)


def test_serialised_tts_is_caught():
    events = [e for e in STREAMING if e["event"] != "llm_done"] + [ev("llm_done", 2.44, turn=1)]
    checks = check_chunking(Turn(metrics(), events))
    with pytest.raises(ContractError, match=r"^\[chunking\] first chunk .* AFTER llm_done"):
        assert_checks(checks, Turn(metrics(), events))


def test_token_by_token_tts_is_caught():
    words = ["Mount", "Everest", "is", "tall."]
    events = [e for e in STREAMING if e["event"] != "tts_chunk"] + [
        ev("tts_chunk", 2.45 + i / 100, turn=1, text=w, tokens=1, reason="max_tokens")
        for i, w in enumerate(words)
    ]
    failed = [c for c in check_chunking(Turn(metrics(), events)) if not c.passed]
    assert [c.name for c in failed] == [
        "no chunk below the minimum",
        "chunks end on a clause boundary or at max tokens",
    ]
    assert "token-by-token" in failed[0].message


def test_unbounded_queue_stall_and_audible_gap_are_caught():
    events = [
        *STREAMING,
        ev("queue_depth", 2.5, queue="tts", depth=12, bound=None),
        ev("loop_stall", 2.6, lag_ms=350.0, where="stages.py:282 _speak < tts.py:48 synthesize"),
    ]
    turn = Turn(metrics(gaps_ms=[120.0, 480.0], segments=[[2.7, 3], [3.12, 4], [4.48, 5]]), events)
    failed = {c.name: c.message for c in check_chunking(turn) if not c.passed}
    assert set(failed) == {
        "TTS queue bounded (back-pressure)",
        "no event-loop stall",
        "no audible stall inside the reply",
    }
    assert "tts queue depth 12 above its bound 4" in failed["TTS queue bounded (back-pressure)"]
    assert "480 ms" in failed["no audible stall inside the reply"]
    # where the device says its loop was goes with the failure (the why, not the verdict)
    assert "loop was at stages.py:282 _speak" in failed["no event-loop stall"]


def host_stalls(*spans, in_process=False, shares=False, paced=True):
    """The harness's probe's stalls (capture s) as `harness.stalls.TurnStalls`."""
    return TurnStalls(
        tuple(Stall(a, b, (b - a) * 1000.0 if in_process else 0.0) for a, b in spans),
        capture_end_s=10.0,
        paced=paced,
        dut_shares_process=shares,
    )


def test_back_pressure_is_judged_from_how_the_queues_filled():
    def back_pressure(*depths, bound=None, queue="audio"):
        events = [
            *(e for e in STREAMING if e["event"] != "queue_depth"),
            *(
                ev("queue_depth", 2.5 + 0.1 * i, queue=queue, depth=d, bound=bound)
                for i, d in enumerate(depths)
            ),
        ]
        (check,) = [c for c in check_chunking(Turn(metrics(), events)) if "queue" in c.name]
        return check

    # the producer waited: the depth held at its level while more was produced
    held = back_pressure(1, 1, 2, 2, 2, 1, bound=2)
    assert held.passed and held.applicable and "audio held at 2" in held.message
    # everything queued at once: a depth that only rose, whatever the device declares
    grew = back_pressure(1, 1, 2, 3, bound=None)
    assert not grew.passed and "audio queue grew with the reply to 3 (1, 1, 2, 3)" in grew.message
    assert not back_pressure(1, 2, 3, 4, 5, bound=16).passed  # a generous bound is no excuse
    # above its own bound: the device broke its promise
    over = back_pressure(1, 2, 3, 2, bound=2)
    assert not over.passed and "depth 3 above its bound 2" in over.message
    # A device that declares no bound but whose queue never filled is not failed for the
    # declaration (before: "reports no bound (deepest 1)" failed it): the reply did not
    # exercise the queue, and the check says so.
    quiet = back_pressure(1, 0, 1, 0, bound=None, queue="tts")
    assert quiet.passed and not quiet.applicable
    assert quiet.message.startswith("not exercised: the reply never filled a queue")


def test_a_lag_the_host_caused_is_not_the_agents_stall():
    def stall_check(*stalls, seen=None):
        events = [*STREAMING, *(ev("loop_stall", 2.6, **f) for f in stalls)]
        turn = Turn(metrics(), events, stalls=seen)
        (check,) = [c for c in check_chunking(turn) if "event-loop" in c.name]
        return check

    # tympan's own probe was held up over 390 ms of the 400 ms lag: the host's
    starved = stall_check({"lag_ms": 400.0}, seen=host_stalls((2.21, 2.60)))
    assert starved.passed and "up to 390 ms the host caused" in starved.message
    # Only the part tympan's probe did not share counts: 400 - 100 = 300 > 120.
    own = stall_check({"lag_ms": 400.0}, {"lag_ms": 90.0}, seen=host_stalls((2.5, 2.6)))
    assert (
        not own.passed and "1 event-loop stall(s) of the agent's own, worst 300 ms" in own.message
    )
    # The device cannot excuse itself: a lag it puts down to the host is its own unless
    # tympan saw the host stall too (before, `starved_ms = lag_ms` always passed).
    claimed = stall_check({"lag_ms": 400.0, "starved_ms": 400.0}, seen=host_stalls())
    assert not claimed.passed and "worst 400 ms" in claimed.message
    assert "the device put up to 400 ms down to the host: not used" in claimed.message
    # On a rig whose DUT runs in the harness's process, a stall the process ran through
    # (a thread of its own holding the GIL) may be the DUT's: it excuses nothing.
    gil = stall_check(
        {"lag_ms": 400.0}, seen=host_stalls((2.21, 2.6), in_process=True, shares=True)
    )
    assert not gil.passed and "worst 400 ms" in gil.message
    # ... while the host keeping the whole process off the CPU does
    steal = stall_check({"lag_ms": 400.0}, seen=host_stalls((2.21, 2.6), shares=True))
    assert steal.passed
    # and so does the kernel's count of the DUT's own threads waiting for a CPU meanwhile
    crowded = TurnStalls(capture_end_s=10.0, dut_starved=((2.2, 2.4), (2.45, 2.6)))
    assert stall_check({"lag_ms": 400.0}, seen=crowded).passed
    partly = TurnStalls(capture_end_s=10.0, dut_starved=((2.5, 2.6),))
    assert "worst 300 ms" in stall_check({"lag_ms": 400.0}, seen=partly).message


def test_a_stalled_host_leaves_only_the_failures_it_overlapped_unmeasured():
    # a silence inside the reply 80 ms over the limit, at 3.0-3.48 s
    gap_ms = ChunkingRules().max_gap_ms + 80.0
    segs = [[2.7, 3.0], [3.0 + gap_ms / 1000, 5.0]]
    (gap,) = [
        c
        for c in check_chunking(Turn(metrics(segments=segs, gaps_ms=[gap_ms]), STREAMING))
        if c.name == "no audible stall inside the reply"
    ]
    assert not gap.passed and gap.over_ms == pytest.approx(80.0)
    assert gap.interval_s == pytest.approx((3.0, 3.0 + gap_ms / 1000))
    excused = not_measured_under_stall(gap, host_stalls((3.1, 3.4)))
    assert excused.passed and not excused.applicable
    assert excused.message.startswith("not measured: longest silence inside the reply")
    assert "300 ms inside the interval it measures (3.00-3.48 s)" in excused.message
    # Before, any stall during the turn excused it: now a stall elsewhere (the WAV written,
    # the analysis run, another part of the reply) excuses nothing, and one that overlaps
    # the interval by less than the miss does not either.
    assert not_measured_under_stall(gap, host_stalls((5.5, 6.5))) is gap
    assert not_measured_under_stall(gap, host_stalls((2.5, 3.05))) is gap
    # a stall of the harness's own process, with the DUT in it, excuses nothing
    assert (
        not_measured_under_stall(gap, host_stalls((3.0, 3.5), in_process=True, shares=True)) is gap
    )
    # on a rig faster than real time no stall changes anything
    assert not_measured_under_stall(gap, host_stalls((3.0, 3.5), paced=False)) is gap
    # a rule that is not about time stands
    deep = [*STREAMING, ev("queue_depth", 2.5, queue="tts", depth=12, bound=4)]
    queue = next(c for c in check_chunking(Turn(metrics(), deep)) if "queue" in c.name)
    assert not queue.passed and queue.over_ms is None
    assert not_measured_under_stall(queue, host_stalls((0.0, 9.0))) is queue
    # a check that held is kept as it is
    ok = check_chunking(Turn(metrics(), STREAMING))[0]
    assert ok.passed and not_measured_under_stall(ok, host_stalls((0.0, 9.0))) is ok


def test_partial_gate():
    ok = check_partial_gate(Turn(metrics(), STREAMING))
    assert ok.passed
    bad = [*STREAMING, ev("llm_request", 1.2, turn=1, partial=True, speculative=False, text="what")]
    check = check_partial_gate(Turn(metrics(), bad))
    assert not check.passed and "partial" in check.message
    assert not check_partial_gate(Turn(metrics(), [])).applicable


def test_reply_and_pause_trap():
    assert check_reply(Turn(metrics())).passed
    missing = check_reply(Turn(metrics(ttfa_ms=None, discard="no_reply: silence")))
    assert not missing.passed and missing.contract == "turn-taking"
    early = [ev("playback_start", 1.5, turn=1)]
    trap = check_pause_trap(Turn(metrics(), early))
    assert not trap.passed and "before the user finished" in trap.message
    talked_over = metrics(ttfa_ms=None, discard="reply_before_speech_end: ...")
    assert not check_pause_trap(Turn(talked_over)).passed
    # Measured from the audio: a negative TTFA and the overlap, judged here.
    overlapped = metrics(ttfa_ms=-240.0, overlap_ms=240.0)
    trap = check_pause_trap(Turn(overlapped))
    assert not trap.passed and "240 ms before" in trap.message
    assert check_pause_trap(Turn(metrics(), STREAMING)).passed


@dataclass
class Plan:
    barge_in: object


def barge_turn(clip_id: str, **kw) -> Turn:
    clip = Corpus.load().by_id(clip_id)
    m = metrics(barge_in_onset_s=3.5, stop_latency_ms=120.0, residual_ms=0.0, **kw)
    events = [
        *STREAMING,
        ev("barge_in", 3.62, turn=1, new_turn=2),
        ev("cancel_done", 3.64, turn=1, chunks_dropped=2, audio_dropped_ms=900),
    ]
    return Turn(m, events, plan=Plan(clip))


def test_a_clean_barge_in_passes():
    turn = barge_turn("bi01_stop", segments=[[2.7, 3.62]])
    checks = check_cancellation(turn)
    assert all(c.passed for c in checks), [str(c) for c in checks]


def test_talking_on_and_stale_audio_are_caught():
    turn = barge_turn("bi01_stop", segments=[[2.7, 5.0]])
    turn.metrics = metrics(
        barge_in_onset_s=3.5, stop_latency_ms=1500.0, residual_ms=600.0, segments=[[2.7, 5.0]]
    )
    turn.events = [e for e in turn.events if e["event"] != "cancel_done"]
    failed = {c.name for c in check_cancellation(turn) if not c.passed}
    assert failed == {
        "reply stops on barge-in",
        "no stale audio after the stop",
        "device cancels LLM and TTS",
    }


def test_a_barge_in_question_must_be_answered():
    clip = Corpus.load().by_id("bi08_actually_weather")
    length = clip.speech_end_s - clip.speech_start_s
    answered = barge_turn("bi08_actually_weather", segments=[[2.7, 3.62], [3.5 + length + 0.8, 8]])
    assert all(c.passed for c in check_cancellation(answered))
    silent = barge_turn("bi08_actually_weather", segments=[[2.7, 3.62]])
    failed = [c for c in check_cancellation(silent) if not c.passed]
    assert [c.name for c in failed] == ["the barge-in is answered"]


def test_budget_failure_shows_distribution_and_worst_turns():
    samples = [Sample(float(v), f"q{v}", f"turns/q{v}/capture.wav") for v in range(500, 2100, 100)]
    check = check_budget(Budget("ttfa_ms", "p95", 1500.0), [*samples, Sample(None, "qx")])
    assert not check.passed
    assert "p95 = 1925 (budget 1500)" in check.message
    assert "1 turn(s) discarded" in check.message
    assert "worst: q2000 2000 (turns/q2000/capture.wav)" in check.message
    with pytest.raises(ContractError, match=r"^\[budget\] ttfa_ms p95"):
        assert_budget(Budget("ttfa_ms", "p95", 1500.0), samples)
    assert check_budget(Budget("ttfa_ms", "p50", 1500.0), samples).passed


def test_a_reply_that_talks_on_is_caught_even_when_its_stop_cannot_be_placed():
    note = (
        "stop latency not measured: the ear rings down for 90 ms before it goes quiet (a "
        "reverberant room, or a fade-out); move the ear mic closer"
    )
    turn = barge_turn("bi01_stop", segments=[[2.7, 5.0]])
    turn.metrics = metrics(
        barge_in_onset_s=3.5,
        stop_latency_ms=None,
        residual_ms=None,
        segments=[[2.7, 5.0]],
        notes=[note],
        stop_refused=note,
        ring_down_ms=90.0,
    )
    (stop,) = [c for c in check_cancellation(turn) if c.name == "reply stops on barge-in"]
    assert not stop.passed
    assert "went on for at least 1410 ms" in stop.message and "rings down" in stop.message


def test_cancellation_still_judged_when_the_clock_map_failed():
    """Events without capture times (the turn's host-clock map could not be fitted) keep
    their host times: the device's cancel is still seen, in order."""
    turn = barge_turn("bi01_stop", segments=[[2.7, 3.62]])
    for i, e in enumerate(turn.events):
        e["t_us"] = int(e["t_s"] * 1e6) + 10_000_000
        e["t_s"] = None
        turn.events[i] = e
    checks = {c.name: c for c in check_cancellation(turn)}
    assert checks["device cancels LLM and TTS"].passed, checks
