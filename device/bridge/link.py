"""The serial link under a `DeviceBridge`: the port, its reader thread, reopening a port that
went away, writing frames, the traffic log, and the sequence numbers both ways (frames
missing, and how many a gap cost).

It knows frames, not what they mean: each decoded message goes to the bridge's dispatcher,
under the bridge's lock (`Shared.cond`), which every part of a bridge shares.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from device.bridge.errors import BridgeClosed, BridgeError, DeviceTimeout, PortError
from device.bridge.events import Gap, now_us
from device.bridge.trafficlog import TrafficLog
from device.protocol import Boot, Message, MessageError, StreamDecoder, encode

READ_TIMEOUT_S = 0.05  # the reader's poll: how soon it notices `close`
REOPEN_POLL_S = 0.02  # how often a vanished port is retried (reconnect <= this after it returns)


@dataclass
class Shared:
    """What the parts of one bridge share: its URL, one lock (and its condition), the
    counters, whether it is closed, and the traffic log (None: not logging)."""

    url: str
    lock: threading.RLock = field(default_factory=threading.RLock)
    cond: threading.Condition = field(init=False)
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    closed: bool = True
    log: TrafficLog | None = None

    def __post_init__(self) -> None:
        self.cond = threading.Condition(self.lock)

    def note(self, t_us: int, text: str) -> None:
        if self.log is not None:
            self.log.note(t_us, text)


def open_port(url: str, baudrate: int = 115200, timeout_s: float = READ_TIMEOUT_S) -> Any:
    """Open a pyserial port by URL or path; raises `PortError` naming it (with the choices)."""
    try:
        import serial
    except ImportError as exc:  # pragma: no cover - pyserial is a declared dependency
        raise PortError(
            f"{url}: the bridge needs pyserial (pip install 'tympan[serial]')", url
        ) from exc
    # a local tty is locked (flock) so a second program cannot silently share its bytes
    exclusive = {"exclusive": True} if "://" not in url else {}
    try:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=timeout_s, **exclusive)
    except ValueError as exc:
        raise PortError(
            f"{url}: not a usable serial port URL ({exc}); expected a device path "
            "(/dev/ttyACM0, a pty), rfc2217://HOST:PORT?ign_set_control, socket://HOST:PORT "
            "or loop://",
            url,
        ) from exc
    except (serial.SerialException, OSError) as exc:
        raise PortError(f"{url}: cannot open serial port: {exc}", url) from exc


def _read_available(ser: Any) -> bytes:
    """Everything the port has now (waiting up to its timeout for the first byte).

    A local tty is read with one select + one read of all that is there: pyserial's
    ``read(1)`` would return after the first byte and stamp a frame's arrival one loop
    late, which the clock sync would count as link delay. Other URLs go through pyserial.
    """
    fd = getattr(ser, "fd", None)
    if isinstance(fd, int) and fd >= 0 and type(ser).__module__ == "serial.serialposix":
        ready, _, _ = select.select([fd], [], [], READ_TIMEOUT_S)
        if not ready:
            return b""
        data = os.read(fd, 65536)
        if not data:  # readable but empty: the other end hung up (pty closed, USB gone)
            raise OSError(f"{ser.port}: device disconnected (read returned no data)")
        return data
    return ser.read(max(1, ser.in_waiting))


class SerialLink:
    """The port and its reader thread.

    `dispatch(message, seq, t_rx_us)` is called under the shared lock for every decoded
    message, and returns True when it queued an event (then `on_events` is called, outside
    the lock). `on_lost()` is called (under the lock) when the port went away, and
    `on_reconnected()` (under the lock) when it is back.
    """

    def __init__(
        self,
        shared: Shared,
        baudrate: int,
        reconnect: bool,
        *,
        dispatch: Callable[[Message, int, int], bool],
        on_events: Callable[[], None],
        on_lost: Callable[[], None],
        on_reconnected: Callable[[], None],
    ) -> None:
        self.s = shared
        self.baudrate = baudrate
        self.reconnect = reconnect
        self._dispatch = dispatch
        self._on_events = on_events
        self._on_lost_cb = on_lost
        self._on_reconnected = on_reconnected
        self.write_lock = threading.Lock()
        self.serial: Any = None
        self.connected = threading.Event()
        self.reader: threading.Thread | None = None
        self.decoder = StreamDecoder()
        self._tx_seq = 0
        self._last_rx_seq: int | None = None
        self._after_gap: int | None = None  # index into gaps awaiting its first frame
        self.gaps: list[Gap] = []

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Open the port (`PortError`); the reader starts with `start_reader`."""
        self.serial = open_port(self.s.url, self.baudrate)

    def start_reader(self) -> None:
        self.connected.set()
        self.reader = threading.Thread(target=self._read_loop, name="bridge-reader", daemon=True)
        self.reader.start()

    def close_serial(self) -> None:
        ser, self.serial = self.serial, None
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()

    # ------------------------------------------------------------------ sending

    def next_seq(self) -> int:
        with self.s.lock:
            seq = self._tx_seq
            self._tx_seq = (seq + 1) & 0xFFFF
            return seq

    def encode(self, message: Message, seq: int) -> bytes:
        try:
            return encode(message, seq)
        except MessageError as exc:
            raise BridgeError(f"{self.s.url}: cannot send {type(message).__name__}: {exc}") from exc

    def check_open(self) -> None:
        if self.s.closed:
            raise BridgeClosed(f"{self.s.url}: the bridge is closed", self.s.url)

    def write(self, frame: bytes) -> None:
        with self.write_lock:
            self.write_locked(frame, now_us())

    def write_locked(self, frame: bytes, t_us: int) -> None:
        """Write `frame` (the caller holds `write_lock`), stamped `t_us` in the log."""
        self.check_open()
        ser = self.serial
        if ser is None or not self.connected.is_set():
            raise DeviceTimeout(f"{self.s.url}: port is gone (waiting to reconnect)", self.s.url)
        try:
            ser.write(frame)
        except Exception as exc:  # SerialException/OSError: the reader will notice and reopen
            raise DeviceTimeout(f"{self.s.url}: write failed: {exc}", self.s.url) from exc
        if self.s.log is not None:
            self.s.log.data(t_us, ">", frame)
        with self.s.lock:
            self.s.counts["bytes_out"] += len(frame)
            self.s.counts["frames_out"] += 1

    # ------------------------------------------------------------------ receiving

    def _read_loop(self) -> None:
        while not self.s.closed:
            ser = self.serial
            try:
                if ser is None:
                    raise OSError("port not open")
                data = _read_available(ser)
            except Exception as exc:  # the port went away (USB unplug, pty closed, TCP reset)
                if self.s.closed:
                    break
                self._lost(exc)
                if not self._reopen():
                    break
                continue
            if data:
                self._on_bytes(data, now_us())

    def _lost(self, exc: BaseException) -> None:
        t = now_us()
        self.connected.clear()
        self.close_serial()
        with self.s.lock:
            self.gaps.append(Gap(t, None, f"{type(exc).__name__}: {exc}"))
            self.decoder.reset()  # a partial frame from before the gap is garbage
            self._on_lost_cb()
        self.s.note(t, f"port lost: {type(exc).__name__}: {exc}")

    def _reopen(self) -> bool:
        s = self.s
        if not self.reconnect:
            with s.cond:
                s.closed = True
                s.cond.notify_all()
            return False
        while not s.closed:
            try:
                ser = open_port(s.url, self.baudrate)
            except PortError:
                time.sleep(REOPEN_POLL_S)
                continue
            t = now_us()
            with s.cond:
                if s.closed:
                    with contextlib.suppress(Exception):
                        ser.close()
                    return False
                self.serial = ser
                gap = self.gaps[-1]
                self.gaps[-1] = replace(gap, t_end_host_us=t)
                self._after_gap = len(self.gaps) - 1
                s.counts["reconnects"] += 1
                self._on_reconnected()
                s.cond.notify_all()
            self.connected.set()
            s.note(t, f"reconnected after {(t - gap.t_start_host_us) / 1e6:.3f} s")
            return True
        return False

    def _on_bytes(self, data: bytes, t_rx: int) -> None:
        s = self.s
        if s.log is not None:
            s.log.data(t_rx, "<", data)
        with s.lock:
            s.counts["bytes_in"] += len(data)
            messages = self.decoder.feed(data)
            new_events = False
            for message, seq in messages:
                self._count_seq(message, seq)
                new_events |= self._dispatch(message, seq, t_rx)
            if messages:
                s.cond.notify_all()
        if new_events:
            self._on_events()

    def _count_seq(self, message: Message, seq: int) -> None:
        # caller holds the lock
        counts = self.s.counts
        last = self._last_rx_seq
        self._last_rx_seq = seq
        if isinstance(message, Boot):
            self._after_gap = None
            return
        if last is None:
            return
        missing = (seq - last - 1) & 0xFFFF
        if self._after_gap is not None:
            i, self._after_gap = self._after_gap, None
            n = missing if missing < 0x8000 else -1
            self.gaps[i] = replace(self.gaps[i], frames_missing=n)
            if n > 0:
                counts["frames_missing_in_gaps"] += n
            return
        if missing:
            counts["seq_gaps"] += 1
            if missing < 0x8000:  # forward jump: frames lost; backward: a repeat or a restart
                counts["frames_missing"] += missing
