"""Judging one turn: which contracts apply to it, and the checks of the harness's own
infrastructure (rig glitches, host stalls, a capture that fell behind real time).

`judge_turn` runs the contracts of `harness.assertions` that apply to a turn (a reply, the
partial gate, the pause trap, chunking, cancellation) and the infrastructure checks;
`attempt_checks` adds what the session's replays found (a host that stalled the harness, a
glitch it played the turn again for). Evidence is the harness's own: the audio, its own
probe, its own clock map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.assertions import (
    check_cancellation,
    check_chunking,
    check_partial_gate,
    check_pause_trap,
    check_reply,
    not_measured_under_stall,
)
from harness.budgets import Budgets
from harness.reasons import Discard
from harness.records import Check, check_id
from harness.stalls import describe

CAPTURE_SLIP_LIMIT_MS = 50.0
"""How far a real-time rig's capture may fall behind the wall clock inside a measured
interval before that measurement is not trusted (`capture_kept_time`)."""

HOST_STALL_LIMIT_MS = 150.0
"""A turn whose capture the harness's probe thread woke up later than this inside is played
again (the host, not the DUT, took the time; `harness.stalls`); see `attempt_checks`."""


def judge_turn(turn: Any, budgets: Budgets, rig: Any, glitched: Sequence[str] = ()) -> list[Check]:
    """The checks of one played turn (`turn`: .result, .metrics, .plan, .events, .stages,
    as `session.TurnOutcome`). `rig` says whether its xruns lose samples
    (`timing_only_xruns`); `glitched` names earlier attempts played again."""
    result, m, plan = turn.result, turn.metrics, turn.plan
    checks: list[Check] = []
    if plan.barge_in is None:
        checks.append(check_reply(turn))
    checks.append(check_partial_gate(turn))
    if plan.stimulus.category == "pause":
        checks.append(check_pause_trap(turn))
    if m.reply_onset_s is not None or m.segments:
        checks += check_chunking(turn, budgets.chunking)
    if plan.barge_in is not None:
        stop = [b.limit for b in budgets.for_metric("stop_latency_ms")]
        checks += check_cancellation(
            turn, budgets.cancellation, stop_budget_ms=min(stop) if stop else 200.0
        )
    if result.xruns:
        at = [x.sample_index for x in result.capture.status.xruns][:5]
        earlier = f" (earlier attempts: {'; '.join(glitched)})" if glitched else ""
        if rig.timing_only_xruns:
            # JACK's dummy driver has no hardware clock: a late cycle loses no samples
            # of the harness's (ref, mouth and ear stay on one sample timeline); a DUT
            # JACK skipped for it may lose a period (docs/lab-rig.md): recorded, not failed
            checks.append(
                Check(
                    "infrastructure",
                    "no audio glitches",
                    True,
                    f"{result.xruns} late JACK cycle(s) at samples {at}: the dummy "
                    f"driver keeps the sample timeline intact{earlier}",
                )
            )
        else:
            checks.append(
                Check(
                    "infrastructure",
                    "no audio glitches",
                    False,
                    f"{result.xruns} xrun(s) during the turn at samples {at}: the "
                    f"measurement may be off{earlier}",
                )
            )
    clock = result.capture.clock
    if rig.timing_only_xruns and clock is not None and clock.blocks >= 3:
        checks.append(capture_kept_time(clock, rig.sample_rate_hz, m))
    return checks


HOST_KEPT_UP = "the host kept up"
"""The name of the check `attempt_checks` adds (its id: infrastructure.the_host_kept_up)."""


def attempt_checks(
    checks: list[Check],
    turn: Any,
    *,
    attempts: int,
    glitched: Sequence[str],
    lost_audio: bool,
) -> list[Check]:
    """`checks` after the session's attempts (`turn.stalls`: the last attempt's
    `harness.stalls.TurnStalls`; `turn.metrics` its measurements).

    When the host stalled the last attempt too, a rule on a duration is excused by the
    stalls inside the interval it measured, by no more than their overlap
    (`assertions.not_measured_under_stall`). Whether the host kept up is a check of its
    own: it fails (and the turn is kept out of the percentiles) only when a stall over
    `HOST_STALL_LIMIT_MS` fell inside an interval a percentile is made of (TTFA, stop
    latency); a replay is said."""
    stalls = turn.stalls
    long_stalls = stalls.over(HOST_STALL_LIMIT_MS)
    if long_stalls:
        checks = [not_measured_under_stall(c, stalls) for c in checks]
    if glitched and not lost_audio:
        checks.append(
            Check(
                "infrastructure",
                "no audio glitches",
                True,
                "replayed after rig glitches or host stalls: " + "; ".join(glitched),
            )
        )
    checks.append(host_kept_up(stalls, measured_intervals(turn.metrics), attempts))
    return checks


def host_kept_up(
    stalls: Any, intervals: Sequence[tuple[str, float, float]], attempts: int
) -> Check:
    """The `HOST_KEPT_UP` check of a turn's last attempt (see `attempt_checks`)."""
    spans = [(a, b) for _, a, b in intervals]
    inside = stalls.over(HOST_STALL_LIMIT_MS, spans)
    outside = [s for s in stalls.over(HOST_STALL_LIMIT_MS) if s not in inside]
    unattributed = stalls.unattributed
    notes = []
    if outside:
        notes.append(f"stalled outside the measured intervals: {describe(outside)}")
    if unattributed:
        notes.append(
            f"{len(unattributed)} stall(s) of the harness's own process, up to "
            f"{max(s.lag_ms for s in unattributed):.0f} ms, while the DUT ran in it: maybe "
            "the DUT's own blocking call, so they excuse nothing"
        )
    if not stalls.paced:
        notes.append("the rig ran faster than real time: a stall cannot change its timings")
    elif not stalls.placed:
        notes.append("no host clock map to place stalls on: none excuses anything")
    note = f" ({'; '.join(notes)})" if notes else ""
    if inside:
        names = [n for n, a, b in intervals if any(s.overlap_ms(a, b) > 0 for s in inside)]
        return Check(
            "infrastructure",
            HOST_KEPT_UP,
            False,
            f"the host stalled the harness inside the {' and '.join(names)} interval: "
            f"{describe(inside)} (limit {HOST_STALL_LIMIT_MS:.0f} ms; CPU steal, another "
            f"process, or the GIL held): those figures may be off by as much, after "
            f"{attempts} attempt(s){note}",
        )
    return Check(
        "infrastructure",
        HOST_KEPT_UP,
        True,
        f"longest host stall inside the capture {stalls.worst_ms():.0f} ms{note}",
    )


def measured_intervals(m: Any) -> list[tuple[str, float, float]]:
    """The capture-timeline intervals (name, start s, end s) a turn's percentile figures
    are measured over: end of speech -> reply onset, barge-in onset -> stop."""
    spans = []
    if m.speech_end_s is not None and m.reply_onset_s is not None:
        spans.append(("TTFA", m.speech_end_s, m.reply_onset_s))
    if m.barge_in_onset_s is not None and m.stop_latency_ms is not None:
        spans.append(
            ("stop latency", m.barge_in_onset_s, m.barge_in_onset_s + m.stop_latency_ms / 1000)
        )
    return spans


def capture_kept_time(clock: Any, sample_rate_hz: int, m: Any) -> Check:
    """Did the capture keep up with the wall clock while the turn was measured? The
    harness counts the frames it was given; when JACK does not run its callback for a
    cycle (it was late, and the server moved on) or the graph's driver itself ran late, the
    capture falls behind the wall clock, and an interval measured across that moment reads
    short by as much. Checked over the turn's measured intervals (end of speech -> reply
    onset, barge-in onset -> stop); a failure above `CAPTURE_SLIP_LIMIT_MS`."""
    spans = measured_intervals(m)
    if not spans:
        return Check(
            "infrastructure", "the capture kept real time", True, "no measured interval",
            applicable=False,
        )  # fmt: skip
    slips = [(clock.slip_ms(sample_rate_hz, a, b), name) for name, a, b in spans]
    slip, name = max(slips)
    ok = slip <= CAPTURE_SLIP_LIMIT_MS
    return Check(
        "infrastructure",
        "the capture kept real time",
        ok,
        f"the capture fell {slip:.0f} ms behind the wall clock during the {name} interval "
        f"(JACK cycles the harness was not run for, or a late driver; limit "
        f"{CAPTURE_SLIP_LIMIT_MS:.0f} ms): it may read up to {slip:.0f} ms short"
        if not ok
        else f"the capture fell at most {slip:.0f} ms behind the wall clock while measuring",
    )


def host_stall_discard(checks: Sequence[Check]) -> str | None:
    """A turn the host stalled inside a measured interval through all its attempts was not
    measured: its figures stay in its record but out of the percentiles and baseline
    comparisons (a discard reason), and its failed `the host kept up` check says why."""
    for c in checks:
        if c.id == check_id("infrastructure", HOST_KEPT_UP) and not c.passed:
            return f"{Discard.HOST_STALLED}: {c.message}"
    return None
