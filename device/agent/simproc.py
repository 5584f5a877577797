"""The reference agent in a process of its own, driven block by block over a pipe: the sim
rig's DUT, out of the harness's process.

In the harness's process the agent would share its GIL: a C call of the agent's holding it
would stall the harness (and look like the host), and the harness's own work (plots, JSON,
pickling a capture) would stall the agent (and look like the agent's). A process of its own
keeps each side's stalls its own, as on a real device.

Parent side: `AgentProcess` (push / pull / drain_events / close, the sim's DUT shape).
Child side: ``python -m device.agent.tympan_dut RATE OPTIONS_JSON`` opens the in-process
agent and hands it to `serve`, which prints nothing on stdout but the protocol and serves
until told to quit or its stdin closes.

Protocol (stdin -> child, child -> stdout), each message a 5-byte header (op: 1 byte, payload
length: uint32 little-endian) and its payload:

    R  child -> parent   ready (payload: the agent's info as JSON)
    P  parent -> child   push: float32 mic samples
    L  parent -> child   pull: uint32 n; the child answers A with n float32 samples
    E  parent -> child   drain events; the child answers J with a JSON list
    Q  parent -> child   quit
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Mapping
from typing import IO, Any

import numpy as np

HEADER = struct.Struct("<cI")


def _send(fh: IO[bytes], op: bytes, payload: bytes = b"") -> None:
    fh.write(HEADER.pack(op, len(payload)) + payload)
    fh.flush()


def _read_exactly(fh: IO[bytes], n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = fh.read(n - got)
        if not chunk:
            raise EOFError("the other end of the agent's pipe closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _receive(fh: IO[bytes]) -> tuple[bytes, bytes]:
    op, length = HEADER.unpack(_read_exactly(fh, HEADER.size))
    return op, _read_exactly(fh, length) if length else b""


class AgentProcess:
    """The reference agent in its own process (`python -m device.agent.tympan_dut`), with the
    sim rig's push/pull interface. realtime: the sim paces itself to the wall clock for it.
    pid: the process (its own process group), stopped by PID on `close`."""

    realtime = True

    def __init__(self, options: Mapping[str, str], sample_rate_hz: int) -> None:
        cmd = [sys.executable, "-m", "device.agent.tympan_dut", str(int(sample_rate_hz))]
        cmd.append(json.dumps(dict(options)))
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
        )
        self.pid = self.proc.pid
        self._closed = False
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._to, self._from = self.proc.stdin, self.proc.stdout
        try:
            op, payload = _receive(self._from)
        except EOFError:
            code = self.proc.wait(timeout=10)
            raise RuntimeError(
                f"the reference agent's process exited ({code}) before it was ready "
                "(its stderr is above)"
            ) from None
        if op != b"R":
            self.close()
            raise RuntimeError(f"the reference agent's process said {op!r}, expected ready")
        self.info: dict[str, str] = json.loads(payload)

    def push(self, samples: np.ndarray) -> None:
        """Microphone samples (float mono, the sim's rate)."""
        _send(self._to, b"P", np.asarray(samples, dtype=np.float32).tobytes())

    def pull(self, n: int) -> np.ndarray:
        """The next `n` speaker samples."""
        _send(self._to, b"L", struct.pack("<I", int(n)))
        op, payload = _receive(self._from)
        if op != b"A":
            raise RuntimeError(f"the reference agent's process answered {op!r} to a pull")
        return np.frombuffer(payload, dtype=np.float32).copy()

    def drain_events(self) -> list[dict[str, Any]]:
        """Telemetry emitted since the last call (host-monotonic ``t_us``: one clock for
        every process of the host)."""
        _send(self._to, b"E")
        op, payload = _receive(self._from)
        if op != b"J":
            raise RuntimeError(f"the reference agent's process answered {op!r} to a drain")
        return list(json.loads(payload))

    def close(self) -> None:
        """Ask the process to quit; stop its process group by PID if it does not."""
        if self._closed:
            return
        self._closed = True
        try:
            _send(self._to, b"Q")
            self._to.close()
            self.proc.wait(timeout=10)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def serve(agent: Any) -> None:
    """The child: `agent` (push / pull / drain_events / close / info, as
    `tympan_dut.InProcessAgent`) served over stdin/stdout until quit."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but the protocol goes to the pipe
    _send(stdout, b"R", json.dumps(agent.info).encode())
    try:
        while True:
            try:
                op, payload = _receive(stdin)
            except EOFError:
                return
            if op == b"P":
                agent.push(np.frombuffer(payload, dtype=np.float32))
            elif op == b"L":
                (n,) = struct.unpack("<I", payload)
                _send(stdout, b"A", np.asarray(agent.pull(n), dtype=np.float32).tobytes())
            elif op == b"E":
                _send(stdout, b"J", json.dumps(agent.drain_events(), default=str).encode())
            elif op == b"Q":
                return
    finally:
        agent.close()
