"""`observe(session)`: a LiveKit ``AgentSession``'s own events and latency figures, to tympan.

One line in an agent, before ``await session.start(...)``::

    observe(session)

(``python -m device.observer.launch --framework livekit`` does it for every session the
agent starts.) Outside tympan (no observer was started for the process) it does nothing.

What it sends, in the reference agent's vocabulary (docs/protocol.md), stamped when the
session emitted the event:

| AgentSession event | event |
|---|---|
| user_state_changed -> speaking | vad_speech_start (a new ``turn``) |
| user_state_changed speaking -> | vad_speech_end |
| user_input_transcribed | asr_partial / asr_final |
| agent_state_changed -> thinking | llm_request |
| agent_state_changed -> speaking / speaking -> | playback_start / playback_end |
| conversation_item_added, assistant, ``interrupted`` | barge_in, cancel_done (LiveKit's word) |

and, per reply, LiveKit's own figures from the assistant message's ``metrics``
(``e2e_latency``: "from when the user finished speaking to when the agent began responding")
as ``turn_summary.end_of_speech_to_playback_ms``, with ``llm_ttft_ms``, ``tts_ttfb_ms``,
``playback_latency_ms`` and the user message's ``end_of_turn_delay_ms`` and
``transcription_delay_ms``: the figures LiveKit reports, which tympan sets beside what a
caller hears.
"""

from __future__ import annotations

from typing import Any

from device.observer.core import Observer, current

_ASSISTANT_FIGURES = {
    "llm_node_ttft": "llm_ttft_ms",
    "tts_node_ttfb": "tts_ttfb_ms",
    "playback_latency": "playback_latency_ms",
}
_USER_FIGURES = {
    "end_of_turn_delay": "end_of_turn_delay_ms",
    "transcription_delay": "transcription_delay_ms",
}


class _SessionObserver:
    def __init__(self, out: Observer) -> None:
        self.out = out
        self.turn = 0
        self.agent_now = "initializing"
        self.reply_turn = 0  # the user turn the reply being spoken answers
        self.thought_for: int | None = None  # the turn the agent last started thinking for
        self.user_figures: dict[str, float] = {}

    def user_state(self, ev: Any) -> None:
        if ev.new_state == "speaking":
            self.turn = self.out.new_turn()
            self.out.emit("vad_speech_start", turn=self.turn)
        elif ev.old_state == "speaking":
            self.out.emit("vad_speech_end", turn=self.turn)

    def agent_state(self, ev: Any) -> None:
        self.agent_now = ev.new_state
        if ev.new_state == "thinking":
            self.thought_for = self.turn
            self.out.emit("llm_request", turn=self.turn, partial=False, speculative=False)
        elif ev.new_state == "speaking":
            # a reply resumed after a false interruption is the same reply, not a new one
            if self.thought_for is not None:
                self.reply_turn, self.thought_for = self.thought_for, None
            self.out.emit("playback_start", turn=self.reply_turn)
        if ev.old_state == "speaking" and ev.new_state != "speaking":
            self.out.emit("playback_end", turn=self.reply_turn)

    def transcribed(self, ev: Any) -> None:
        name = "asr_final" if ev.is_final else "asr_partial"
        self.out.emit(name, turn=self.turn, text=ev.transcript)

    def item_added(self, ev: Any) -> None:
        item = ev.item
        metrics = getattr(item, "metrics", None) or {}
        role = getattr(item, "role", None)
        if role == "user":
            self.user_figures = {
                field: round(float(metrics[key]) * 1000.0, 3)
                for key, field in _USER_FIGURES.items()
                if metrics.get(key) is not None
            }
            return
        if role != "assistant":
            return
        interrupted = bool(getattr(item, "interrupted", False))
        if interrupted:
            # LiveKit's own word that it interrupted the reply (a user who merely spoke over
            # it, a pause that resumed, speech before the AEC warm-up ended, is not one)
            self.out.emit("barge_in", turn=self.reply_turn, new_turn=self.turn, state="speaking")
            self.out.emit("cancel_done", turn=self.reply_turn, merged_with_previous=False)
        if metrics.get("e2e_latency") is None:
            return
        fields: dict[str, Any] = {
            "turn": self.reply_turn,
            "end_of_speech_to_playback_ms": round(float(metrics["e2e_latency"]) * 1000.0, 3),
            "framework": "livekit",
            "interrupted": interrupted,
            **self.user_figures,
        }
        for key, field in _ASSISTANT_FIGURES.items():
            if metrics.get(key) is not None:
                fields[field] = round(float(metrics[key]) * 1000.0, 3)
        self.out.emit("turn_summary", **fields)


def observe(session: Any, observer: Observer | None = None) -> None:
    """Send `session`'s events to tympan (see the module docstring); a no-op outside tympan
    or when the session is observed already."""
    out = observer if observer is not None else current()
    if out is None or getattr(session, "_tympan_observed", False):
        return
    session._tympan_observed = True
    watcher = _SessionObserver(out)
    session.on("user_state_changed", watcher.user_state)
    session.on("agent_state_changed", watcher.agent_state)
    session.on("user_input_transcribed", watcher.transcribed)
    session.on("conversation_item_added", watcher.item_added)
