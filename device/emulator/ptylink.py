"""`PtyLink`: a pseudo-terminal the host opens like a USB-serial port, and can lose.

The emulator holds the master side; the host opens the slave (``/dev/pts/N``), or a stable
symlink to it (``link_path``), with pyserial like any tty. The slave is put in raw mode
(no echo, no newline translation) and the emulator keeps it open too, so the master never
sees EIO when the host closes and reopens.

`unplug` imitates USB re-enumeration: the pty is closed (the host's reads fail at once),
the symlink removed, and after ``for_s`` seconds a new pty appears behind the same symlink.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path


class PtyLink:
    """One pty at a time, with a reader thread feeding ``on_data(bytes, t_host_us)``.

    Args:
        on_data: called with each chunk the host wrote (on the reader thread).
        link_path: keep a symlink here pointing at the current slave (None: none).
        on_replug: called with the new slave path after an unplug.
    """

    def __init__(
        self,
        on_data: Callable[[bytes, int], None],
        link_path: Path | str | None = None,
        on_replug: Callable[[str], None] | None = None,
    ) -> None:
        self._on_data = on_data
        self.link_path = Path(link_path) if link_path else None
        self._on_replug = on_replug
        self._lock = threading.Lock()
        self._master: int | None = None
        self._slave: int | None = None
        self._gen = 0
        self.slave_name = ""
        self.unplugs = 0
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def path(self) -> str:
        """What the host should open: the symlink if any, else the slave."""
        return str(self.link_path) if self.link_path else self.slave_name

    def open(self) -> PtyLink:
        """Create the pty (and symlink) and start reading."""
        self._plug()
        self._reader = threading.Thread(target=self._read_loop, name="pty-reader", daemon=True)
        self._reader.start()
        return self

    def close(self) -> None:
        """Stop reading, close the pty, remove the symlink."""
        self._stop.set()
        self._unplug_now()
        if self._reader is not None:
            self._reader.join(timeout=2.0)

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        name = os.ttyname(slave)
        with self._lock:
            self._master, self._slave = master, slave
            self._gen += 1
            self.slave_name = name
        if self.link_path is not None:
            tmp = self.link_path.with_name(self.link_path.name + ".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(name, tmp)
            os.replace(tmp, self.link_path)  # atomic: the host never sees a half-made link

    def _unplug_now(self) -> None:
        with self._lock:
            master, slave = self._master, self._slave
            self._master = self._slave = None
            self._gen += 1
        if self.link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link_path.unlink()
        for fd in (master, slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def unplug(self, for_s: float) -> None:
        """Pull the cable now; a new pty appears after ``for_s`` seconds (in the background)."""
        self.unplugs += 1
        self._unplug_now()

        def replug() -> None:
            if self._stop.wait(for_s):
                return
            self._plug()
            if self._on_replug is not None:
                self._on_replug(self.slave_name)

        threading.Thread(target=replug, name="pty-replug", daemon=True).start()

    @property
    def plugged(self) -> bool:
        """True while a pty is there."""
        return self._master is not None

    def write(self, data: bytes) -> bool:
        """Write all of ``data`` (waits while the host is slow to read); False if unplugged."""
        view = memoryview(data)
        with self._lock:
            gen = self._gen
        while view:
            with self._lock:
                if self._gen != gen or self._master is None:
                    return False
                try:
                    n = os.write(self._master, view)
                except BlockingIOError:
                    n = 0
                except OSError:
                    return False
                fd = self._master
            view = view[n:]
            if view:
                with contextlib.suppress(OSError, ValueError):
                    select.select([], [fd], [], 0.05)
        return True

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                fd, gen = self._master, self._gen
            if fd is None:
                time.sleep(0.01)
                continue
            try:
                ready, _, _ = select.select([fd], [], [], 0.05)
            except (OSError, ValueError):
                continue
            if not ready:
                continue
            with self._lock:
                if self._gen != gen:
                    continue
                try:
                    data = os.read(fd, 65536)
                except (BlockingIOError, OSError):
                    data = b""
            t = time.monotonic_ns() // 1000
            if data:
                self._on_data(data, t)
