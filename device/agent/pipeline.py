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

Data (transcripts, chunks, audio) goes through the queues, tagged with the turn it belongs
to; control never does. A barge-in is a method, `Agent._barge_in`, run by the listen task:
STOP (cancel the think/speak/play tasks and the LLM thread), DRAIN (empty every queue and the
playback buffer, counting what was dropped), RESET (restart the stages, record the reply as
interrupted in the history, listen to the new utterance). Items of a cancelled turn that are
still in flight are recognised by their turn number and dropped after every await that does
real work.

Speculative start: during the end-of-utterance silence the listen task may put a
*speculative* transcript (a stable partial, then the early final decode) on the transcript
queue; the reply is generated and synthesised as usual, but `_play` holds its audio until
`_finalize` commits it (the final transcript has the same words) or it is cancelled
(`_cancel_speculation`: speech resumed, or other words) — STOP and DRAIN as in a barge-in,
with the history restored, and nothing of it ever played.

States: LISTENING → USER_SPEAKING → THINKING → SPEAKING → LISTENING, and INTERRUPTED while a
barge-in is being handled. Every transition is a ``state`` event.

`push_input` and `pull_output` are thread-safe: an audio device (JACK, sounddevice, the
file-mode clock) calls them from its own thread while the pipeline runs on its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device.agent.audio import OutputBuffer, earcon, resample
from device.agent.chunker import Chunk, ClauseChunker
from device.agent.config import AgentConfig
from device.agent.engines import ASR_RATE_HZ, Engines, Message
from device.agent.events import Telemetry, now_us


class State(enum.StrEnum):
    """What the agent is doing."""

    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    THINKING = "thinking"
    SPEAKING = "speaking"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class UserTurn:
    """A transcript for the LLM (``partial`` only with the partial-to-llm fault)."""

    turn: int
    text: str
    partial: bool = False
    speculative: bool = False


@dataclass(frozen=True)
class TextChunk:
    """A chunk of reply text for TTS."""

    turn: int
    chunk: Chunk


@dataclass(frozen=True)
class AudioChunk:
    """Synthesised audio of one chunk, at the output rate."""

    turn: int
    index: int
    samples: np.ndarray


@dataclass(frozen=True)
class EndOfReply:
    """The last item of a reply's data stream."""

    turn: int


@dataclass
class _TurnTimes:
    """Monotonic µs stamps of one turn, for the agent's own latency summary."""

    speech_end_us: int | None = None
    speech_end_input_s: float | None = None
    eou_us: int | None = None
    asr_final_us: int | None = None
    llm_request_us: int | None = None
    llm_first_token_us: int | None = None
    first_chunk_us: int | None = None
    tts_first_audio_us: int | None = None
    playback_start_us: int | None = None
    playback_start_output_s: float | None = None
    underruns: int = 0
    summarised: bool = False


@dataclass
class _Utterance:
    """What the gate collects while the user speaks."""

    turn: int
    frames: list[np.ndarray] = field(default_factory=list)
    voiced_ms: float = 0.0
    speechlike_ms: float = 0.0  # frames at or above neg_threshold: the barge-in's evidence
    silence_ms: float = 0.0
    since_partial_ms: float = 0.0
    last_voiced_end: int = 0  # input sample index
    last_voiced_us: int = 0
    barge_in_done: bool = False
    candidate: asyncio.Task[str] | None = None  # final decode started at the first silence
    partials: list[str] = field(default_factory=list)

    def audio(self) -> np.ndarray:
        return np.concatenate(self.frames) if self.frames else np.zeros(0, np.float32)


@dataclass
class _Speculation:
    """A reply started during the end-of-utterance silence, not yet allowed to play."""

    turn: int
    text: str
    source: str  # "partial" (a stable partial transcript) or "final" (the early final decode)
    started_us: int
    history_len: int  # the history before it, restored if it is cancelled
    committed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def key(self) -> str:
        return words_key(self.text)


def words_key(text: str) -> str:
    """A transcript reduced to its words (lower case, no punctuation), for comparisons."""
    return " ".join("".join(c if c.isalnum() or c == "'" else " " for c in text.lower()).split())


DANGLING_WORDS: frozenset[str] = frozenset(
    {
        *("a", "an", "the", "my", "your", "our", "their", "some"),
        *("for", "to", "of", "in", "at", "with", "from", "about", "into", "than"),
        *("and", "or", "but", "because", "if"),
        *("um", "uh", "er"),
    }
)
"""Words a finished request does not end on (English articles, possessives, prepositions,
conjunctions, fillers): a transcript ending on one is a sentence the user paused in. Words
that can end a request ("on" in "turn it on", "it" in "what time is it") are left out."""


def sounds_unfinished(text: str, max_words: int) -> bool:
    """True when `text` reads like a sentence the user paused in, not a whole request:
    it ends on a `DANGLING_WORDS` word ("Set a timer for"), has at most `max_words` words
    ("Play the song") or trails off ("Remind me to... Remind me too. Rem", tiny.en's usual
    answer to a sentence cut off mid-way). Empty text: False.

    (A repeated phrase is no sign: tiny.en also repeats the end of whole questions, "How
    many ounces are in a pound? How many ouncees are".)"""
    words = words_key(text).split()
    if not words:
        return False
    if words[-1] in DANGLING_WORDS or len(words) <= max_words:
        return True
    return "..." in text or "\u2026" in text


def trim_leading_silence(audio: np.ndarray, rate_hz: int, level: float = 1e-3) -> np.ndarray:
    """Drop the dead air a synthesiser puts before the first sound (piper: 5-45 ms below
    -60 dBFS), keeping 2 ms before it: the reply's first chunk is heard that much sooner."""
    loud = np.flatnonzero(np.abs(audio) > level)
    if not len(loud):
        return audio
    return audio[max(0, int(loud[0]) - rate_hz // 500) :]


_DONE = object()


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
        self._output_gain = 10.0 ** (config.tts.output_gain_db / 20.0)
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
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._finalize_task: asyncio.Task[None] | None = None
        self._pools = {
            name: ThreadPoolExecutor(max_workers=n, thread_name_prefix=f"agent-{name}")
            for name, n in (("vad", 1), ("asr", 1), ("llm", 2), ("tts", 1))
        }
        self._llm_cancel: threading.Event | None = None
        self._turn_seq = 0
        self._reply_turn = 0  # the turn being answered (or last answered)
        self._cancelled_upto = 0  # every turn <= this was cancelled by a barge-in
        self._utt: _Utterance | None = None
        self._last_utterance_audio: np.ndarray | None = None
        self._preroll: deque[np.ndarray] = deque()
        self._in_pos = 0  # input samples (16 kHz) through the VAD
        self._partial_task: asyncio.Task[None] | None = None
        self._times: dict[int, _TurnTimes] = {}
        self._started_turns: set[int] = set()
        self._reply_text: dict[int, list[str]] = {}
        self._play_left = 0  # samples of the chunk the play task holds, not yet buffered
        self._first_push = True
        self._input_lock = threading.Lock()
        self._spec: _Speculation | None = None
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
        self._tasks["listen"] = asyncio.create_task(self._listen(), name="listen")
        self._tasks["watchdog"] = asyncio.create_task(self._watchdog(), name="watchdog")
        self._start_reply_stages(play=True)
        self._emit_state(State.LISTENING, force=True)
        if ready is not None:
            ready.set()
        try:
            await self._stopping.wait()
        finally:
            if self._llm_cancel is not None:
                self._llm_cancel.set()
            tasks = [*self._tasks.values()]
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

    def _start_reply_stages(self, play: bool) -> None:
        self._tasks["think"] = asyncio.create_task(self._think(), name="think")
        self._tasks["speak"] = asyncio.create_task(self._speak(), name="speak")
        if play:
            self._tasks["play"] = asyncio.create_task(self._play(), name="play")

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

    def _times_of(self, turn: int) -> _TurnTimes:
        return self._times.setdefault(turn, _TurnTimes())

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
                self._cancel_speculation("speech_resumed")
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
                    self._speculate(utt, partials[-1], "partial")
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

    def _unfinished(self, utt: _Utterance) -> bool:
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

    async def _maybe_barge_in(self, utt: _Utterance) -> None:
        """Barge in once the user has talked `barge_in_min_ms` (frames at or above the VAD's
        lower threshold, at least one above the upper) over a reply being thought or said."""
        if (
            not utt.barge_in_done
            and self.state in (State.THINKING, State.SPEAKING)
            and utt.speechlike_ms >= self.config.vad.barge_in_min_ms
        ):
            utt.barge_in_done = True
            await self._barge_in(utt)

    def _begin_utterance(self, start: int) -> _Utterance:
        self._turn_seq += 1
        utt = _Utterance(turn=self._turn_seq)
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

    def _end_utterance(self, utt: _Utterance) -> None:
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

    def _maybe_partial(self, utt: _Utterance, frame_ms: float) -> None:
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

    async def _finalize(self, utt: _Utterance) -> None:
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
                self._commit_speculation(spec, text)
                return
            self._cancel_speculation("transcript_changed", final=text)
        if not text.strip():
            if self.state == State.THINKING:
                self._emit_state(State.LISTENING)
            return
        await self._transcripts.put(UserTurn(utt.turn, text))

    # ------------------------------------------------------------------ speculation

    async def _candidate(self, utt: _Utterance, audio: np.ndarray) -> str:
        """The final decode, started at the first silent frame; when it is back and the
        silence goes on, the reply is started on it."""
        text = await self._decode(audio, final=True)
        if utt.candidate is asyncio.current_task() and self._utt is utt:
            self._speculate(utt, text, "final")
        return text

    def _may_speculate(self) -> bool:
        """Speculation only starts when no reply is under way or still playing."""
        assert self._transcripts is not None and self._tts_q is not None
        assert self._audio_q is not None
        return (
            self.config.pipeline.speculate
            and self.fault != "partial-to-llm"
            and self.state == State.USER_SPEAKING
            and self._transcripts.empty()
            and self._tts_q.empty()
            and self._audio_q.empty()
            and self._out.buffered() == 0
            and self._play_left == 0
        )

    def _speculate(self, utt: _Utterance, text: str, source: str) -> None:
        """Start (or keep) a speculative reply to ``text`` during the silence."""
        assert self._transcripts is not None
        key = words_key(text)
        spec = self._spec
        if spec is not None:
            if spec.turn == utt.turn and spec.key == key:
                return  # the same words: the reply under way stands
            self._cancel_speculation("transcript_changed", final=text)
        if not key or not self._may_speculate():
            return
        self._spec = _Speculation(utt.turn, text, source, now_us(), len(self.history))
        self._transcripts.put_nowait(UserTurn(utt.turn, text, speculative=True))

    def _commit_speculation(self, spec: _Speculation, final: str) -> None:
        """The utterance ended with the words the speculative reply answers: let it play."""
        self._spec = None
        if len(self.history) > spec.history_len:  # the user's words as finally transcribed
            self.history[spec.history_len] = Message("user", final)
        spec.committed.set()
        self.telemetry.emit(
            "speculation",
            turn=spec.turn,
            outcome="committed",
            source=spec.source,
            text=spec.text,
            lead_ms=round((now_us() - spec.started_us) / 1000.0, 1),
        )

    def _cancel_speculation(self, reason: str, final: str | None = None) -> None:
        """Drop a speculative reply: nothing of it has been played. STOP its stages, DRAIN
        the queues, restore the history, restart the stages."""
        assert self._transcripts is not None and self._tts_q is not None
        assert self._audio_q is not None
        spec, self._spec = self._spec, None
        if spec is None:
            return
        if self._llm_cancel is not None:
            self._llm_cancel.set()
        for name in ("think", "speak", "play"):
            # Cancelled tasks run no more of their code: nothing is put after the drain.
            self._tasks[name].cancel()
        chunks = 0
        for q in (self._transcripts, self._tts_q, self._audio_q):
            while not q.empty():
                chunks += isinstance(q.get_nowait(), TextChunk | AudioChunk)
        self._out.clear()
        self._play_left = 0
        del self.history[spec.history_len :]
        self._reply_text.pop(spec.turn, None)
        times = self._times_of(spec.turn)
        times.llm_request_us = times.llm_first_token_us = None
        times.first_chunk_us = times.tts_first_audio_us = None
        self._start_reply_stages(play=True)
        fields: dict[str, Any] = {"final": final} if final is not None else {}
        self.telemetry.emit(
            "speculation",
            turn=spec.turn,
            outcome="cancelled",
            reason=reason,
            source=spec.source,
            text=spec.text,
            chunks_dropped=chunks,
            **fields,
        )

    # ------------------------------------------------------------------ cancel

    async def _barge_in(self, utt: _Utterance) -> None:
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
        # STOP
        self._cancelled_upto = max(self._cancelled_upto, turn)
        if self._llm_cancel is not None:
            self._llm_cancel.set()
        stop = [self._tasks["think"], self._tasks["speak"]]
        if not stale_audio:
            stop.append(self._tasks["play"])
        if self._finalize_task is not None and not self._finalize_task.done():
            stop.append(self._finalize_task)
        for task in stop:
            task.cancel()
        await asyncio.gather(*stop, return_exceptions=True)
        # DRAIN
        chunks = 0
        audio_samples = 0
        for q in (self._transcripts, self._tts_q):
            while not q.empty():
                item = q.get_nowait()
                chunks += isinstance(item, TextChunk)
        if not stale_audio:
            while not self._audio_q.empty():
                item = self._audio_q.get_nowait()
                if isinstance(item, AudioChunk):
                    chunks += 1
                    audio_samples += len(item.samples)
            audio_samples += self._play_left + self._out.clear()
            self._play_left = 0
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

    # ------------------------------------------------------------------ think: LLM + buffer

    async def _think(self) -> None:
        assert self._transcripts is not None
        while True:
            request = await self._transcripts.get()
            if self._cancelled(request.turn):
                continue
            await self._reply(request)

    async def _reply(self, request: UserTurn) -> None:
        turn = request.turn
        cfg = self.config
        times = self._times_of(turn)
        self._history_at[turn] = len(self.history)
        self.history.append(Message("user", request.text))
        messages = list(self.history)
        times.llm_request_us = now_us()
        self.telemetry.emit(
            "llm_request",
            turn=turn,
            text=request.text,
            partial=request.partial,
            speculative=request.speculative,
        )
        c = cfg.chunker
        chunker = ClauseChunker(c.min_tokens, c.max_tokens, c.first_min_tokens, c.first_max_tokens)
        parts: list[str] = []
        self._reply_text[turn] = parts
        serialized = self.fault == "serialized-llm"
        first = True
        async with contextlib.aclosing(self._tokens(messages)) as stream:
            async for token in stream:
                if self._cancelled(turn):
                    return
                if first:
                    first = False
                    times.llm_first_token_us = now_us()
                    self.telemetry.emit("llm_first_token", turn=turn, text=token)
                self.telemetry.emit("llm_token", turn=turn, text=token)
                parts.append(token)
                if not serialized:
                    for chunk in self._chunks(chunker, token):
                        await self._send_chunk(turn, chunk)
        self.telemetry.emit("llm_done", turn=turn, tokens=len(parts), text="".join(parts).strip())
        if serialized:  # the mistake: TTS sees nothing until the whole reply is there
            for token in parts:
                for chunk in self._chunks(chunker, token):
                    await self._send_chunk(turn, chunk)
        for chunk in chunker.finish():
            await self._send_chunk(turn, chunk)
        await self._put(self._tts_q, EndOfReply(turn), "tts")
        self._record_reply(turn, "".join(parts).strip(), interrupted=False)

    def _chunks(self, chunker: ClauseChunker, token: str) -> list[Chunk]:
        if self.fault == "token-tts":  # the mistake: no clause buffer at all
            return [Chunk(token, 1, "max_tokens", -1)] if token.strip() else []
        return chunker.push(token)

    async def _send_chunk(self, turn: int, chunk: Chunk) -> None:
        times = self._times_of(turn)
        if times.first_chunk_us is None:
            times.first_chunk_us = now_us()
        self.telemetry.emit(
            "tts_chunk",
            turn=turn,
            text=chunk.text.strip(),
            tokens=chunk.tokens,
            reason=chunk.reason,
        )
        await self._put(self._tts_q, TextChunk(turn, chunk), "tts")

    async def _put(self, q: asyncio.Queue[Any], item: Any, name: str) -> None:
        await q.put(item)  # waits while the queue is full: back-pressure
        self.telemetry.emit("queue_depth", queue=name, depth=q.qsize(), bound=q.maxsize or None)

    async def _tokens(self, messages: list[Message]) -> AsyncIterator[str]:
        """The LLM's tokens, produced in a worker thread, through a bounded queue."""
        assert self._loop is not None
        loop = self._loop
        cancel = threading.Event()
        self._llm_cancel = cancel
        tokens: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.config.pipeline.token_queue)

        def hand_over(item: Any) -> bool:
            put = tokens.put(item)
            try:
                future = asyncio.run_coroutine_threadsafe(put, loop)
            except RuntimeError:  # the loop is gone
                put.close()
                return False
            while not cancel.is_set():
                try:
                    future.result(timeout=0.05)
                    return True
                except TimeoutError:
                    continue
            future.cancel()
            return False

        def produce() -> None:
            try:
                for token in self.engines.llm.stream(messages):
                    if cancel.is_set() or not hand_over(token):
                        return
                hand_over(_DONE)
            except Exception as exc:  # surfaced on the loop by the consumer
                hand_over(exc)

        work = loop.run_in_executor(self._pools["llm"], produce)
        try:
            while True:
                item = await tokens.get()
                if item is _DONE:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            cancel.set()
            work.cancel()

    # ------------------------------------------------------------------ speak: TTS

    async def _speak(self) -> None:
        assert self._tts_q is not None and self._audio_q is not None
        tts = self.engines.tts
        while True:
            item = await self._tts_q.get()
            self.telemetry.emit(
                "queue_depth",
                queue="tts",
                depth=self._tts_q.qsize(),
                bound=self._tts_q.maxsize or None,
            )
            if self._cancelled(item.turn):
                continue
            if isinstance(item, EndOfReply):
                await self._put(self._audio_q, item, "audio")
                continue
            text = item.chunk.text.strip()
            if not any(ch.isalnum() for ch in text):
                continue
            if self.fault == "blocking-call":
                audio = tts.synthesize(text)  # the mistake: the event loop stops meanwhile
            else:
                audio = await self._in_thread("tts", tts.synthesize, text)
            if self._cancelled(item.turn):
                continue
            audio = resample(audio, tts.sample_rate_hz, self.output_rate_hz)
            audio *= np.float32(self._output_gain)
            times = self._times_of(item.turn)
            if item.chunk.index == 0:
                audio = trim_leading_silence(audio, self.output_rate_hz)
            if times.tts_first_audio_us is None:
                times.tts_first_audio_us = now_us()
                self.telemetry.emit(
                    "tts_first_audio",
                    turn=item.turn,
                    audio_ms=round(len(audio) * 1000 / self.output_rate_hz),
                )
            await self._put(self._audio_q, AudioChunk(item.turn, item.chunk.index, audio), "audio")

    # ------------------------------------------------------------------ play

    async def _play(self) -> None:
        assert self._audio_q is not None
        frame = self.frame_out
        wait_s = self.config.pipeline.frame_ms / 4000.0
        stale_ok = self.fault == "stale-audio"
        while True:
            item = await self._audio_q.get()
            spec = self._spec
            if spec is not None and spec.turn == item.turn:
                await spec.committed.wait()  # a speculative reply plays only once committed
            if self._cancelled(item.turn) and not stale_ok:
                continue
            if isinstance(item, EndOfReply):
                self._out.end_reply(item.turn)
                continue
            first = item.turn not in self._started_turns
            self._started_turns.add(item.turn)
            samples = item.samples
            self._play_left = len(samples)
            for k in range(0, len(samples), frame):
                piece = samples[k : k + frame]
                while self._out.space() < len(piece):
                    await asyncio.sleep(wait_s)
                if self._cancelled(item.turn) and not stale_ok:
                    break
                self._out.write(item.turn, piece, first=first and k == 0)
                self._play_left -= len(piece)
            self._play_left = 0

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

    # ------------------------------------------------------------------ watchdog

    async def _watchdog(self) -> None:
        """Emits ``loop_stall`` when the event loop was blocked longer than ``stall_ms``.

        A lag alone does not say whose it is: a blocking call on the loop (the agent's
        mistake), or a host that did not run this process (the CPU taken by other processes
        or the hypervisor; the GIL held by another thread's C code, in process by the
        harness). A probe thread sleeping in the same steps tells them apart: when it was
        held up over the same window the host was (``starved_ms``, its longest delay there);
        when it ran on time, the loop was blocked by its own code.
        """
        period = 0.01
        threshold = self.config.pipeline.stall_ms / 1000.0
        probe = _LagProbe(period)
        probe.start()
        try:
            while True:
                before = time.perf_counter()
                await asyncio.sleep(period)
                after = time.perf_counter()
                lag = after - before - period
                if lag > threshold:
                    starved = min(lag, probe.worst_lag_s(before, after))
                    self.telemetry.emit(
                        "loop_stall",
                        lag_ms=round(lag * 1000.0, 1),
                        starved_ms=round(starved * 1000.0, 1),
                    )
        finally:
            probe.stop()


class _LagProbe:
    """A daemon thread that sleeps `period_s` at a time and keeps how late each wake-up was
    (the last ~20 s): the host's share of an event-loop lag (see `_watchdog`)."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._spans: deque[tuple[float, float]] = deque(maxlen=2000)
        self._sleeping_since: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loop-lag-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            with self._lock:
                self._sleeping_since = t0
            time.sleep(self.period_s)
            t1 = time.perf_counter()
            with self._lock:
                self._spans.append((t0, t1))
                self._sleeping_since = None

    def worst_lag_s(self, start: float, end: float) -> float:
        """The probe's longest lateness over sleeps overlapping [start, end] (perf_counter
        seconds), counting a sleep still waiting to be woken up."""
        now = time.perf_counter()
        with self._lock:
            spans = [s for s in self._spans if s[1] > start and s[0] < end]
            if self._sleeping_since is not None and self._sleeping_since < end:
                spans.append((self._sleeping_since, now))
        return max((t1 - t0 - self.period_s for t0, t1 in spans), default=0.0)


def run_coroutine(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` on a fresh event loop (helper for threads)."""
    asyncio.run(coro)
