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
from harness.records import Check

CAPTURE_SLIP_LIMIT_MS = 50.0
"""How far a real-time rig's capture may fall behind the wall clock inside a measured
interval before that measurement is not trusted (`capture_kept_time`)."""

HOST_STALL_LIMIT_MS = 150.0
"""A turn during which the harness's probe thread woke up later than this is played again
(the host, not the DUT, took the time); see `attempt_checks`."""


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
    *,
    host_stall_ms: float,
    attempts: int,
    glitched: Sequence[str],
    lost_audio: bool,
) -> list[Check]:
    """`checks` after the session's attempts: a turn the host stalled through every attempt
    has its duration rules missed by less than the stall not measured (a failure larger
    than the stall, or not about time, stands); a replay is said; and whether the host
    kept up is a check of its own."""
    starved = host_stall_ms > HOST_STALL_LIMIT_MS
    if starved:
        checks = [not_measured_under_stall(c, host_stall_ms) for c in checks]
    if glitched and not lost_audio:
        checks.append(
            Check(
                "infrastructure",
                "no audio glitches",
                True,
                "replayed after rig glitches or host stalls: " + "; ".join(glitched),
            )
        )
    checks.append(
        Check(
            "infrastructure",
            HOST_KEPT_UP,
            not starved,
            f"the host stalled the harness for {host_stall_ms:.0f} ms during the turn "
            f"(limit {HOST_STALL_LIMIT_MS:.0f} ms; CPU steal, another process, or the GIL "
            f"held): its latencies may be off by as much, after {attempts} attempt(s)"
            if starved
            else f"longest host stall during the turn {host_stall_ms:.0f} ms",
        )
    )
    return checks


def capture_kept_time(clock: Any, sample_rate_hz: int, m: Any) -> Check:
    """Did the capture keep up with the wall clock while the turn was measured? The
    harness counts the frames it was given; when JACK does not run its callback for a
    cycle (it was late, and the server moved on) or the graph's driver itself ran late, the
    capture falls behind the wall clock, and an interval measured across that moment reads
    short by as much. Checked over the turn's measured intervals (end of speech -> reply
    onset, barge-in onset -> stop); a failure above `CAPTURE_SLIP_LIMIT_MS`."""
    spans = []
    if m.speech_end_s is not None and m.reply_onset_s is not None:
        spans.append(("TTFA", m.speech_end_s, m.reply_onset_s))
    if m.barge_in_onset_s is not None and m.stop_latency_ms is not None:
        spans.append(
            ("stop latency", m.barge_in_onset_s, m.barge_in_onset_s + m.stop_latency_ms / 1000)
        )
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
