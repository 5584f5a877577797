"""The reply stages of the reference agent: think (LLM tokens -> clause chunks), speak (TTS per
chunk) and play (audio into the output buffer). Each is one asyncio task reading its inbox
queue and writing the next stage's, with items tagged by turn.

Every stage is cancelled the same way (`Stage`): `stop` cancels its task (a cancelled task
runs no more of its code, so nothing is put after a drain), `drain` empties its inbox and
says what it dropped, `start` begins a new task. Items of a cancelled turn still in flight
are recognised by their turn number (`Agent._cancelled`) and dropped after every await that
does real work.

The stages share the agent's services (`agent`: config, telemetry, engines, the fault knob,
its turn times, worker threads); the control (the gate, speculation, barge-in) is the
agent's (`device.agent.pipeline`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from device.agent.audio import OutputBuffer, resample
from device.agent.chunker import Chunk, ClauseChunker
from device.agent.config import AgentConfig
from device.agent.engines import Engines, Message
from device.agent.events import Telemetry, now_us
from device.agent.turns import (
    AudioChunk,
    EndOfReply,
    Speculation,
    State,
    TextChunk,
    TurnTimes,
    UserTurn,
    trim_leading_silence,
)


class Agent(Protocol):
    """What the stages (and `device.agent.speculation`) use of the agent
    (`device.agent.pipeline.Agent`): its services, its queues and the turn bookkeeping."""

    config: AgentConfig
    telemetry: Telemetry
    engines: Engines
    fault: str
    output_rate_hz: int
    frame_out: int
    history: list[Message]
    state: State
    _spec: Speculation | None
    _out: OutputBuffer
    _loop: asyncio.AbstractEventLoop | None
    _pools: dict[str, ThreadPoolExecutor]
    _started_turns: set[int]
    _reply_text: dict[int, list[str]]
    _history_at: dict[int, int]
    _transcripts: asyncio.Queue[UserTurn] | None
    _tts_q: asyncio.Queue[Any] | None
    _audio_q: asyncio.Queue[Any] | None

    def _cancelled(self, turn: int) -> bool: ...
    def _times_of(self, turn: int) -> TurnTimes: ...
    async def _in_thread(self, pool: str, fn: Callable[..., Any], *args: Any) -> Any: ...
    async def _put(self, q: asyncio.Queue[Any], item: Any, name: str) -> None: ...
    def _record_reply(self, turn: int, text: str, interrupted: bool) -> None: ...
    def _stages(self) -> tuple[Thinker, Speaker, Player]: ...
    def _start_reply_stages(self, play: bool) -> None: ...


_DONE = object()


class Stage:
    """One stage: a task reading `inbox`. `name` is its task's name."""

    name = "stage"

    def __init__(self, agent: Agent, inbox: asyncio.Queue[Any]) -> None:
        self.agent = agent
        self.inbox = inbox
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=self.name)

    def stop(self) -> asyncio.Task[None] | None:
        """Cancel the task (returned, to await); None when there is none."""
        if self.task is not None:
            self.task.cancel()
        return self.task

    def drain(self) -> tuple[int, int]:
        """Empty the inbox: (chunks dropped, samples of audio dropped)."""
        chunks = samples = 0
        while not self.inbox.empty():
            item = self.inbox.get_nowait()
            if isinstance(item, TextChunk | AudioChunk):
                chunks += 1
            if isinstance(item, AudioChunk):
                samples += len(item.samples)
        return chunks, samples

    async def run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class Thinker(Stage):
    """think: a transcript -> the LLM's tokens -> clause chunks for TTS (`outbox`)."""

    name = "think"

    def __init__(
        self, agent: Agent, inbox: asyncio.Queue[UserTurn], outbox: asyncio.Queue[Any]
    ) -> None:
        super().__init__(agent, inbox)
        self.outbox = outbox
        self.llm_cancel: threading.Event | None = None

    def cancel_llm(self) -> None:
        """Tell the LLM's worker thread to stop producing tokens."""
        if self.llm_cancel is not None:
            self.llm_cancel.set()

    async def run(self) -> None:
        a = self.agent
        while True:
            request = await self.inbox.get()
            if a._cancelled(request.turn):
                continue
            await self._reply(request)

    async def _reply(self, request: UserTurn) -> None:
        a = self.agent
        turn = request.turn
        cfg = a.config
        times = a._times_of(turn)
        a._history_at[turn] = len(a.history)
        a.history.append(Message("user", request.text))
        messages = list(a.history)
        times.llm_request_us = now_us()
        a.telemetry.emit(
            "llm_request",
            turn=turn,
            text=request.text,
            partial=request.partial,
            speculative=request.speculative,
        )
        c = cfg.chunker
        chunker = ClauseChunker(c.min_tokens, c.max_tokens, c.first_min_tokens, c.first_max_tokens)
        parts: list[str] = []
        a._reply_text[turn] = parts
        serialized = a.fault == "serialized-llm"
        first = True
        async with contextlib.aclosing(self._tokens(messages)) as stream:
            async for token in stream:
                if a._cancelled(turn):
                    return
                if first:
                    first = False
                    times.llm_first_token_us = now_us()
                    a.telemetry.emit("llm_first_token", turn=turn, text=token)
                a.telemetry.emit("llm_token", turn=turn, text=token)
                parts.append(token)
                if not serialized:
                    for chunk in self._chunks(chunker, token):
                        await self._send_chunk(turn, chunk)
        a.telemetry.emit("llm_done", turn=turn, tokens=len(parts), text="".join(parts).strip())
        if serialized:  # the mistake: TTS sees nothing until the whole reply is there
            for token in parts:
                for chunk in self._chunks(chunker, token):
                    await self._send_chunk(turn, chunk)
        for chunk in chunker.finish():
            await self._send_chunk(turn, chunk)
        await a._put(self.outbox, EndOfReply(turn), "tts")
        a._record_reply(turn, "".join(parts).strip(), interrupted=False)

    def _chunks(self, chunker: ClauseChunker, token: str) -> list[Chunk]:
        if self.agent.fault == "token-tts":  # the mistake: no clause buffer at all
            return [Chunk(token, 1, "max_tokens", -1)] if token.strip() else []
        return chunker.push(token)

    async def _send_chunk(self, turn: int, chunk: Chunk) -> None:
        a = self.agent
        times = a._times_of(turn)
        if times.first_chunk_us is None:
            times.first_chunk_us = now_us()
        a.telemetry.emit(
            "tts_chunk",
            turn=turn,
            text=chunk.text.strip(),
            tokens=chunk.tokens,
            reason=chunk.reason,
        )
        await a._put(self.outbox, TextChunk(turn, chunk), "tts")

    async def _tokens(self, messages: list[Message]) -> AsyncIterator[str]:
        """The LLM's tokens, produced in a worker thread, through a bounded queue."""
        a = self.agent
        assert a._loop is not None
        loop = a._loop
        cancel = threading.Event()
        self.llm_cancel = cancel
        tokens: asyncio.Queue[Any] = asyncio.Queue(maxsize=a.config.pipeline.token_queue)

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
                for token in a.engines.llm.stream(messages):
                    if cancel.is_set() or not hand_over(token):
                        return
                hand_over(_DONE)
            except Exception as exc:  # surfaced on the loop by the consumer
                hand_over(exc)

        work = loop.run_in_executor(a._pools["llm"], produce)
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


class Speaker(Stage):
    """speak: a text chunk -> TTS audio at the output rate (`outbox`)."""

    name = "speak"

    def __init__(self, agent: Agent, inbox: asyncio.Queue[Any], outbox: asyncio.Queue[Any]) -> None:
        super().__init__(agent, inbox)
        self.outbox = outbox

    async def run(self) -> None:
        a = self.agent
        tts = a.engines.tts
        gain = np.float32(10.0 ** (a.config.tts.output_gain_db / 20.0))
        while True:
            item = await self.inbox.get()
            a.telemetry.emit(
                "queue_depth",
                queue="tts",
                depth=self.inbox.qsize(),
                bound=self.inbox.maxsize or None,
            )
            if a._cancelled(item.turn):
                continue
            if isinstance(item, EndOfReply):
                await a._put(self.outbox, item, "audio")
                continue
            text = item.chunk.text.strip()
            if not any(ch.isalnum() for ch in text):
                continue
            if a.fault == "blocking-call":
                audio = tts.synthesize(text)  # the mistake: the event loop stops meanwhile
            elif a.fault == "gil-holding-call":
                began = time.perf_counter()
                audio = await a._in_thread("tts", tts.synthesize, text)
                # the mistake: C code on the loop that never lets go of the GIL (a text
                # normaliser, a badly wrapped library) for as long as the synthesis took:
                # every thread of the process, its watchdog's probe too, waits meanwhile
                hold_the_gil_for(max(GIL_HOLD_MIN_S, time.perf_counter() - began))
            else:
                audio = await a._in_thread("tts", tts.synthesize, text)
            if a._cancelled(item.turn):
                continue
            audio = resample(audio, tts.sample_rate_hz, a.output_rate_hz)
            audio *= gain
            times = a._times_of(item.turn)
            if item.chunk.index == 0:
                audio = trim_leading_silence(audio, a.output_rate_hz)
            if times.tts_first_audio_us is None:
                times.tts_first_audio_us = now_us()
                a.telemetry.emit(
                    "tts_first_audio",
                    turn=item.turn,
                    audio_ms=round(len(audio) * 1000 / a.output_rate_hz),
                )
            await a._put(self.outbox, AudioChunk(item.turn, item.chunk.index, audio), "audio")


class Player(Stage):
    """play: audio chunks into the output buffer, a frame at a time, as it makes room; a
    speculative reply's audio waits until it is committed."""

    name = "play"

    def __init__(self, agent: Agent, inbox: asyncio.Queue[Any]) -> None:
        super().__init__(agent, inbox)
        self.left = 0  # samples of the chunk it holds, not yet buffered

    def drain(self) -> tuple[int, int]:
        chunks, samples = super().drain()
        samples += self.left
        self.left = 0
        return chunks, samples

    async def run(self) -> None:
        a = self.agent
        frame = a.frame_out
        wait_s = a.config.pipeline.frame_ms / 4000.0
        stale_ok = a.fault == "stale-audio"
        out = a._out
        while True:
            item = await self.inbox.get()
            spec = a._spec
            if spec is not None and spec.turn == item.turn:
                await spec.committed.wait()  # a speculative reply plays only once committed
            if a._cancelled(item.turn) and not stale_ok:
                continue
            if isinstance(item, EndOfReply):
                out.end_reply(item.turn)
                continue
            first = item.turn not in a._started_turns
            a._started_turns.add(item.turn)
            samples = item.samples
            self.left = len(samples)
            for k in range(0, len(samples), frame):
                piece = samples[k : k + frame]
                while out.space() < len(piece):
                    await asyncio.sleep(wait_s)
                if a._cancelled(item.turn) and not stale_ok:
                    break
                out.write(item.turn, piece, first=first and k == 0)
                self.left -= len(piece)
            self.left = 0


GIL_HOLD_MIN_S = 0.2
"""The `gil-holding-call` fault holds the GIL for at least this much CPU time per clause (a
blocking TTS call on a quiet 2-core host takes 200-230 ms)."""


def hold_the_gil_for(cpu_s: float) -> None:
    """Spin for `cpu_s` of this thread's CPU time without letting go of the GIL: a
    pure-Python busy loop with the interpreter's switch interval raised for its length, so
    no other thread of the process is given the GIL meanwhile (what one long C call that
    never releases it does). CPU time, not wall time: on a crowded host it takes longer,
    and the wait for a CPU is the host's, the spinning the agent's own."""
    switch_s = sys.getswitchinterval()
    sys.setswitchinterval(max(switch_s, 10.0 * cpu_s))
    try:
        end = time.thread_time() + cpu_s
        while time.thread_time() < end:
            pass
    finally:
        sys.setswitchinterval(switch_s)
