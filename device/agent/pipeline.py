"""The streaming pipeline: Gate → Buffer → Speak, with Cancel.

One asyncio task per stage, bounded queues between them, engines in worker threads::

    push_input ─▶ [input q] ─▶ listen (VAD, end-of-utterance gate, partial ASR, barge-in)
                                  │ final transcript
                                  ▼
                          [transcript q, 2] ─▶ think (LLM tokens → clause chunker)
                                                   │ text chunks
                                                   ▼
                                          [tts q, 3] ─▶ speak (TTS per chunk)
                                                             │ audio chunks
                                                             ▼
                                                    [audio q, 2] ─▶ play ─▶ OutputBuffer
                                                                              │
                                                               pull_output ◀──┘

The `Agent` here is the listen stage and the control; think, speak and play are stage
objects (`device.agent.stages`), and what passes between them is in `device.agent.turns`.
Data (transcripts, chunks, audio) goes through the queues, tagged with the turn it belongs
to; control never does. A barge-in is a method, `Agent._barge_in`, run by the listen task:
STOP (every stage's `stop`, and the LLM thread), DRAIN (every stage's `drain` and the
playback buffer, counting what was dropped), RESET (restart the stages, record the reply as
interrupted in the history, listen to the new utterance). Items of a cancelled turn that are
still in flight are recognised by their turn number and dropped after every await that does
real work.

Speculative start (`device.agent.speculation`): during the end-of-utterance silence the
listen task may put a *speculative* transcript (a stable partial, then the early final
decode) on the transcript queue; the reply is generated and synthesised as usual, but the
play stage holds its audio until `_finalize` commits it (the final transcript has the same
words) or it is cancelled (speech resumed, or other words) — STOP and DRAIN as in a
barge-in, with the history restored, and nothing of it ever played.

States: LISTENING → USER_SPEAKING → THINKING → SPEAKING → LISTENING, and INTERRUPTED while a
barge-in is being handled. Every transition is a ``state`` event. The event-loop watchdog
is `device.agent.watchdog`.

`push_input` and `pull_output` are thread-safe: an audio device (JACK, sounddevice, the
file-mode clock) calls them from its own thread while the pipeline runs on its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from device.agent.audio import OutputBuffer, earcon
from device.agent.config import AgentConfig
from device.agent.engines import ASR_RATE_HZ, Engines, Message
from device.agent.events import Telemetry, now_us
from device.agent.speculation import Speculator
from device.agent.stages import Player, Speaker, Stage, Thinker
from device.agent.turns import (
    AudioChunk,
    EndOfReply,
    Speculation,
    State,
    TextChunk,
    TurnTimes,
    UserTurn,
    Utterance,
    sounds_unfinished,
    words_key,
)
from device.agent.watchdog import watch_event_loop

__all__ = [
    "Agent",
    "AudioChunk",
    "EndOfReply",
    "State",
    "TextChunk",
    "UserTurn",
    "sounds_unfinished",
]


class Agent:
    """The reference streaming voice agent (see the module doc).

    Args:
        config: what to run (engines, thresholds, queue bounds, fault).
        engines: loaded engines (`device.agent.engines.load_engines`).
        telemetry: where events go.
        output_rate_hz: sample rate of `pull_output`, Hz.
    """

    def __init__(
        self,
        config: AgentConfig,
        engines: Engines,
        telemetry: Telemetry,
        output_rate_hz: int,
    ) -> None:
        self.config = config
        self.engines = engines
        self.telemetry = telemetry
        self.output_rate_hz = output_rate_hz
        self.fault = config.fault
        p = config.pipeline
        self.frame_out = output_rate_hz * p.frame_ms // 1000
        self._out = OutputBuffer(
            max(self.frame_out, output_rate_hz * p.playback_buffer_ms // 1000),
            self._on_output_event,
        )
        self.state = State.LISTENING
        self.history: list[Message] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._input: asyncio.Queue[np.ndarray] | None = None
        self._transcripts: asyncio.Queue[UserTurn] | None = None
        self._tts_q: asyncio.Queue[TextChunk | EndOfReply] | None = None
        self._audio_q: asyncio.Queue[AudioChunk | EndOfReply] | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}  # listen, watchdog
        self.thinker: Thinker | None = None
        self.speaker: Speaker | None = None
        self.player: Player | None = None
        self._finalize_task: asyncio.Task[None] | None = None
        self._pools = {
            name: ThreadPoolExecutor(max_workers=n, thread_name_prefix=f"agent-{name}")
            for name, n in (("vad", 1), ("asr", 1), ("llm", 2), ("tts", 1))
        }
        self._turn_seq = 0
        self._reply_turn = 0  # the turn being answered (or last answered)
        self._cancelled_upto = 0  # every turn <= this was cancelled by a barge-in
        self._utt: Utterance | None = None
        self._last_utterance_audio: np.ndarray | None = None
        self._preroll: deque[np.ndarray] = deque()
        self._in_pos = 0  # input samples (16 kHz) through the VAD
        self._partial_task: asyncio.Task[None] | None = None
        self._times: dict[int, TurnTimes] = {}
        self._started_turns: set[int] = set()
        self._reply_text: dict[int, list[str]] = {}
        self._first_push = True
        self._input_lock = threading.Lock()
        self._spec: Speculation | None = None
        self.speculator = Speculator(self)
        self._history_at: dict[int, int] = {}  # history length before each turn's request
        # The earcon (config.pipeline.earcon) is mixed into the output on top of the replies,
        # outside the reply buffer: it is no reply and starts no playback telemetry.
        self._earcon = earcon(output_rate_hz) if p.earcon else None
        self._earcon_at: int | None = None  # samples of it already played, None: not playing
        self._earcon_lock = threading.Lock()

    # ------------------------------------------------------------------ thread-safe I/O

    def push_input(self, samples: np.ndarray) -> None:
        """Hand microphone samples (16 kHz float32) to the agent; callable from any thread.

        Never blocks: when the input queue is full the oldest frame is dropped and an
        ``input_overrun`` event is emitted.
        """
        with self._input_lock:
            if self._first_push:
                self._first_push = False
                self.telemetry.emit("session_start", input_rate_hz=ASR_RATE_HZ)
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        frame = np.asarray(samples, dtype=np.float32).copy()
        with contextlib.suppress(RuntimeError):  # loop closed under us
            loop.call_soon_threadsafe(self._enqueue_input, frame)

    def pull_output(self, n: int) -> np.ndarray:
        """The next ``n`` samples to play at `output_rate_hz` (zeros when quiet); any thread."""
        out = self._out.read(n)
        if self._earcon is not None and self._earcon_at is not None:
            with self._earcon_lock:
                at = self._earcon_at
                if at is not None:
                    part = self._earcon[at : at + n]
                    out = out.copy()
                    out[: len(part)] += part
                    self._earcon_at = at + n if at + n < len(self._earcon) else None
        return out

    @property
    def output_position(self) -> int:
        """Samples pulled so far."""
        return self._out.position

    def idle(self) -> bool:
        """True when nothing is heard, pending or playing."""
        return (
            self.state == State.LISTENING
            and self._utt is None
            and (self._finalize_task is None or self._finalize_task.done())
            and (self._transcripts is None or self._transcripts.empty())
            and (self._tts_q is None or self._tts_q.empty())
            and (self._audio_q is None or self._audio_q.empty())
            and self._out.buffered() == 0
        )

    def request_stop(self) -> None:
        """Ask `run` to return (any thread)."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)

    # ------------------------------------------------------------------ lifecycle

    async def run(self, ready: threading.Event | None = None) -> None:
        """Run the stages until `request_stop`."""
        p = self.config.pipeline
        unbounded = self.fault == "unbounded-queue"
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._input = asyncio.Queue(maxsize=p.input_queue_frames)
        self._transcripts = asyncio.Queue(maxsize=0 if self.fault == "partial-to-llm" else 2)
        self._tts_q = asyncio.Queue(maxsize=0 if unbounded else p.tts_queue_chunks)
        self._audio_q = asyncio.Queue(maxsize=0 if unbounded else p.audio_queue_chunks)
        self.engines.reset()
        configure = getattr(self.engines.llm, "configure", None)
        if configure is not None:  # shared engines take this agent's LLM settings
            configure(self.config.llm)
        if self.config.asr.oracle_transcripts and hasattr(self.engines.asr, "set_transcripts"):
            self.engines.asr.set_transcripts(list(self.config.asr.oracle_transcripts))
        self.thinker = Thinker(self, self._transcripts, self._tts_q)
        self.speaker = Speaker(self, self._tts_q, self._audio_q)
        self.player = Player(self, self._audio_q)
        self._tasks["listen"] = asyncio.create_task(self._listen(), name="listen")
        self._tasks["watchdog"] = asyncio.create_task(
            watch_event_loop(self.telemetry, p.stall_ms), name="watchdog"
        )
        self._start_reply_stages(play=True)
        self._emit_state(State.LISTENING, force=True)
        if ready is not None:
            ready.set()
        try:
            await self._stopping.wait()
        finally:
            self._stages()[0].cancel_llm()
            tasks = [*self._tasks.values()]
            tasks += [s.task for s in self._stages() if s.task is not None]
            for extra in (self._finalize_task, self._partial_task):
                if extra is not None:
                    tasks.append(extra)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            for pool in self._pools.values():
                pool.shutdown(wait=False, cancel_futures=True)
            self.telemetry.emit("session_end", output_s=self._out.position / self.output_rate_hz)

    def _stages(self) -> tuple[Thinker, Speaker, Player]:
        assert self.thinker is not None and self.speaker is not None and self.player is not None
        return self.thinker, self.speaker, self.player

    def _start_reply_stages(self, play: bool) -> None:
        thinker, speaker, player = self._stages()
        thinker.start()
        speaker.start()
        if play:
            player.start()

    def _enqueue_input(self, frame: np.ndarray) -> None:
        assert self._input is not None
        if self._input.full():
            self._input.get_nowait()
            self.telemetry.emit("input_overrun", dropped_samples=len(frame))
        self._input.put_nowait(frame)

    async def _in_thread(self, pool: str, fn: Any, *args: Any) -> Any:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._pools[pool], fn, *args)

    def _emit_state(self, state: State, force: bool = False) -> None:
        if state != self.state or force:
            self.state = state
            self.telemetry.emit("state", state=state.value)

    def _times_of(self, turn: int) -> TurnTimes:
        return self._times.setdefault(turn, TurnTimes())

    def _cancelled(self, turn: int) -> bool:
        return turn <= self._cancelled_upto

    # ------------------------------------------------------------------ listen: the gate

    async def _listen(self) -> None:
        assert self._input is not None
        vad = self.engines.vad
        size = vad.frame_samples
        pending = np.zeros(0, np.float32)
        while True:
            block = await self._input.get()
            pending = np.concatenate([pending, block])
            while len(pending) >= size:
                frame, pending = pending[:size], pending[size:]
                prob = await self._in_thread("vad", vad.prob, frame)
                start = self._in_pos
                self._in_pos += size
                await self._gate(frame, float(prob), start)

    async def _gate(self, frame: np.ndarray, prob: float, start: int) -> None:
        cfg = self.config.vad
        frame_ms = len(frame) * 1000.0 / ASR_RATE_HZ
        utt = self._utt
        if prob >= cfg.threshold:
            if utt is None:
                utt = self._begin_utterance(start)
            utt.frames.append(frame)
            utt.voiced_ms += frame_ms
            utt.speechlike_ms += frame_ms
            utt.silence_ms = 0.0
            utt.last_voiced_end = start + len(frame)
            utt.last_voiced_us = now_us()
            utt.candidate = None  # speech resumed: an early final decode is stale
            if self._spec is not None and self._spec.turn == utt.turn:
                self.speculator.cancel("speech_resumed")
            await self._maybe_barge_in(utt)
        elif utt is not None:
            utt.frames.append(frame)
            if prob >= cfg.neg_threshold:
                # a soft onset ("Ac-tually") wavers around the threshold: it is still the
                # user talking, and waiting for 120 ms of confident frames let the reply
                # talk on 300 ms into some barge-ins
                utt.speechlike_ms += frame_ms
                await self._maybe_barge_in(utt)
            if utt.candidate is None and utt.voiced_ms >= cfg.min_speech_ms:
                # Decode now, at the first unvoiced frame: at the end of the silence the
                # final transcript is (usually) already there, and the reply under way.
                audio = utt.audio()
                utt.candidate = asyncio.create_task(self._candidate(utt, audio))
                partials = utt.partials
                if len(partials) >= 2 and words_key(partials[-1]) == words_key(partials[-2]):
                    self.speculator.start(utt, partials[-1], "partial")
            if prob < cfg.neg_threshold or utt.silence_ms > 0:
                utt.silence_ms += frame_ms
            if utt.silence_ms >= cfg.silence_ms and (
                utt.silence_ms >= cfg.incomplete_silence_ms or not self._unfinished(utt)
            ):
                self._end_utterance(utt)
                return
        else:
            self._preroll.append(frame)
            keep = max(1, int(cfg.pre_roll_ms / frame_ms))
            while len(self._preroll) > keep:
                self._preroll.popleft()
        if self._utt is not None:
            self._maybe_partial(self._utt, frame_ms)

    def _unfinished(self, utt: Utterance) -> bool:
        """Hold the end of the utterance while its early final transcript is still being
        decoded, or when it sounds like a sentence the user paused in (`sounds_unfinished`);
        the hold never outlasts `incomplete_silence_ms`."""
        cfg = self.config.vad
        if cfg.incomplete_silence_ms <= cfg.silence_ms or utt.candidate is None:
            return False
        if not utt.candidate.done():
            return True
        if utt.candidate.cancelled() or utt.candidate.exception() is not None:
            return False
        return sounds_unfinished(utt.candidate.result(), cfg.incomplete_max_words)

    async def _maybe_barge_in(self, utt: Utterance) -> None:
        """Barge in once the user has talked `barge_in_min_ms` (frames at or above the VAD's
        lower threshold, at least one above the upper) over a reply being thought or said."""
        if (
            not utt.barge_in_done
            and self.state in (State.THINKING, State.SPEAKING)
            and utt.speechlike_ms >= self.config.vad.barge_in_min_ms
        ):
            utt.barge_in_done = True
            await self._barge_in(utt)

    def _begin_utterance(self, start: int) -> Utterance:
        self._turn_seq += 1
        utt = Utterance(turn=self._turn_seq)
        utt.frames.extend(self._preroll)
        self._preroll.clear()
        self._utt = utt
        self.telemetry.emit(
            "vad_speech_start", turn=utt.turn, input_s=round(start / ASR_RATE_HZ, 4)
        )
        if self.state == State.LISTENING:
            if self._earcon is not None:
                with self._earcon_lock:
                    self._earcon_at = 0
                self.telemetry.emit("earcon", turn=utt.turn)
            self._emit_state(State.USER_SPEAKING)
        return utt

    def _end_utterance(self, utt: Utterance) -> None:
        cfg = self.config.vad
        self._utt = None
        self.telemetry.emit(
            "vad_speech_end",
            turn=utt.turn,
            input_s=round(utt.last_voiced_end / ASR_RATE_HZ, 4),
            voiced_ms=round(utt.voiced_ms),
        )
        if utt.voiced_ms < cfg.min_speech_ms:
            if self.state == State.USER_SPEAKING:
                self._emit_state(State.LISTENING)
            return
        self._last_utterance_audio = utt.audio()
        times = self._times_of(utt.turn)
        times.speech_end_us = utt.last_voiced_us
        times.speech_end_input_s = utt.last_voiced_end / ASR_RATE_HZ
        times.eou_us = now_us()
        if self.state in (State.USER_SPEAKING, State.LISTENING, State.INTERRUPTED):
            self._emit_state(State.THINKING)
        self._reply_turn = utt.turn
        self._finalize_task = asyncio.create_task(self._finalize(utt), name="finalize")

    def _maybe_partial(self, utt: Utterance, frame_ms: float) -> None:
        utt.since_partial_ms += frame_ms
        busy = self._partial_task is not None and not self._partial_task.done()
        if utt.since_partial_ms < self.config.asr.partial_interval_ms or busy:
            return
        if utt.candidate is not None:
            return  # in the end-of-utterance silence: the final decode needs the ASR thread
        utt.since_partial_ms = 0.0
        self._partial_task = asyncio.create_task(self._partial(utt.turn, utt.audio()))

    async def _decode(self, audio: np.ndarray, final: bool) -> str:
        return await self._in_thread("asr", self.engines.asr.transcribe, audio, final)

    async def _partial(self, turn: int, audio: np.ndarray) -> None:
        text = await self._decode(audio, final=False)
        if self._utt is None or self._utt.turn != turn or not text:
            return
        self._utt.partials.append(text)
        self.telemetry.emit("asr_partial", turn=turn, text=text)
        if self.fault == "partial-to-llm":
            assert self._transcripts is not None
            self._reply_turn = turn
            await self._transcripts.put(UserTurn(turn, text, partial=True))

    async def _finalize(self, utt: Utterance) -> None:
        assert self._transcripts is not None
        if utt.candidate is not None:
            text = await utt.candidate
        else:
            text = await self._decode(utt.audio(), final=True)
        if self._cancelled(utt.turn):
            return
        self.engines.asr.end_utterance()
        times = self._times_of(utt.turn)
        times.asr_final_us = now_us()
        self.telemetry.emit("asr_final", turn=utt.turn, text=text)
        spec = self._spec
        if spec is not None and spec.turn == utt.turn:
            if spec.key == words_key(text):
                self.speculator.commit(spec, text)
                return
            self.speculator.cancel("transcript_changed", final=text)
        if not text.strip():
            if self.state == State.THINKING:
                self._emit_state(State.LISTENING)
            return
        await self._transcripts.put(UserTurn(utt.turn, text))

    # ------------------------------------------------------------------ speculation

    async def _candidate(self, utt: Utterance, audio: np.ndarray) -> str:
        """The final decode, started at the first silent frame; when it is back and the
        silence goes on, the reply is started on it."""
        text = await self._decode(audio, final=True)
        if utt.candidate is asyncio.current_task() and self._utt is utt:
            self.speculator.start(utt, text, "final")
        return text

    # ------------------------------------------------------------------ cancel

    async def _barge_in(self, utt: Utterance) -> None:
        """STOP, DRAIN, RESET: the user talks over the agent (or over its thinking)."""
        assert self._tts_q is not None and self._audio_q is not None
        assert self._transcripts is not None
        turn = self._reply_turn
        was = self.state
        self.telemetry.emit(
            "barge_in",
            turn=turn,
            new_turn=utt.turn,
            state=was.value,
            input_s=round((utt.last_voiced_end) / ASR_RATE_HZ, 4),
        )
        if self.fault == "no-cancel":
            return
        self._emit_state(State.INTERRUPTED)
        stale_audio = self.fault == "stale-audio"
        # STOP: every stage the same way (with stale-audio, the mistake: play goes on)
        self._cancelled_upto = max(self._cancelled_upto, turn)
        thinker, speaker, player = self._stages()
        thinker.cancel_llm()
        stages: list[Stage] = [thinker, speaker] if stale_audio else [thinker, speaker, player]
        stop = [task for stage in stages if (task := stage.stop()) is not None]
        if self._finalize_task is not None and not self._finalize_task.done():
            self._finalize_task.cancel()
            stop.append(self._finalize_task)
        await asyncio.gather(*stop, return_exceptions=True)
        # DRAIN
        chunks = audio_samples = 0
        for stage in stages:
            dropped_chunks, dropped_samples = stage.drain()
            chunks += dropped_chunks
            audio_samples += dropped_samples
        if not stale_audio:
            audio_samples += self._out.clear()
        # RESET
        heard = turn in self._started_turns
        generated = "".join(self._reply_text.get(turn, [])).strip()
        merged = False
        if not heard and was == State.THINKING and self._last_utterance_audio is not None:
            # Nothing was said yet: the user had only paused. Answer the whole utterance.
            utt.frames.insert(0, self._last_utterance_audio)
            merged = True
            # Its words (and a reply generated but never heard) leave the history.
            del self.history[self._history_at.get(turn, len(self.history)) :]
        elif heard or generated:
            self._record_reply(turn, generated, interrupted=True)
        self._last_utterance_audio = None
        self._start_reply_stages(play=not stale_audio)
        self.telemetry.emit(
            "cancel_done",
            turn=turn,
            chunks_dropped=chunks,
            audio_dropped_ms=round(audio_samples * 1000 / self.output_rate_hz),
            output_s=round(self._out.position / self.output_rate_hz, 4),
            merged_with_previous=merged,
        )
        self._emit_state(State.USER_SPEAKING)

    def _record_reply(self, turn: int, text: str, interrupted: bool) -> None:
        message = Message("assistant", text, interrupted=interrupted)
        if self.history and self.history[-1].role == "assistant" and interrupted:
            self.history[-1] = message
        else:
            self.history.append(message)
        keep = 2 * self.config.pipeline.history_turns
        del self.history[:-keep]

    async def _put(self, q: asyncio.Queue[Any], item: Any, name: str) -> None:
        await q.put(item)  # waits while the queue is full: back-pressure
        self.telemetry.emit("queue_depth", queue=name, depth=q.qsize(), bound=q.maxsize or None)

    def _on_output_event(self, kind: str, turn: int, position: int) -> None:
        """Called by `OutputBuffer.read` on the device's thread."""
        output_s = round(position / self.output_rate_hz, 4)
        if kind == "start":
            self.telemetry.emit("playback_start", turn=turn, output_s=output_s)
        elif kind == "end" and turn in self._started_turns:
            self.telemetry.emit("playback_end", turn=turn, output_s=output_s)
        elif kind == "underrun":
            self.telemetry.emit("playback_underrun", turn=turn, output_s=output_s)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._after_output_event, kind, turn, now_us(), output_s)

    def _after_output_event(self, kind: str, turn: int, t_us: int, output_s: float) -> None:
        times = self._times_of(turn)
        if kind == "start":
            times.playback_start_us = t_us
            times.playback_start_output_s = output_s
            if self.state in (State.THINKING, State.LISTENING):
                self._emit_state(State.SPEAKING)
            self._summarise(turn)
        elif kind == "end":
            if turn not in self._started_turns:
                self._summarise(turn)
            if turn >= self._reply_turn and self.state in (State.THINKING, State.SPEAKING):
                self._emit_state(State.USER_SPEAKING if self._utt else State.LISTENING)
        elif kind == "underrun":
            times.underruns += 1

    def _summarise(self, turn: int) -> None:
        """The agent's own view of one turn's latency (``turn_summary``)."""
        t = self._times_of(turn)
        if t.summarised or t.speech_end_us is None:
            return
        t.summarised = True

        def ms(a: int | None, b: int | None) -> float | None:
            return None if a is None or b is None else round((b - a) / 1000.0, 1)

        self.telemetry.emit(
            "turn_summary",
            turn=turn,
            speech_end_input_s=round(t.speech_end_input_s or 0.0, 4),
            playback_start_output_s=t.playback_start_output_s,
            end_of_speech_to_playback_ms=ms(t.speech_end_us, t.playback_start_us),
            vad_ms=ms(t.speech_end_us, t.eou_us),
            asr_final_ms=ms(t.eou_us, t.asr_final_us),
            llm_queue_ms=ms(t.asr_final_us, t.llm_request_us),  # < 0: speculative start
            llm_first_token_ms=ms(t.llm_request_us, t.llm_first_token_us),
            first_chunk_ms=ms(t.llm_first_token_us, t.first_chunk_us),
            tts_first_audio_ms=ms(t.first_chunk_us, t.tts_first_audio_us),
            playback_ms=ms(t.tts_first_audio_us, t.playback_start_us),
        )


def run_coroutine(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` on a fresh event loop (helper for threads)."""
    asyncio.run(coro)
