"""Playing one turn until the rig and the host let it be measured: a turn whose audio an
xrun lost, or whose capture the host stalled the harness inside, is played again, up to
`MAX_ATTEMPTS` times, and every earlier attempt stays on disk as evidence.

Only what the harness saw itself decides a replay: the rig's xruns, and its own probe's
stalls placed on the capture timeline (`harness.stalls`). A stall while the WAV was
written or the capture analysed, after the audio ended, is no reason to play again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.fusion import merged_events, serial_events_on_capture
from harness.hostprobe import HostProbe
from harness.judge import HOST_STALL_LIMIT_MS
from harness.runqueue import RunQueueSampler
from harness.stalls import TurnStalls, describe, place_stalls

MAX_ATTEMPTS = 3
"""A turn whose session lost audio to an xrun (not on the JACK loopback, whose xruns are late
cycles that lose nothing), or whose capture the host stalled, is played again, up to this
many times in all."""


@dataclass
class Played:
    """The last attempt of a turn: its `TurnResult`, how many attempts it took, what the
    earlier ones ran into (`glitched`, one line each, naming their evidence), the last
    attempt's stalls, and whether its own audio was lost to an xrun."""

    result: Any
    attempts: int
    stalls: TurnStalls
    lost_audio: bool
    glitched: list[str] = field(default_factory=list)


def play_turn(
    rig: Any,
    dut: Any,
    plan: Any,
    *,
    out: Path,
    name: str,
    probe: HostProbe,
    bridge: Any = None,
    own_queue: RunQueueSampler | None = None,
    dut_queue: RunQueueSampler | None = None,
) -> Played:
    """Play `plan` on `rig` against `dut` until an attempt is clean or `MAX_ATTEMPTS` were
    played; attempt k > 1 saves its evidence under ``OUT.attemptK``. With a serial
    `bridge`, the device's events of each attempt are merged onto its capture.
    `own_queue` / `dut_queue` sample how long the harness's and the DUT's threads waited
    for a CPU (`harness.runqueue`)."""
    from harness.scenario import run_turn

    glitched: list[str] = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        where = out if attempt == 1 else out.with_name(f"{out.name}.attempt{attempt}")
        if bridge is not None:
            bridge.drain()  # what the device said between turns is not this turn's
        began = time.monotonic()
        result = run_turn(rig, dut, plan, out_dir=where, name=name)
        stalls = turn_stalls(
            probe, began, time.monotonic(), result.capture, rig, own_queue, dut_queue
        )
        if bridge is not None:
            add_serial_events(result, bridge.drain())
        lost_audio = bool(result.xruns) and not rig.timing_only_xruns
        long_stalls = stalls.over(HOST_STALL_LIMIT_MS)
        if not (lost_audio or long_stalls) or attempt == MAX_ATTEMPTS:
            return Played(result, attempt, stalls, lost_audio, glitched)
        # A glitch of the rig or a stalled host is not the DUT's fault: play the turn
        # again, keep the first capture as evidence and say so in the turn's record.
        why = []
        if lost_audio:
            at = [x.sample_index for x in result.capture.status.xruns][:3]
            why.append(f"{result.xruns} xrun(s) at samples {at}")
        if long_stalls:
            why.append(f"the host stalled the harness for {describe(long_stalls)}")
        glitched.append(
            f"attempt {attempt}: {' and '.join(why)} ({result.paths.get('capture_wav')})"
        )
    raise AssertionError("unreachable")  # the last attempt returns


def turn_stalls(
    probe: HostProbe,
    began: float,
    ended: float,
    capture: Any,
    rig: Any,
    own_queue: RunQueueSampler | None = None,
    dut_queue: RunQueueSampler | None = None,
) -> TurnStalls:
    """The probe's stalls between `began` and `ended` (`time.monotonic` s) that fell inside
    `capture`, on its timeline; whether the rig runs in real time (`paced`) decides whether
    a stall matters at all, whether its DUT shares the harness's process
    (`dut_shares_process`) whose a stall of the process's own was."""
    clock = capture.clock

    def capture_s(t_s: float) -> float:
        return capture.capture_s_of_host_us(t_s * 1e6)

    return place_stalls(
        probe.sleeps(began, ended),
        period_s=probe.period_s,
        capture_s_of_host_s=capture_s if clock is not None else None,
        capture_end_s=capture.duration_s,
        paced=bool(getattr(rig, "paced", True)),
        dut_shares_process=bool(getattr(rig, "dut_shares_process", False)),
        own_starved=own_queue.starved_spans(began, ended) if own_queue is not None else (),
        dut_starved=dut_queue.starved_spans(began, ended) if dut_queue is not None else (),
    )


def add_serial_events(result: Any, events: Sequence[Any]) -> None:
    """Add a serial device's events to the turn, on the capture timeline
    (`fusion.serial_events_on_capture`), and save them next to the capture."""
    if not events:
        return
    mapped = serial_events_on_capture(events, result.capture_s_of_host_us)
    result.events = merged_events(result.events, mapped)
    path = Path(result.paths.get("capture_wav", "")).with_name("serial_events.jsonl")
    if path.parent.is_dir():
        path.write_text("".join(json.dumps(ev, default=str) + "\n" for ev in mapped))
        result.paths["serial_events_jsonl"] = path
