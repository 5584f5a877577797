"""The contracts a streaming voice agent is held to, as checks and assertions.

Every check returns `Check` values (contract, name, passed, message) so a run can count rates
over many turns; every ``assert_*`` raises `ContractError` (an AssertionError, so pytest shows
it as a failure) whose message starts with the contract in brackets — ``[budget]``,
``[chunking]``, ``[cancellation]``, ``[turn-taking]`` — names the broken rule, shows what was
seen against what was allowed, and points at the evidence.

A *turn* here is anything shaped like `harness.scenario.TurnResult`: ``name``, ``metrics``
(a `TurnMetrics`), ``events`` (telemetry mapped onto the capture: ``{"event", "t_s", ...}``),
``plan`` (``stimulus``, ``barge_in`` utterances) and ``paths`` (evidence files). Checks that
need telemetry the DUT does not send say so and pass (``applicable`` False): an agent is not
failed for what the harness cannot see.

Map:
    Check, ContractError, assert_checks
    check_reply / check_pause_trap / check_partial_gate      turn-taking
    check_chunking                                           chunking, back-pressure, stalls
    check_cancellation                                       barge-in
    assert_budget (check_budget: harness.budgets)            percentiles over many turns
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.budgets import (
    Budget,
    CancellationRules,
    ChunkingRules,
    check_budget,
)
from harness.fusion import events_named, reply_turn
from harness.reasons import Discard, Timeout
from harness.records import Check, Sample

_BOUNDARY = re.compile(r"[.?!;:,]['\")\]]*$")


class ContractError(AssertionError):
    """A contract did not hold; the message starts with ``[contract]``."""


def _evidence(turn: Any) -> str:
    paths = getattr(turn, "paths", None) or {}
    where = paths.get("capture_wav") if isinstance(paths, Mapping) else None
    return f" (evidence: {where})" if where else ""


def assert_checks(checks: Iterable[Check], turn: Any = None) -> None:
    """Raise `ContractError` listing every failed check (the first's contract leads)."""
    failed = [c for c in checks if not c.passed]
    if not failed:
        return
    name = getattr(turn, "name", None)
    head = f"[{failed[0].contract}] {failed[0].name}: {failed[0].message}"
    lines = [head + (f" - turn {name}" if name else "") + _evidence(turn)]
    lines += [f"  also [{c.contract}] {c.name}: {c.message}" for c in failed[1:]]
    raise ContractError("\n".join(lines))


def not_measured_under_stall(check: Check, stalls: Any) -> Check:
    """`check` as judged on a turn the host stalled through every attempt (`stalls`: a
    `harness.stalls.TurnStalls`): a rule on a duration that failed by no more than the
    stalls inside the interval it measured is not measured (those stalls alone can explain
    it; it passes, `applicable` False, and says both figures); any other check is kept,
    and so is one whose interval the stalls missed."""
    if check.passed or check.over_ms is None or check.interval_s is None:
        return check
    a, b = check.interval_s
    overlap_ms = stalls.overlap_ms(a, b)
    if check.over_ms > overlap_ms:
        return check
    return Check(
        check.contract,
        check.name,
        True,
        f"not measured: {check.message}; the host stalled the harness for {overlap_ms:.0f} "
        f"ms inside the interval it measures ({a:.2f}-{b:.2f} s), more than the "
        f"{check.over_ms:.0f} ms it missed by",
        applicable=False,
        over_ms=check.over_ms,
        interval_s=check.interval_s,
    )


def _metrics(turn: Any) -> Any:
    return turn.metrics


def _events(turn: Any) -> list[Mapping[str, Any]]:
    return list(getattr(turn, "events", None) or [])


# ------------------------------------------------------------------------------------------
# Turn-taking
# ------------------------------------------------------------------------------------------


def check_reply(turn: Any) -> Check:
    """The agent answered: a reply was heard at the ear (``no_reply`` is a failure; other
    discards are measurement doubts, not a missing reply)."""
    m = _metrics(turn)
    missing = Discard.of(m.discard) is Discard.NO_REPLY
    timeout = getattr(turn, "timeout", None)
    if missing or getattr(turn, "timeout_kind", None) is Timeout.NO_REPLY:
        why = timeout or m.discard
        return Check("turn-taking", "a reply is heard", False, f"no reply: {why}")
    return Check("turn-taking", "a reply is heard", True, "reply heard")


def check_pause_trap(turn: Any) -> Check:
    """The agent did not speak inside the user's mid-sentence pause (it cut the user off).

    Evidence: the ear (a reply starting before the labelled end of speech) and the telemetry
    (a ``playback_start`` before it).
    """
    m = _metrics(turn)
    name = "no reply inside a mid-sentence pause"
    if Discard.of(m.discard) is Discard.EARLY_REPLY:
        return Check("turn-taking", name, False, f"the agent talked over the user: {m.discard}")
    overlap = getattr(m, "overlap_ms", None)
    if overlap is not None and overlap > 0:
        return Check(
            "turn-taking",
            name,
            False,
            f"the agent talked over the user: its reply started {overlap:.0f} ms before the "
            f"user's speech ended (TTFA {m.ttfa_ms:.0f} ms)",
        )
    end = m.speech_end_s
    early = [e for e in events_named(_events(turn), "playback_start") if end is not None]
    early = [e for e in early if e.get("t_s") is not None and e["t_s"] < end]
    if early:
        t = early[0]["t_s"]
        return Check(
            "turn-taking",
            name,
            False,
            f"the device started playback at {t:.3f} s, {1000 * (end - t):.0f} ms before the "
            f"user finished ({end:.3f} s): it took the pause for the end of the question",
        )
    return Check("turn-taking", name, True, "no sound or playback before the end of speech")


def check_partial_gate(turn: Any) -> Check:
    """The LLM was only asked on an end of utterance (or speculatively, in the end-of-
    utterance silence), never on a partial transcript."""
    name = "LLM waits for the end of utterance"
    reqs = events_named(_events(turn), "llm_request")
    if not reqs:
        return Check("turn-taking", name, True, "no llm_request telemetry", applicable=False)
    bad = [e for e in reqs if e.get("partial") and not e.get("speculative")]
    if bad:
        texts = ", ".join(repr(str(e.get("text", ""))) for e in bad[:3])
        return Check(
            "turn-taking",
            name,
            False,
            f"{len(bad)} LLM request(s) fired on partial transcripts ({texts}): the EOU gate is "
            "missing, the LLM answers half a question",
        )
    return Check("turn-taking", name, True, f"{len(reqs)} request(s), none on a partial")


# ------------------------------------------------------------------------------------------
# Chunking, back-pressure, stalls
# ------------------------------------------------------------------------------------------


def check_chunking(turn: Any, rules: ChunkingRules | None = None) -> list[Check]:
    """Chunking of the reply: clause boundaries, minimum size, streaming (first chunk before
    the LLM is done), TTS queue bounded, no event-loop stalls, no audible gap in the audio."""
    rules = rules or ChunkingRules()
    m = _metrics(turn)
    events = _events(turn)
    checks: list[Check] = [_audible_stall_check(m, rules)]
    turn_no = reply_turn(events, m.speech_end_s)
    chunks = events_named(events, "tts_chunk", turn_no) if turn_no is not None else []
    if not chunks:
        checks.append(Check("chunking", "chunks", True, "no tts_chunk telemetry", applicable=False))
        return checks + _queue_and_stalls(events, rules, getattr(turn, "stalls", None))
    checks += _chunk_size_checks(chunks, rules)
    checks.append(_streaming_check(events_named(events, "llm_done", turn_no), chunks))
    return checks + _queue_and_stalls(events, rules, getattr(turn, "stalls", None))


def _audible_stall_check(m: Any, rules: ChunkingRules) -> Check:
    """The longest silence inside the reply (before a barge-in) against `rules.max_gap_ms`."""
    gaps = _gaps_before(m, m.barge_in_onset_s)
    worst = max(gaps, default=0.0)
    return Check(
        "chunking",
        "no audible stall inside the reply",
        worst <= rules.max_gap_ms,
        f"longest silence inside the reply {worst:.0f} ms (limit {rules.max_gap_ms:.0f} ms)"
        + (f" at segment gaps {[round(g) for g in gaps]}" if worst > rules.max_gap_ms else ""),
        over_ms=worst - rules.max_gap_ms,
        interval_s=_gap_interval(m, worst),
    )


def _tokens(e: Mapping[str, Any]) -> int:
    """A tts_chunk's tokens: its count, else its text's words."""
    n = e.get("tokens")
    return int(n) if n is not None else len(str(e.get("text", "")).split())


def _chunk_size_checks(chunks: list[Mapping[str, Any]], rules: ChunkingRules) -> list[Check]:
    """Every chunk but the last has `rules.min_tokens` or more, and ends on a clause boundary
    or at its token limit."""
    small = [e for e in chunks[:-1] if _tokens(e) < rules.min_tokens]
    unbounded = [
        e
        for e in chunks[:-1]
        if not _BOUNDARY.search(str(e.get("text", "")).strip())
        and not (e.get("reason") == "max_tokens" and _tokens(e) >= rules.min_tokens)
        and _tokens(e) < rules.max_tokens
    ]
    return [
        Check(
            "chunking",
            "no chunk below the minimum",
            not small,
            f"{len(small)} of {len(chunks)} chunks under {rules.min_tokens} tokens before the "
            f"last: {[str(e.get('text', '')) for e in small[:5]]} - token-by-token TTS"
            if small
            else f"{len(chunks)} chunks, each >= {rules.min_tokens} tokens (the last excepted)",
        ),
        Check(
            "chunking",
            "chunks end on a clause boundary or at max tokens",
            not unbounded,
            f"chunks cut mid-clause: {[str(e.get('text', '')) for e in unbounded[:5]]}"
            if unbounded
            else "every chunk ends on a boundary or at its token limit",
        ),
    ]


def _streaming_check(done: list[Mapping[str, Any]], chunks: list[Mapping[str, Any]]) -> Check:
    """The first chunk reached TTS before the LLM was done (`done`: the reply's llm_done)."""
    first_t = chunks[0].get("t_s")
    if done and first_t is not None and done[0].get("t_s") is not None:
        lag_ms = (first_t - done[0]["t_s"]) * 1000.0
        return Check(
            "chunking",
            "first chunk reaches TTS before the LLM is done",
            lag_ms < 0,
            f"first chunk {abs(lag_ms):.0f} ms "
            + ("before" if lag_ms < 0 else "AFTER")
            + " llm_done"
            + (
                " - TTS waits for the whole LLM reply (serialised, not streamed)"
                if lag_ms >= 0
                else ""
            ),
        )
    return Check(
        "chunking",
        "first chunk reaches TTS before the LLM is done",
        True,
        "no llm_done telemetry for the reply",
        applicable=False,
    )


def _gaps_before(m: Any, until_s: float | None) -> list[float]:
    """Silences inside the reply, ms; with a barge-in only those before it (the silence
    after an interrupted reply is the point, not a stall)."""
    segs = [s for s in (m.segments or []) if until_s is None or s[0] < until_s]
    if until_s is None:
        return [float(g) for g in (m.gaps_ms or []) if g is not None]
    return [(b[0] - a[1]) * 1000.0 for a, b in itertools.pairwise(segs)]


def _gap_interval(m: Any, gap_ms: float) -> tuple[float, float] | None:
    """Where the silence of `gap_ms` inside the reply was (capture s): the pair of
    segments whose gap is closest to it."""
    pairs = list(itertools.pairwise(m.segments or []))
    if not pairs or gap_ms <= 0:
        return None
    a, b = min(pairs, key=lambda p: abs((p[1][0] - p[0][1]) * 1000.0 - gap_ms))
    return (float(a[1]), float(b[0]))


def _back_pressure(events: Sequence[Mapping[str, Any]], rules: ChunkingRules) -> Check:
    """Back-pressure, judged from how the reply's queues behaved, not from what the device
    declares: per queue (``queue_depth`` events in time order), a depth held at its highest
    level for consecutive reports while more was produced is the producer waiting (held);
    a depth that only ever rose, to 3 or more by the end of the reply, or past
    `ChunkingRules.max_queue_depth`, is everything queued at once (no back-pressure); a
    depth above a bound the device declared breaks its own promise. A reply too short to
    fill any queue is "not exercised" (applicable False): it shows nothing either way."""
    name = "TTS queue bounded (back-pressure)"
    by_queue: dict[str, list[Mapping[str, Any]]] = {}
    for e in sorted(events_named(events, "queue_depth"), key=lambda e: float(e.get("t_s") or 0)):
        by_queue.setdefault(str(e.get("queue", "tts")), []).append(e)
    if not by_queue:
        return Check("chunking", name, True, "no queue_depth telemetry", applicable=False)
    failed, held, quiet = [], [], []
    for queue, evs in by_queue.items():
        depths = [int(e.get("depth", 0)) for e in evs]
        deepest = max(depths)
        bounds = [int(e["bound"]) for e in evs if e.get("bound")]
        series = ", ".join(str(d) for d in depths[:12]) + (" ..." if len(depths) > 12 else "")
        rising = all(b >= a for a, b in itertools.pairwise(depths))
        if bounds and deepest > min(bounds):
            failed.append(f"{queue} queue depth {deepest} above its bound {min(bounds)} ({series})")
        elif deepest > rules.max_queue_depth or (rising and deepest >= 3):
            failed.append(
                f"{queue} queue grew with the reply to {deepest} ({series}): nothing made the "
                "producer wait, the LLM runs ahead of the speech"
            )
        elif deepest >= 2 and any(a == b == deepest for a, b in itertools.pairwise(depths)):
            held.append(f"{queue} held at {deepest} while more was produced ({series})")
        else:
            quiet.append(f"{queue} {series}")
    if failed:
        return Check("chunking", name, False, "; ".join(failed))
    if held:
        return Check("chunking", name, True, "; ".join(held + quiet))
    return Check(
        "chunking",
        name,
        True,
        f"not exercised: the reply never filled a queue ({'; '.join(quiet)})",
        applicable=False,
    )


def _queue_and_stalls(
    events: Sequence[Mapping[str, Any]], rules: ChunkingRules, stalls: Any = None
) -> list[Check]:
    checks: list[Check] = [_back_pressure(events, rules)]
    # Whose a lag was is judged from the harness's own evidence (`turn.stalls`, on the
    # capture timeline): the part of the lag its probe was held up for too, or the DUT's
    # threads waited on a run queue for (the kernel's count), was the host's. The device's
    # own `starved_ms` is what it says about itself: shown, never subtracted.
    lags = []
    for e in events_named(events, "loop_stall"):
        lag_ms = float(e.get("lag_ms", 0.0) or 0.0)
        t = e.get("t_s")
        span = (float(t) - lag_ms / 1000.0, float(t)) if t is not None else None
        host_ms = stalls.host_share_ms(*span) if stalls is not None and span is not None else 0.0
        lags.append((max(0.0, lag_ms - host_ms), host_ms, span, e))
    worst_own, _, _, worst_event = max(lags, key=lambda x: x[0], default=(0.0, 0.0, None, None))
    host = [h for _, h, _, _ in lags if h > 0]
    said = [float(e.get("starved_ms") or 0.0) for *_, e in lags]
    host_note = (
        f"; {len(host)} lag(s) up to {max(host):.0f} ms the host caused (tympan's probe was "
        "held up, or the DUT's threads waited for a CPU, as long)"
        if host
        else ""
    )
    if any(x > 0 for x in said):
        host_note += f" (the device put up to {max(said):.0f} ms down to the host: not used)"
    where = worst_event.get("where") if worst_event is not None else None
    if where and worst_own > rules.max_loop_stall_ms:
        host_note += f"; the device says its loop was at {where}"
    over = [x for x, *_ in lags if x > rules.max_loop_stall_ms]
    checks.append(
        Check(
            "chunking",
            "no event-loop stall",
            worst_own <= rules.max_loop_stall_ms,
            f"{len(over)} event-loop stall(s) of the agent's own, worst {worst_own:.0f} ms "
            f"(limit {rules.max_loop_stall_ms:.0f} ms): a blocking call inside the event loop"
            f"{host_note}"
            if worst_own > rules.max_loop_stall_ms
            else f"worst event-loop lag of its own {worst_own:.0f} ms{host_note}",
            # the host's share is already out of `worst_own`: no second excuse
            over_ms=worst_own - rules.max_loop_stall_ms,
        )
    )
    return checks


# ------------------------------------------------------------------------------------------
# Cancellation
# ------------------------------------------------------------------------------------------


def check_cancellation(
    turn: Any,
    rules: CancellationRules | None = None,
    stop_budget_ms: float = 200.0,
) -> list[Check]:
    """A barge-in turn: the reply stopped within `stop_budget_ms`, no stale audio after the
    stop, the device cancelled (telemetry), the barge-in is answered (or, for a clip like
    "Stop.", met with silence) within the TTFA allowed, and old and new replies never overlap."""
    rules = rules or CancellationRules()
    m = _metrics(turn)
    if m.barge_in_onset_s is None:
        return [
            Check(
                "cancellation", "barge-in injected", False, "the barge-in clip was not found in ref"
            )
        ]
    checks = [_stop_check(m, stop_budget_ms), _stale_check(m, rules)]
    checks += _device_cancel_checks(m, _events(turn))
    clip = getattr(getattr(turn, "plan", None), "barge_in", None)
    wants_answer = bool(getattr(clip, "reply_keywords", ()))
    if clip is not None:
        checks.append(_answer_check(m, clip, wants_answer, rules))
    return checks


def _stop_check(m: Any, stop_budget_ms: float) -> Check:
    """The reply stops on the barge-in within the budget (from the audio)."""
    stop = m.stop_latency_ms
    if stop is None:
        why = getattr(m, "stop_refused", None) or "no stop found"
        talked_ms = _sound_after_onset_ms(m)
        if talked_ms is not None and talked_ms > stop_budget_ms:
            msg = (
                f"the reply went on for at least {talked_ms:.0f} ms after the barge-in (budget "
                f"{stop_budget_ms:.0f} ms) - the agent talked on over the user (its exact stop "
                f"is not measurable: {why})"
            )
        else:
            msg = f"not measured: {why}"
        return Check("cancellation", "reply stops on barge-in", False, msg)
    return Check(
        "cancellation",
        "reply stops on barge-in",
        stop <= stop_budget_ms,
        f"stop latency {stop:.0f} ms (budget {stop_budget_ms:.0f} ms)"
        + (" - the agent talked on over the user" if stop > stop_budget_ms else ""),
        over_ms=stop - stop_budget_ms,
        interval_s=(m.barge_in_onset_s, m.barge_in_onset_s + stop / 1000.0),
    )


def _stale_check(m: Any, rules: CancellationRules) -> Check:
    """No audio of the interrupted reply after it stopped (from the audio)."""
    residual = m.residual_ms or 0.0
    return Check(
        "cancellation",
        "no stale audio after the stop",
        residual <= rules.max_stale_ms,
        f"{residual:.0f} ms of the interrupted reply heard after it stopped (limit "
        f"{rules.max_stale_ms:.0f} ms)"
        + (
            " - queued audio of a cancelled reply still plays"
            if residual > rules.max_stale_ms
            else ""
        ),
    )


def _device_cancel_checks(m: Any, events: list[dict[str, Any]]) -> list[Check]:
    """The device cancelled LLM and TTS of the old reply, and the new reply did not start
    before that (from the telemetry; not applicable without any)."""
    name = "device cancels LLM and TTS"
    if not events:
        return [Check("cancellation", name, True, "no telemetry", applicable=False)]
    barges = [
        e
        for e in events_named(events, "barge_in")
        # without a capture time (the turn's clock map failed) the event still counts
        if e.get("t_s") is None or e["t_s"] >= m.barge_in_onset_s - 0.05
    ]
    if not barges:
        return [
            Check(
                "cancellation",
                name,
                False,
                "the device reported no barge_in after the barge-in speech started",
            )
        ]
    old_turn = barges[0].get("turn")
    done = [e for e in events_named(events, "cancel_done") if e.get("turn") == old_turn]
    if done and done[0].get("chunks_dropped") is None:
        # a framework's observer knows the output let go, not what it dropped
        msg = f"cancel_done for turn {old_turn}: the output let go of the reply"
    elif done:
        msg = (
            f"cancel_done for turn {old_turn}: dropped {done[0].get('chunks_dropped')} "
            f"chunk(s), {done[0].get('audio_dropped_ms')} ms of audio"
        )
    else:
        msg = (
            f"barge_in at {_when(barges[0])} but no cancel_done for turn {old_turn}: "
            "LLM and TTS of the old reply were never cancelled"
        )
    checks = [Check("cancellation", name, bool(done), msg)]
    new_play = [
        e for e in events_named(events, "playback_start") if e.get("turn") not in (None, old_turn)
    ]
    if new_play and done:
        gap_ms = _between_ms(done[0], new_play[0])
        checks.append(
            Check(
                "cancellation",
                "old and new replies never overlap",
                gap_ms >= 0,
                f"reply to turn {new_play[0].get('turn')} started {abs(gap_ms):.0f} ms "
                + ("after" if gap_ms >= 0 else "BEFORE")
                + f" the old reply (turn {old_turn}) was cancelled",
            )
        )
    elif new_play and not done:
        checks.append(
            Check(
                "cancellation",
                "old and new replies never overlap",
                False,
                f"a new reply (turn {new_play[0].get('turn')}) started while turn {old_turn} "
                "was never cancelled",
            )
        )
    return checks


def _between_ms(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """b - a, ms: on the capture timeline, else on the host clock both events carry."""
    if a.get("t_s") is not None and b.get("t_s") is not None:
        return (float(b["t_s"]) - float(a["t_s"])) * 1000.0
    return (float(b.get("t_us", 0)) - float(a.get("t_us", 0))) / 1000.0


def _when(e: Mapping[str, Any]) -> str:
    return f"{e['t_s']:.3f} s" if e.get("t_s") is not None else f"host {e.get('t_us')} us"


def _sound_after_onset_ms(m: Any) -> float | None:
    """When the stop could not be placed (the sound rang or faded out): how long the sound
    playing at the barge-in went on at least, ms (its chained segments' end minus the
    ring-down the analysis saw), None when nothing played on."""
    onset = m.barge_in_onset_s
    chain_end = None
    for a, b in sorted(m.segments or []):
        if b <= onset:
            continue
        if chain_end is None:
            if a > onset + 0.3:
                break
            chain_end = b
        elif a - chain_end < 0.3:
            chain_end = max(chain_end, b)
        else:
            break
    if chain_end is None:
        return None
    return (chain_end - onset) * 1000.0 - (getattr(m, "ring_down_ms", None) or 0.0)


def _answer_check(m: Any, clip: Any, wants_answer: bool, rules: CancellationRules) -> Check:
    """Is the barge-in answered (or met with silence, for "Stop.") in time?"""
    name = "the barge-in is answered" if wants_answer else "a stop request is met with silence"
    clip_len = float(clip.speech_end_s) - float(clip.speech_start_s)
    clip_end = m.barge_in_onset_s + clip_len
    stop_at = m.barge_in_onset_s + (m.stop_latency_ms or 0.0) / 1000.0
    after = [s for s in (m.segments or []) if s[0] > max(clip_end, stop_at) + 0.1]
    if not wants_answer:
        if after:
            return Check(
                "cancellation",
                name,
                False,
                f"the agent spoke again at {after[0][0]:.3f} s after being told to stop",
            )
        return Check("cancellation", name, True, "silence after the stop request")
    if not after:
        return Check(
            "cancellation",
            name,
            False,
            f"no reply to the barge-in after it ended at {clip_end:.3f} s",
        )
    ttfa = (after[0][0] - clip_end) * 1000.0
    return Check(
        "cancellation",
        name,
        ttfa <= rules.answer_ttfa_ms,
        f"answer started {ttfa:.0f} ms after the barge-in speech ended (limit "
        f"{rules.answer_ttfa_ms:.0f} ms)",
        over_ms=ttfa - rules.answer_ttfa_ms,
        interval_s=(clip_end, after[0][0]),
    )


# ------------------------------------------------------------------------------------------
# Budgets over many turns
# ------------------------------------------------------------------------------------------


def assert_budget(budget: Budget, samples: Sequence[Sample]) -> None:
    """Raise `ContractError` when `budget` does not hold over `samples`."""
    check = check_budget(budget, samples)
    if not check.passed:
        raise ContractError(f"[budget] {check.message}")
