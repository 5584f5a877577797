"""The raw traffic log: every byte in and out of a bridge session, with host timestamps.

One text file per session, the evidence when something goes wrong. Lines::

    # tympan bridge traffic log v1; port=URL; opened=2026-11-21T11:40:00Z
    12345678901 < 0a01020300...     bytes received at host µs 12345678901 (hex)
    12345679012 > 0601...           bytes sent
    12345680000 # reconnected after 0.512 s    a note from the bridge

Host times are ``time.monotonic_ns() // 1000`` (the bridge's and the agent's clock).
`read_traffic_log` reads a file back.
"""

from __future__ import annotations

import datetime
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class TrafficRecord:
    """One line: ``direction`` is ``"<"`` (in), ``">"`` (out) or ``"#"`` (a note)."""

    t_host_us: int
    direction: str
    data: bytes = b""
    note: str = ""


def log_file_name(port: str, when: datetime.datetime) -> str:
    """``bridge-YYYYmmddTHHMMSS.ffffff-<port with unsafe characters as _>.log``."""
    stamp = when.strftime("%Y%m%dT%H%M%S.%f")
    return f"bridge-{stamp}-{_SAFE.sub('_', port).strip('_')[:60]}.log"


class TrafficLog:
    """Append-only, thread-safe writer of one session's traffic (line buffered per write)."""

    def __init__(self, path: Path, port: str) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = path.open("w", encoding="utf-8", buffering=1 << 16)
        self._lock = threading.Lock()
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self._fh.write(f"# tympan bridge traffic log v1; port={port}; opened={now}\n")

    def data(self, t_host_us: int, direction: str, data: bytes) -> None:
        """Record bytes moving in (``"<"``) or out (``">"``) at host µs ``t_host_us``."""
        with self._lock:
            if not self._fh.closed:
                self._fh.write(f"{t_host_us} {direction} {data.hex()}\n")

    def note(self, t_host_us: int, text: str) -> None:
        """Record something the bridge saw or did (flushed at once: it matters most)."""
        with self._lock:
            if not self._fh.closed:
                self._fh.write(f"{t_host_us} # {text}\n")
                self._fh.flush()

    def flush(self) -> None:
        """Push buffered lines to the file."""
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()

    def close(self) -> None:
        """Flush and close (idempotent)."""
        with self._lock:
            self._fh.close()


def read_traffic_log(path: Path | str) -> list[TrafficRecord]:
    """Parse a traffic log back into records (the header line is skipped)."""
    out: list[TrafficRecord] = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("# ") or not line.strip():
                continue
            t, direction, rest = ([*line.rstrip("\n").split(" ", 2), ""])[:3]
            if direction == "#":
                out.append(TrafficRecord(int(t), "#", note=rest))
            else:
                out.append(TrafficRecord(int(t), direction, bytes.fromhex(rest)))
    return out
