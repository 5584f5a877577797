"""`TympanObserver`: a Pipecat pipeline's own events and latency figures, sent to tympan.

One line in a bot::

    task = PipelineTask(pipeline, params=..., observers=[TympanObserver()])

(``python -m device.observer.launch --framework pipecat`` adds it to every `PipelineTask` the
bot makes, so a bot that does not name it is observed too.) Outside tympan (no observer was
started for the process) it does nothing.

What it sends, in the reference agent's vocabulary (docs/protocol.md), each stamped when the
frame was pushed (the pipeline clock, mapped to host monotonic time):

| Pipecat frame | event |
|---|---|
| VADUserStartedSpeakingFrame | vad_speech_start (a new ``turn``) |
| VADUserStoppedSpeakingFrame | vad_speech_end (``stop_secs``: the silence it waited for) |
| InterimTranscriptionFrame / TranscriptionFrame | asr_partial / asr_final |
| LLMContextFrame | llm_request |
| first LLMTextFrame after it | llm_first_token |
| TTSTextFrame (stamped at the TTSStartedFrame before it) | tts_chunk |
| first TTSAudioRawFrame after TTSStartedFrame | tts_first_audio |
| BotStartedSpeakingFrame / BotStoppedSpeakingFrame | playback_start / playback_end |
| InterruptionFrame while the bot speaks | barge_in |
| BotStoppedSpeakingFrame after that | cancel_done (the output transport let go of the reply) |

and, per reply, Pipecat's own latency figure (`UserBotLatencyObserver`'s
``on_latency_measured``: from the VAD's estimate of when the user stopped to
BotStartedSpeakingFrame) as ``turn_summary.end_of_speech_to_playback_ms``, with the
per-service TTFBs of its breakdown (``stt_ttfb_ms``, ``llm_ttfb_ms``, ``tts_ttfb_ms``; all of
them as JSON in ``ttfb``) and ``user_turn_ms``: the figures Pipecat reports, which tympan sets
beside what a caller hears.
"""

from __future__ import annotations

import time
from typing import Any

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMContextFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSTextFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import FramePushed
from pipecat.observers.user_bot_latency_observer import UserBotLatencyObserver
from pipecat.processors.frame_processor import FrameDirection

from device.observer.core import Observer, current


def _service(processor: str) -> str | None:
    """ "stt", "llm" or "tts" from a processor's name (e.g. ``WhisperSTTService#0``)."""
    upper = processor.upper()
    for kind in ("STT", "LLM", "TTS"):
        if kind in upper:
            return kind.lower()
    return None


class TympanObserver(UserBotLatencyObserver):
    """A Pipecat observer sending the pipeline's events to tympan (see the module docstring).
    It is Pipecat's own latency observer, so the figure it sends is the one Pipecat computes.

    observer: where to send (default: the one `launch` started for this process; none: the
    observer does nothing).
    """

    def __init__(self, observer: Observer | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._out = observer if observer is not None else current()
        self._frames_sent: set[int] = set()
        self._clock_start_ns: int | None = None
        self._turn = 0
        self._speaking = False
        self._reply_turn = 0  # the user turn the reply being spoken answers
        self._interrupted = False
        self._awaiting_token = False
        self._awaiting_audio = False
        self._tts_started_us: int | None = None
        self._latency_ms: float | None = None
        self.add_event_handler("on_latency_measured", self._on_latency)
        self.add_event_handler("on_latency_breakdown", self._on_breakdown)

    def _t_us(self, data: FramePushed) -> int:
        """When the frame was pushed, host monotonic µs. The pipeline clock counts ns from
        its start; observers run later, from a queue, so the start is the least of (now -
        timestamp) seen so far (a frame is never observed before it was pushed)."""
        now_ns = time.monotonic_ns()
        start = now_ns - int(data.timestamp)
        if self._clock_start_ns is None or start < self._clock_start_ns:
            self._clock_start_ns = start
        return (self._clock_start_ns + int(data.timestamp)) // 1000

    async def on_push_frame(self, data: FramePushed) -> None:
        await super().on_push_frame(data)
        out, frame = self._out, data.frame
        # Pipecat broadcasts system frames as two instances, one each way: the downstream
        # one is the one (its own latency observer reads the same)
        if out is None or data.direction != FrameDirection.DOWNSTREAM:
            return
        if frame.id in self._frames_sent:
            return
        self._frames_sent.add(frame.id)
        if len(self._frames_sent) > 4096:  # frames in flight are few; forget the old ones
            self._frames_sent = {frame.id}
        t_us = self._t_us(data)
        turn = self._turn
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._turn = out.new_turn()
            out.emit("vad_speech_start", t_us, turn=self._turn)
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            out.emit("vad_speech_end", t_us, turn=turn, stop_secs=frame.stop_secs)
        elif isinstance(frame, InterimTranscriptionFrame):
            out.emit("asr_partial", t_us, turn=turn, text=frame.text)
        elif isinstance(frame, TranscriptionFrame):
            out.emit("asr_final", t_us, turn=turn, text=frame.text)
        elif isinstance(frame, LLMContextFrame):
            self._awaiting_token = True
            out.emit("llm_request", t_us, turn=turn, partial=False, speculative=False)
        elif isinstance(frame, LLMTextFrame) and self._awaiting_token:
            self._awaiting_token = False
            out.emit("llm_first_token", t_us, turn=turn, text=frame.text)
        elif isinstance(frame, TTSTextFrame):
            # Pipecat pushes a sentence's text with its audio; the chunk went to the TTS
            # when it started synthesising that sentence
            started, self._tts_started_us = self._tts_started_us, None
            out.emit("tts_chunk", started or t_us, turn=turn, text=frame.text)
        elif isinstance(frame, TTSStartedFrame):
            self._awaiting_audio = True
            self._tts_started_us = t_us
        elif isinstance(frame, TTSAudioRawFrame) and self._awaiting_audio:
            self._awaiting_audio = False
            out.emit("tts_first_audio", t_us, turn=turn)
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._speaking, self._reply_turn = True, turn
            out.emit("playback_start", t_us, turn=turn)
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._speaking = False
            out.emit("playback_end", t_us, turn=self._reply_turn)
            if self._interrupted:
                self._interrupted = False
                out.emit("cancel_done", t_us, turn=self._reply_turn, merged_with_previous=False)
        elif isinstance(frame, InterruptionFrame) and self._speaking and not self._interrupted:
            self._interrupted = True
            out.emit("barge_in", t_us, turn=self._reply_turn, new_turn=turn, state="speaking")

    async def _on_latency(self, _observer: Any, latency_s: float) -> None:
        self._latency_ms = latency_s * 1000.0

    async def _on_breakdown(self, _observer: Any, breakdown: Any) -> None:
        if self._out is None or self._latency_ms is None:
            return
        fields: dict[str, Any] = {
            "turn": self._turn,
            "end_of_speech_to_playback_ms": round(self._latency_ms, 3),
            "framework": "pipecat",
        }
        self._latency_ms = None
        ttfb = []
        for item in getattr(breakdown, "ttfb", []) or []:
            ms = round(float(item.duration_secs) * 1000.0, 3)
            ttfb.append({"processor": item.processor, "ms": ms})
            kind = _service(item.processor)
            if kind is not None:
                fields.setdefault(f"{kind}_ttfb_ms", ms)
        fields["ttfb"] = ttfb
        user_turn_s = getattr(breakdown, "user_turn_secs", None)
        if user_turn_s is not None:
            fields["user_turn_ms"] = round(float(user_turn_s) * 1000.0, 3)
        self._out.emit("turn_summary", **fields)
