"""Speculative start, for the reference agent: during the end-of-utterance silence a reply
may be started on a stable partial transcript or the early final decode. It is generated and
synthesised as usual, but its audio waits (`stages.Player`) until `Speculator.commit` (the
final transcript has the same words) or `Speculator.cancel` (speech resumed, or other
words): STOP and DRAIN of every stage, as in a barge-in, with the history restored, and
nothing of it ever played.
"""

from __future__ import annotations

from typing import Any

from device.agent.engines import Message
from device.agent.events import now_us
from device.agent.stages import Agent
from device.agent.turns import Speculation, State, UserTurn, Utterance, words_key


class Speculator:
    """The agent's speculative replies (`agent._spec`: the one under way, if any)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def may_start(self) -> bool:
        """Speculation only starts when no reply is under way or still playing."""
        a = self.agent
        assert a._transcripts is not None and a._tts_q is not None
        assert a._audio_q is not None
        return (
            a.config.pipeline.speculate
            and a.fault != "partial-to-llm"
            and a.state == State.USER_SPEAKING
            and a._transcripts.empty()
            and a._tts_q.empty()
            and a._audio_q.empty()
            and a._out.buffered() == 0
            and a._stages()[2].left == 0
        )

    def start(self, utt: Utterance, text: str, source: str) -> None:
        """Start (or keep) a speculative reply to ``text`` during the silence."""
        a = self.agent
        assert a._transcripts is not None
        key = words_key(text)
        spec = a._spec
        if spec is not None:
            if spec.turn == utt.turn and spec.key == key:
                return  # the same words: the reply under way stands
            self.cancel("transcript_changed", final=text)
        if not key or not self.may_start():
            return
        a._spec = Speculation(utt.turn, text, source, now_us(), len(a.history))
        a._transcripts.put_nowait(UserTurn(utt.turn, text, speculative=True))

    def commit(self, spec: Speculation, final: str) -> None:
        """The utterance ended with the words the speculative reply answers: let it play."""
        a = self.agent
        a._spec = None
        if len(a.history) > spec.history_len:  # the user's words as finally transcribed
            a.history[spec.history_len] = Message("user", final)
        spec.committed.set()
        a.telemetry.emit(
            "speculation",
            turn=spec.turn,
            outcome="committed",
            source=spec.source,
            text=spec.text,
            lead_ms=round((now_us() - spec.started_us) / 1000.0, 1),
        )

    def cancel(self, reason: str, final: str | None = None) -> None:
        """Drop a speculative reply: nothing of it has been played. STOP its stages, DRAIN
        the queues, restore the history, restart the stages."""
        a = self.agent
        assert a._transcripts is not None and a._tts_q is not None
        assert a._audio_q is not None
        spec, a._spec = a._spec, None
        if spec is None:
            return
        stages = a._stages()
        stages[0].cancel_llm()
        for stage in stages:
            # Cancelled tasks run no more of their code: nothing is put after the drain.
            stage.stop()
        chunks = sum(stage.drain()[0] for stage in stages)
        a._out.clear()
        del a.history[spec.history_len :]
        a._reply_text.pop(spec.turn, None)
        times = a._times_of(spec.turn)
        times.llm_request_us = times.llm_first_token_us = None
        times.first_chunk_us = times.tts_first_audio_us = None
        a._start_reply_stages(play=True)
        fields: dict[str, Any] = {"final": final} if final is not None else {}
        a.telemetry.emit(
            "speculation",
            turn=spec.turn,
            outcome="cancelled",
            reason=reason,
            source=spec.source,
            text=spec.text,
            chunks_dropped=chunks,
            **fields,
        )
