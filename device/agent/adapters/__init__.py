"""Audio device adapters: run the agent on a live audio clock.

| adapter | module (``device.agent.``) | clock |
|---|---|---|
| JACK client, one input and one output port | `adapters.jack_client` | the JACK period |
| sounddevice stream (a real board or PC) | `adapters.sounddevice_stream` | PortAudio |
| in-process frames | `host.AgentHost` | the caller |
| file | `filemode` | a real-time clock thread |

Audio callbacks only copy blocks (`BlockPump.exchange`): a worker thread feeds the agent
its input, so nothing slow runs on the audio thread, and the callback reads the agent's
output buffer directly (a copy under a lock), so output latency never builds up.
"""

from __future__ import annotations

import queue
import threading

import numpy as np

from device.agent.host import AgentHost


class BlockPump:
    """Moves blocks between an audio callback and an `AgentHost`.

    The callback calls `exchange` with each input block and plays the block it returns: the
    next samples of the agent's output buffer, read at once (zeros while it is quiet). A
    worker thread pushes the input to the host (resampling, VAD), off the audio thread.

    An earlier design pulled the output on the worker too and queued it for the next
    callback: every period the worker was late played silence *and* pushed all later
    output one period back, for good — on a busy machine the agent's speech drifted 100 ms
    and more behind its own clock, and a barge-in stopped that much later.

    Args:
        host: a started `AgentHost` whose input and output rates are the device's rate.
    """

    def __init__(self, host: AgentHost) -> None:
        self.host = host
        self._in: queue.SimpleQueue[np.ndarray | None] = queue.SimpleQueue()
        self.late_blocks = 0
        """Callbacks that found the worker still behind with earlier input (> 1 block)."""
        self.blocks = 0
        """Blocks exchanged so far."""
        self._thread = threading.Thread(target=self._work, name="agent-pump", daemon=True)
        self._thread.start()

    def exchange(self, block: np.ndarray) -> np.ndarray:
        """Audio thread: hand over one input block (float32, shape ``(n,)``); returns the
        ``n`` output samples to play now."""
        n = len(block)
        if self._in.qsize() > 1:
            self.late_blocks += 1
        self._in.put(np.array(block, dtype=np.float32, copy=True))
        self.blocks += 1
        return self.host.pull(n)

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
