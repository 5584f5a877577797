"""`SocketLink`: the device end of the protocol over TCP, for a device that is software.

A framework's voice agent (a Pipecat or LiveKit bot) has no serial port; the harness reaches
its telemetry the way it reaches a lab device behind ser2net, through the bridge's
``socket://HOST:PORT`` URL. `SocketLink` listens, serves one host connection at a time
(the next is taken once the last one closed, as a re-plugged cable would be), feeds what
the host writes to a `VirtualDevice` and writes its frames back. Standard library only: it
runs inside the framework's own virtualenv.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable


class SocketLink:
    """A listening TCP socket for one host at a time, with an accept/read thread.

    Args:
        on_data: called with each chunk the host wrote and when it arrived (host µs), on the
            link's thread.
        host, port: where to listen (port 0: any free port; see `url`).
        on_connect: called (on the link's thread) when a host connects.
    """

    def __init__(
        self,
        on_data: Callable[[bytes, int], None],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        self._on_data = on_data
        self._on_connect = on_connect
        self._server = socket.create_server((host, port))
        self._server.settimeout(0.2)
        self._lock = threading.Lock()
        self._conn: socket.socket | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="observer-link", daemon=True)
        self.connections = 0

    @property
    def url(self) -> str:
        """The pyserial URL the harness opens: ``socket://HOST:PORT``."""
        host, port = self._server.getsockname()[:2]
        return f"socket://{host}:{port}"

    def open(self) -> SocketLink:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        with self._lock:
            conn, self._conn = self._conn, None
        for s in (conn, self._server):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def write(self, data: bytes) -> bool:
        """Send all of `data` to the host; False when no host is connected (the frame is
        lost, as on an unplugged cable: the protocol's sequence numbers tell the host)."""
        with self._lock:
            conn = self._conn
            if conn is None:
                return False
            try:
                conn.sendall(data)
            except OSError:
                # a frame may be half sent: end the connection (the reader sees it close,
                # the host reconnects), never go on after a torn frame
                self._conn = None
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                return False
        return True

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(0.2)
            with self._lock:
                self._conn = conn
                self.connections += 1
            if self._on_connect is not None:
                self._on_connect()
            self._read(conn)

    def _read(self, conn: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                with self._lock:
                    if self._conn is conn:
                        self._conn = None
                with contextlib.suppress(OSError):
                    conn.close()
                return
            self._on_data(data, time.monotonic_ns() // 1000)
