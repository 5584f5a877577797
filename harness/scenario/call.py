"""A whole call: several turns played back to back in one rig session, one capture of it all,
measured the way a recorded call is (`harness.conversation.analyze_conversation`).

`run_turn` records each turn on its own; a call keeps streaming between turns, so the DUT
hears one continuous conversation and the evidence is one capture, as a telephony or a
network rig records it. Each turn runs the turn runner's own phases (settle until the ear is
quiet, play, watch for the reply, inject a barge-in, wait for the reply's end) on the same
session and the same ear watcher; the stimuli's positions are known to the sample, and the
analysis is given them.

::

    with open_rig("loopback") as rig, open_dut(parse_dut_spec("reference"), rig) as dut:
        call = run_call(rig, dut, [TurnPlan(stimulus=a), TurnPlan(stimulus=b)], out_dir=out)
        [t.metrics.ttfa_ms for t in call.turns], call.paths["capture_wav"]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis import TurnMetrics
from harness.conversation import ArrayCapture, ConversationTurn, TurnSpec, analyze_conversation
from harness.reasons import Timeout
from harness.rigs.base import Capture
from harness.scenario.live import EarWatcher
from harness.scenario.turn import (
    TurnPlan,
    TurnTimeout,
    _audio,
    _Stalled,
    _State,
    _stream,
    save_evidence,
)


@dataclass
class CallTurn:
    """One turn of a call: what was planned, where it played, what was measured.

    stimulus_at_sample / speech_end_sample / live_onset_sample / barge_in_at_sample: on the
    call's capture timeline. timeout: which limit the turn hit (for people), or None;
    timeout_kind: the same for code.
    """

    plan: TurnPlan
    metrics: TurnMetrics
    stimulus_at_sample: int
    speech_end_sample: int
    live_onset_sample: int | None
    barge_in_at_sample: int | None
    timeout: str | None
    notes: list[str] = field(default_factory=list)
    timeout_kind: Timeout | None = None


@dataclass
class CallResult:
    """The call: its turns, its one capture, the DUT's telemetry (``t_s``: capture seconds),
    and the files (capture_wav, turns_jsonl, events_jsonl)."""

    turns: list[CallTurn]
    capture: Capture
    events: list[dict[str, Any]]
    paths: dict[str, Path]
    wall_s: float


def run_call(
    rig: Any,
    dut: Any,
    plans: list[TurnPlan],
    *,
    out_dir: Path | str,
) -> CallResult:
    """Play `plans` one after another in one session of `rig` with `dut`; save one capture
    (capture.wav), each turn's measurement (turns.jsonl, in order) and the telemetry
    (events.jsonl) in `out_dir`. Raises `TurnTimeout` only when the stream stalls (the
    capture so far is saved). The first plan's `analysis` options apply to every turn;
    turns after the session ran out of capacity are not played (nor in the result).

    Its steps: the turns streamed one after another in one session (`_stream_turns`), the
    evidence saved, the played turns measured as one conversation (`_played_specs`), the
    turns written (`_write_turns`).
    """
    if not plans:
        raise ValueError("run_call needs at least one TurnPlan")
    t0 = time.monotonic()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fs = int(rig.sample_rate_hz)
    events = list(dut.drain_events()) if dut is not None else []
    audio = [(_audio(p.stimulus, fs), None if p.barge_in is None else _audio(p.barge_in, fs))
             for p in plans]  # fmt: skip
    capacity_s = sum(
        p.settle_s + p.lead_in_s + len(stim) / fs + p.reply_timeout_s + p.max_reply_s
        + p.reply_end_silence_s + 2.0
        + (0.0 if clip is None else len(clip) / fs + p.answer_timeout_s + p.max_reply_s)
        for p, (stim, clip) in zip(plans, audio, strict=True)
    )  # fmt: skip
    session = rig.session(capacity_s=capacity_s)
    states, notes, stalled, capture = _stream_turns(session, plans, audio, fs)
    if dut is not None:
        events += dut.drain_events()
    paths = {
        "capture_wav": out / "capture.wav",
        "turns_jsonl": out / "turns.jsonl",
        "events_jsonl": out / "events.jsonl",
    }
    save_evidence(capture, events, paths)
    if stalled is not None:
        raise TurnTimeout(
            f"call of {len(plans)} turns: {stalled} (turn {len(states)}); is the audio server "
            f"running? capture so far saved to {paths['capture_wav']}"
        )
    # Only turns whose stimulus was played are measured (a session that ran out stops early).
    states = [st for st in states if st.phase != "settle"]
    notes = notes[: len(states)]
    measured = analyze_conversation(
        ArrayCapture(capture.samples, fs),
        _played_specs(states, audio, fs),
        options=plans[0].analysis,
    )
    turns = [
        CallTurn(
            plan=st.plan,
            metrics=r.metrics,
            stimulus_at_sample=st.stim_at,
            speech_end_sample=st.speech_end_at,
            live_onset_sample=st.onset_at,
            barge_in_at_sample=st.barge_at,
            timeout=st.timeout,
            notes=n,
            timeout_kind=st.timeout_kind,
        )
        for st, r, n in zip(states, measured, notes, strict=True)
    ]
    _write_turns(paths["turns_jsonl"], turns, measured)
    return CallResult(turns, capture, events, paths, time.monotonic() - t0)


def _stream_turns(
    session: Any,
    plans: list[TurnPlan],
    audio: list[tuple[np.ndarray, np.ndarray | None]],
    fs: int,
) -> tuple[list[_State], list[list[str]], str | None, Capture]:
    """(each streamed turn's state, its notes, why the stream stalled or None, the capture):
    `plans` streamed one after another in `session`, started here and always stopped, until
    one leaves nothing more to play in it."""
    watcher = EarWatcher(fs)
    states: list[_State] = []
    notes: list[list[str]] = []
    stalled = None
    session.start()
    try:
        for plan, (stim, clip) in zip(plans, audio, strict=True):
            st = _State(plan, fs, watcher)
            states.append(st)
            notes.append([])
            _stream(session, st, stim, clip, notes[-1])
            if st.phase == "settle" or st.timeout_kind is Timeout.CAPACITY:
                break  # nothing more can be played in this session
    except _Stalled as exc:
        stalled = str(exc)
    finally:
        capture = session.stop()
    return states, notes, stalled, capture


def _played_specs(
    states: list[_State], audio: list[tuple[np.ndarray, np.ndarray | None]], fs: int
) -> list[TurnSpec]:
    """The played turns as `TurnSpec`s at their known stimulus starts; a barge-in clip only
    as far as it was played."""
    specs = []
    for st, (stim, clip) in zip(states, audio, strict=False):
        played = clip[st.clip_from :] if clip is not None and st.barge_at is not None else None
        specs.append(
            TurnSpec(
                stim,
                fs,
                st.plan.stimulus.speech_end_s,
                name=st.plan.stimulus.id,
                barge_in=None if played is None else (played, fs),
                reply_reference=st.plan.reply_reference,
                at_sample=st.stim_at,
            )
        )
    return specs


def _write_turns(path: Path, turns: list[CallTurn], measured: list[ConversationTurn]) -> None:
    """turns.jsonl: each turn's measurement with its number, timeout and notes, in order."""
    with path.open("w", encoding="utf-8") as fh:
        for i, (t, r) in enumerate(zip(turns, measured, strict=True), start=1):
            row = {**r.to_json(), "turn": i, "timeout": t.timeout, "notes": t.notes}
            fh.write(json.dumps(row) + "\n")
