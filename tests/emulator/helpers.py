"""Run ``python -m device.emulator`` as a subprocess: its path, its ready line, its summary."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class EmulatorProcess:
    """``with EmulatorProcess("--clock-drift-ppm", "50") as emu: emu.path ...``.

    Started with ``--pty`` plus the given arguments; `stop` sends SIGTERM to its PID and
    parses the ``summary: {json}`` line it prints on stderr.
    """

    def __init__(self, *args: str, ready_timeout_s: float = 20.0) -> None:
        self.args = ["--pty", *args]
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.path = ""
        self.ready = ""
        self.summary: dict[str, Any] = {}
        self.stderr = ""
        self._out = b""

    def start(self) -> EmulatorProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "device.emulator", *self.args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.path = self._line()
        self.ready = self._line()
        assert self.ready.startswith("ready: "), f"emulator said {self.ready!r}; {self.stderr}"
        return self

    def _line(self) -> str:
        """The next stdout line (own buffering: select() cannot see a reader's buffer)."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.ready_timeout_s
        while b"\n" not in self._out:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                self.stop()
                raise AssertionError(f"emulator printed no line in {self.ready_timeout_s} s")
            chunk = os.read(fd, 4096)
            if not chunk:
                self.stop()
                raise AssertionError(f"emulator exited: {self.stderr}")
            self._out += chunk
        line, _, self._out = self._out.partition(b"\n")
        return line.decode().strip()

    def stop(self) -> dict[str, Any]:
        """SIGTERM by PID, wait, parse the summary (empty dict if none)."""
        proc = self.proc
        if proc is None:
            return self.summary
        self.proc = None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
        self.stderr = err.decode(errors="replace")
        for line in self.stderr.splitlines():
            if line.startswith("summary: "):
                self.summary = json.loads(line.removeprefix("summary: "))
        self.returncode = proc.returncode
        return self.summary

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate: Any, timeout_s: float, poll_s: float = 0.01) -> bool:
    """Poll ``predicate()`` until true or ``timeout_s``; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return bool(predicate())
