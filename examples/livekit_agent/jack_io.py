"""LiveKit ``io.AudioInput`` / ``io.AudioOutput`` on one sounddevice duplex stream.

The ``jack`` mode of agent.py: the same ``AgentSession`` as the console mode, with its audio
through LiveKit's own I/O extension points instead of the console's. It exists because the
console opens its streams at 24000 Hz (hard-coded) and PortAudio's JACK host API does not
resample, so on a 48 kHz JACK server (tympan's ``--rig loopback``) the console cannot open
its device. This stream runs at the device's rate and LiveKit resamples (``AudioOutput``'s
``sample_rate``; the Silero VAD and the STT resample their input).

What differs from the console, on purpose kept small: one duplex stream instead of an input
and an output stream, PortAudio's block size (the JACK period) instead of 100 ms blocks, no
300 ms prebuffer before a reply, no WebRTC audio processing (echo cancellation, noise
suppression, AGC) on the microphone. The playout bookkeeping (``on_playback_started``,
``on_playback_finished`` with the position reached, ``pause``, ``clear_buffer``) follows
LiveKit's ``ConsoleAudioOutput`` (livekit/agents/cli/_legacy.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import utils
from livekit.agents.voice import io

FRAME_MS = 10


class JackAudioInput(io.AudioInput):
    """Microphone frames (10 ms, int16 mono) from the stream's callback."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rate: int) -> None:
        super().__init__(label="JACK")
        self._loop = loop
        self._rate = rate
        self._frame = rate * FRAME_MS // 1000
        self._ch: utils.aio.Chan[rtc.AudioFrame] = utils.aio.Chan()
        self._pending = np.zeros(0, np.int16)
        self._attached = True

    def on_attached(self) -> None:
        self._attached = True

    def on_detached(self) -> None:
        self._attached = False

    async def __anext__(self) -> rtc.AudioFrame:
        return await self._ch.__anext__()

    def _send(self, frame: rtc.AudioFrame) -> None:
        if self._attached and not self._ch.closed:
            self._ch.send_nowait(frame)

    def feed(self, pcm: np.ndarray) -> None:
        """Audio thread: cut the block into 10 ms frames and hand them to the event loop."""
        x = np.concatenate([self._pending, pcm]) if len(self._pending) else pcm
        n = len(x) // self._frame
        for k in range(n):
            chunk = x[k * self._frame : (k + 1) * self._frame]
            frame = rtc.AudioFrame(chunk.tobytes(), self._rate, 1, self._frame)
            self._loop.call_soon_threadsafe(self._send, frame)
        self._pending = x[n * self._frame :].copy()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._ch.close)


class JackAudioOutput(io.AudioOutput):
    """The agent's speech, played by the stream's callback at the device's rate."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rate: int) -> None:
        super().__init__(
            label="JACK",
            next_in_chain=None,
            sample_rate=rate,
            capabilities=io.AudioOutputCapabilities(pause=True),
        )
        self._loop = loop
        self._rate = rate
        self._lock = threading.Lock()
        self._buf = bytearray()
        self._pushed_s = 0.0
        self._played = 0  # samples of this segment played
        self._started = False
        self._paused = False
        self._empty = asyncio.Event()
        self._empty.set()
        self._interrupted = asyncio.Event()
        self._flush_task: asyncio.Task[None] | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self._flush_task and not self._flush_task.done():
            await self._flush_task
        with self._lock:
            self._buf += frame.data
            self._pushed_s += frame.duration
        self._empty.clear()

    def flush(self) -> None:
        super().flush()
        if self._pushed_s:
            self._flush_task = asyncio.create_task(self._wait_for_playout())

    def clear_buffer(self) -> None:
        with self._lock:
            self._buf.clear()
        self._empty.set()
        if self._pushed_s:
            self._interrupted.set()

    def pause(self) -> None:
        super().pause()
        self._paused = True

    def resume(self) -> None:
        super().resume()
        self._paused = False

    async def _wait_for_playout(self) -> None:
        async def drained() -> None:
            while True:
                with self._lock:
                    if not self._buf:
                        return
                self._empty.clear()
                await self._empty.wait()

        done = asyncio.create_task(drained())
        stop = asyncio.create_task(self._interrupted.wait())
        try:
            await asyncio.wait([done, stop], return_when=asyncio.FIRST_COMPLETED)
            interrupted = stop.done()
        finally:
            done.cancel()
            stop.cancel()
        with self._lock:
            position = min(self._played / self._rate, self._pushed_s)
            self._buf.clear()
            self._played = 0
            self._started = False
        self.on_playback_finished(
            playback_position=position if interrupted else self._pushed_s,
            interrupted=interrupted,
        )
        self._pushed_s = 0.0
        self._paused = False
        self._interrupted.clear()
        self._empty.set()

    def read_into(self, out: np.ndarray) -> None:
        """Audio thread: fill ``out`` (int16, frames x 1) with the next samples, else zeros."""
        out[:] = 0
        if self._paused:
            return
        with self._lock:
            n = min(len(self._buf) // 2, len(out))
            if n:
                out[:n, 0] = np.frombuffer(self._buf, dtype=np.int16, count=n)
                del self._buf[: 2 * n]
                self._played += n
                if not self._started:
                    self._started = True
                    t = time.time()
                    self._loop.call_soon_threadsafe(lambda: self.on_playback_started(created_at=t))
            drained = n and not self._buf
        if drained:
            self._loop.call_soon_threadsafe(self._empty.set)


class DuplexJackStream:
    """One sounddevice duplex stream (the JACK device by default) for both directions."""

    def __init__(self, loop: asyncio.AbstractEventLoop, device: Any = None) -> None:
        import sounddevice as sd

        info = sd.query_devices(device if device is not None else sd.default.device[0])
        self.rate = int(info["default_samplerate"])
        self.device_name = str(info["name"])
        self.input = JackAudioInput(loop, self.rate)
        self.output = JackAudioOutput(loop, self.rate)
        self._stream = sd.Stream(
            samplerate=self.rate,
            channels=1,
            dtype="int16",
            device=device,
            callback=self._callback,
        )

    def _callback(self, indata: np.ndarray, outdata: np.ndarray, frames: int, *_: Any) -> None:
        self.input.feed(indata[:, 0].copy())
        self.output.read_into(outdata)

    @property
    def blocksize(self) -> int:
        return int(self._stream.blocksize)

    @property
    def latency(self) -> tuple[float, float]:
        return tuple(self._stream.latency)  # type: ignore[return-value]

    def start(self) -> None:
        self._stream.start()

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()
        self.input.close()
