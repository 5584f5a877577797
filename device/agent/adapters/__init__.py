"""Audio device adapters: run the agent on a live audio clock.

| adapter | module (``device.agent.``) | clock |
|---|---|---|
| JACK client, one input and one output port | `adapters.jack_client` | the JACK period |
| sounddevice stream (a real board or PC) | `adapters.sounddevice_stream` | PortAudio |
| in-process frames | `host.AgentHost` | the caller |
| file | `filemode` | a real-time clock thread |

Audio callbacks only copy blocks (`BlockPump.exchange`): a worker thread feeds the agent,
so nothing slow runs on the audio thread. That costs one period of output latency.
"""

from __future__ import annotations

import queue
import threading

import numpy as np

from device.agent.host import AgentHost


class BlockPump:
    """Moves blocks between an audio callback and an `AgentHost`.

    The callback calls `exchange` with each input block and plays the block it returns:
    the agent's output for the previous period (zeros on the first one, or when the worker
    has fallen behind: counted in `late_blocks`). A worker thread pushes the input to the
    host and pulls the same number of output samples.

    Args:
        host: a started `AgentHost` whose input and output rates are the device's rate.
    """

    def __init__(self, host: AgentHost) -> None:
        self.host = host
        self._in: queue.SimpleQueue[np.ndarray | None] = queue.SimpleQueue()
        self._out: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
        self._primed = False
        self.late_blocks = 0
        """Callbacks that found no output block ready (played zeros)."""
        self.blocks = 0
        """Blocks exchanged so far."""
        self._thread = threading.Thread(target=self._work, name="agent-pump", daemon=True)
        self._thread.start()

    def exchange(self, block: np.ndarray) -> np.ndarray:
        """Audio thread: hand over one input block (float32, shape ``(n,)``); returns the
        ``n`` output samples to play now."""
        n = len(block)
        self._in.put(np.array(block, dtype=np.float32, copy=True))
        self.blocks += 1
        if not self._primed:  # the first period plays silence: one period of latency
            self._primed = True
            return np.zeros(n, np.float32)
        try:
            out = self._out.get_nowait()
        except queue.Empty:
            self.late_blocks += 1
            return np.zeros(n, np.float32)
        if len(out) != n:  # the device changed its block size: pad or cut
            fixed = np.zeros(n, np.float32)
            fixed[: min(n, len(out))] = out[:n]
            out = fixed
        return out

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the worker (the host is the caller's to close)."""
        self._in.put(None)
        self._thread.join(timeout_s)

    def _work(self) -> None:
        while True:
            block = self._in.get()
            if block is None:
                return
            self.host.push(block)
            self._out.put(self.host.pull(len(block)))
