"""The in-process frame interface: run an agent on a background thread, push microphone
frames in and pull speaker frames out from any thread.

This is what every audio adapter builds on (the simulated rig drives it directly; file mode,
JACK and sounddevice call it from their clocks)::

    with AgentHost(config, input_rate_hz=48000, output_rate_hz=48000) as host:
        for block in mic_blocks:            # e.g. 960 samples = 20 ms
            host.push(block)
            speaker = host.pull(len(block))

`push` never blocks; `pull` returns zeros while the agent is quiet. Events go to the sink
given, and always to `events` (a `MemorySink`) as well.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

from device.agent.audio import Decimator
from device.agent.config import AgentConfig
from device.agent.engines import ASR_RATE_HZ, Engines, load_engines
from device.agent.errors import AgentError
from device.agent.events import EventSink, FanoutSink, MemorySink, Telemetry
from device.agent.pipeline import Agent, State


class AgentHost:
    """An `Agent` on its own event-loop thread with thread-safe frame I/O.

    Args:
        config: agent configuration (default: the defaults).
        engines: loaded engines to reuse (default: load the config's; ~2 s).
        sink: extra event sink (file, callback, ...).
        input_rate_hz: rate of pushed samples; a multiple of 16000 Hz.
        output_rate_hz: rate of pulled samples, any rate.
    """

    def __init__(
        self,
        config: AgentConfig | None = None,
        *,
        engines: Engines | None = None,
        sink: EventSink | None = None,
        input_rate_hz: int = ASR_RATE_HZ,
        output_rate_hz: int = ASR_RATE_HZ,
    ) -> None:
        self.config = config or AgentConfig()
        self.engines = engines if engines is not None else load_engines(self.config)
        self.events = MemorySink()
        self.telemetry = Telemetry(FanoutSink([self.events, sink]) if sink else self.events)
        self.input_rate_hz = input_rate_hz
        self.output_rate_hz = output_rate_hz
        self._decimator = Decimator(input_rate_hz, ASR_RATE_HZ)
        self.agent = Agent(self.config, self.engines, self.telemetry, output_rate_hz)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> AgentHost:
        """Start the agent's thread; returns once the stages are running."""
        ready = threading.Event()

        def main() -> None:
            try:
                asyncio.run(self.agent.run(ready))
            except BaseException as exc:  # reported by close()
                self._error = exc
                ready.set()

        self._thread = threading.Thread(target=main, name="agent-loop", daemon=True)
        self._thread.start()
        ready.wait(timeout=30)
        if self._error is not None:
            raise AgentError(f"the agent failed to start: {self._error}") from self._error
        return self

    def push(self, samples: np.ndarray) -> None:
        """Microphone samples at `input_rate_hz`, float mono, any block length."""
        self.agent.push_input(self._decimator.process(samples))

    def pull(self, n: int) -> np.ndarray:
        """The next ``n`` speaker samples at `output_rate_hz` (float32, zeros when quiet)."""
        return self.agent.pull_output(n)

    @property
    def state(self) -> State:
        """The agent's current state."""
        return self.agent.state

    def idle(self) -> bool:
        """Nothing heard, pending or playing."""
        return self.agent.idle()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the agent and join its thread; re-raises a pipeline failure."""
        if self._thread is not None:
            self.agent.request_stop()
            self._thread.join(timeout_s)
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise AgentError(f"the agent failed: {error!r}") from error

    def __enter__(self) -> AgentHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class RealTimeClock:
    """Calls ``tick()`` every ``period_s`` on absolute deadlines (no drift), on the calling
    thread; a late tick is run at once (as a sound card's next period would)."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._t0 = time.perf_counter()
        self.ticks = 0

    def wait_next(self) -> None:
        """Sleep until the end of the current period."""
        self.ticks += 1
        delay = self._t0 + self.ticks * self.period_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
