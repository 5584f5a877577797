"""Telemetry fusion: the device's own events on the capture's timeline, stage by stage.

The turn runner maps every telemetry event onto the capture timeline (``t_s``, seconds of the
capture, through the rig's host-clock <-> sample map and, for a serial device, the bridge's
clock sync). This module lines those events up with the acoustic truth of one turn and
splits the time from the end of the user's speech to the first sound at the ear into stages:

    eou_delay_ms        true end of speech (mouth)      -> device's vad_speech_end
    asr_final_ms        vad_speech_end                  -> asr_final
    llm_ttft_ms         llm_request (the one answered)  -> llm_first_token
    first_chunk_ms      llm_first_token                 -> first tts_chunk
    tts_first_audio_ms  first tts_chunk                 -> tts_first_audio
    to_playback_ms      tts_first_audio                 -> playback_start
    output_path_ms      playback_start                  -> reply onset heard at the ear

and sets the device's self-reported TTFA (its ``turn_summary``, else playback_start minus
vad_speech_end) against the heard one. With speculative start the LLM request precedes
vad_speech_end, so a stage can be negative: that is the overlap, not an error.

Events are mappings ``{"event": NAME, "t_s": SECONDS, **fields}`` (the reference agent's
vocabulary, docs/protocol.md). Pure: no files, no clocks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Event = Mapping[str, Any]

STAGES: tuple[str, ...] = (
    "eou_delay_ms",
    "asr_final_ms",
    "llm_ttft_ms",
    "first_chunk_ms",
    "tts_first_audio_ms",
    "to_playback_ms",
    "output_path_ms",
)
"""The stage names, in pipeline order."""

STAGE_LABELS: dict[str, str] = {
    "eou_delay_ms": "end-of-utterance detection",
    "asr_final_ms": "ASR final",
    "llm_ttft_ms": "LLM first token",
    "first_chunk_ms": "first chunk",
    "tts_first_audio_ms": "TTS first audio",
    "to_playback_ms": "to playback",
    "output_path_ms": "output path",
}


@dataclass(frozen=True)
class StageBreakdown:
    """Where one turn's time went.

    stages_ms: every name of `STAGES` (None where an event was missing), plus
        ``self_reported_ttfa_ms`` and ``heard_minus_reported_ms``.
    spans: ``(label, start_s, end_s)`` on the capture timeline, for plots.
    turn: the device's turn number of the reply (None without telemetry).
    notes: why a stage could not be computed.
    """

    stages_ms: dict[str, float | None]
    spans: list[tuple[str, float, float]] = field(default_factory=list)
    turn: int | None = None
    notes: list[str] = field(default_factory=list)


def _t(event: Event | None) -> float | None:
    if event is None or event.get("t_s") is None:
        return None
    return float(event["t_s"])


def _ms(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round((b - a) * 1000.0, 3)


def events_named(events: Sequence[Event], name: str, turn: int | None = None) -> list[Event]:
    """Events called `name` (of device turn `turn`, when given), in time order."""
    out = [e for e in events if e.get("event") == name and (turn is None or e.get("turn") == turn)]
    # capture time when every event has one, else the host clock they all carry
    if all(e.get("t_s") is not None for e in out):
        return sorted(out, key=lambda e: e["t_s"])
    return sorted(out, key=lambda e: e.get("t_us") or 0)


def reply_turn(events: Sequence[Event], speech_end_s: float | None) -> int | None:
    """The device turn that answered the stimulus: the turn of the first playback after the
    labelled speech end (else of the last vad_speech_end), None without such events."""
    after = speech_end_s if speech_end_s is not None else float("-inf")
    for e in events_named(events, "playback_start"):
        t = _t(e)
        if t is not None and t >= after - 0.05 and e.get("turn") is not None:
            return int(e["turn"])
    ends = events_named(events, "vad_speech_end")
    return int(ends[-1]["turn"]) if ends and ends[-1].get("turn") is not None else None


def stage_breakdown(
    events: Sequence[Event],
    *,
    speech_end_s: float | None,
    reply_onset_s: float | None,
    ttfa_ms: float | None,
) -> StageBreakdown:
    """Split one turn's TTFA into stages (see the module docstring).

    speech_end_s / reply_onset_s: the analysis' true speech end at the mouth and reply onset
    at the ear, capture seconds; ttfa_ms: the measured TTFA. Each stage's marks come from
    `_stage_marks`, the device's own figure from `_self_reported`.
    """
    stages: dict[str, float | None] = dict.fromkeys(STAGES)
    stages["self_reported_ttfa_ms"] = None
    stages["heard_minus_reported_ms"] = None
    if not events:
        return StageBreakdown(stages, notes=["no telemetry from the device"])
    notes: list[str] = []
    turn = reply_turn(events, speech_end_s)
    if turn is None:
        return StageBreakdown(stages, notes=["telemetry has no reply turn (no playback_start)"])

    marks = _stage_marks(events, turn, speech_end_s, reply_onset_s)
    for name, (a, b) in marks.items():
        stages[name] = _ms(a, b)
    t_eou, t_play = marks["eou_delay_ms"][1], marks["output_path_ms"][0]
    reported = _self_reported(_first(events, "turn_summary", turn), t_eou, t_play, notes)
    stages["self_reported_ttfa_ms"] = reported
    if reported is not None and ttfa_ms is not None:
        stages["heard_minus_reported_ms"] = round(ttfa_ms - reported, 3)
    for name in STAGES:
        if stages[name] is None:
            notes.append(f"{name}: an event it needs is missing")

    spans = [
        (STAGE_LABELS[name], min(a, b), max(a, b))
        for name, (a, b) in marks.items()
        if a is not None and b is not None
    ]
    return StageBreakdown(stages, spans, turn, notes)


def _first(
    events: Sequence[Event], name: str, turn: int, after: float | None = None
) -> Event | None:
    """Device turn `turn`'s first `name` event (at or after `after`, capture seconds)."""
    xs = events_named(events, name, turn)
    if after is not None:
        xs = [e for e in xs if (_t(e) or 0.0) >= after]
    return xs[0] if xs else None


def _stage_marks(
    events: Sequence[Event],
    turn: int,
    speech_end_s: float | None,
    reply_onset_s: float | None,
) -> dict[str, tuple[float | None, float | None]]:
    """Each stage of `STAGES`, in order: (start, end), capture seconds, None where its event
    is missing; the events are those of the request that was answered."""
    play = _first(events, "playback_start", turn)
    t_play = _t(play)
    ends = [e for e in events_named(events, "vad_speech_end", turn)]
    if t_play is not None:
        ends = [e for e in ends if (_t(e) or 0.0) <= t_play] or ends
    eou = ends[-1] if ends else None
    # The request that was answered is the last one before the playback: a speculative
    # start cancelled when the user went on had its own tokens and chunks, earlier.
    requests = events_named(events, "llm_request", turn)
    if t_play is not None:
        requests = [e for e in requests if (_t(e) or 0.0) <= t_play] or requests
    request = requests[-1] if requests else None
    t_request = _t(request)
    token = _first(events, "llm_first_token", turn, t_request)
    t_token = _t(token)
    chunk = _first(events, "tts_chunk", turn, t_token if t_token is not None else t_request)
    audio = _first(events, "tts_first_audio", turn, _t(chunk) if chunk is not None else t_request)
    asr = events_named(events, "asr_final", turn)
    asr_final = asr[-1] if asr else None

    t_eou = _t(eou)
    return {
        "eou_delay_ms": (speech_end_s, t_eou),
        "asr_final_ms": (t_eou, _t(asr_final)),
        "llm_ttft_ms": (_t(request), t_token),
        "first_chunk_ms": (t_token, _t(chunk)),
        "tts_first_audio_ms": (_t(chunk), _t(audio)),
        "to_playback_ms": (_t(audio), t_play),
        "output_path_ms": (t_play, reply_onset_s),
    }


def _self_reported(
    summary: Event | None, t_eou: float | None, t_play: float | None, notes: list[str]
) -> float | None:
    """The device's own end-of-speech -> playback, ms: its turn_summary's, else from its
    vad_speech_end -> playback_start events (said in `notes`), else None."""
    if summary is not None and summary.get("end_of_speech_to_playback_ms") is not None:
        return float(summary["end_of_speech_to_playback_ms"])
    if t_eou is not None and t_play is not None:
        reported = _ms(t_eou, t_play)
        notes.append("self-reported TTFA from vad_speech_end -> playback_start (no turn_summary)")
        return reported
    return None


def serial_events_on_capture(
    events: Sequence[Any], capture_s_of_host_us: Callable[[int], float | None]
) -> list[dict[str, Any]]:
    """A serial device's events (`device.bridge.DeviceEvent`, already on the host clock
    through the bridge's clock sync) as event mappings on the capture timeline (``t_s``:
    None where the turn's clock map has no acoustic meaning), ``"source": "serial"``."""
    mapped = []
    for e in events:
        t_s = capture_s_of_host_us(e.t_host_us)
        mapped.append(
            {
                **dict(e.fields),
                "event": e.name,
                "t_us": int(e.t_host_us),
                "t_device_us": int(e.t_device_us),
                "boot": e.boot,
                "t_s": None if t_s is None else round(float(t_s), 6),
                "source": "serial",
            }
        )
    return mapped


def merged_events(*streams: Sequence[Event]) -> list[dict[str, Any]]:
    """Several event streams as one, in capture time (events without one last)."""
    return sorted(
        (dict(e) for s in streams for e in s),
        key=lambda ev: (ev.get("t_s") is None, ev.get("t_s") or 0.0),
    )
