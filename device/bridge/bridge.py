"""`DeviceBridge`: the host end of the serial link to a device, over any pyserial URL.

    with DeviceBridge("/dev/ttyACM0") as bridge:          # or a pty path, rfc2217://, socket://
        print(bridge.hello)                                # firmware, version, capabilities
        print(bridge.clock)                                # offset, drift, uncertainty
        bridge.send_command("configure", {"fault": "no-cancel"})
        for event in bridge.events(timeout_s=5):           # or bridge.drain(), or aevents()
            print(event.name, event.t_host_us)

Threads: a reader (reads, logs, decodes, dispatches; reopens the port when it disappears)
and a maintainer (re-syncs the clock periodically, after a reboot and after a reconnect).
Callers' threads send commands and take events.

Events are queued once and handed out once, in arrival order, to whichever of `drain`,
`events` or `aevents` takes them; the queue is never trimmed (nothing received is lost, so
take them). Each carries ``t_host_us``: its device time mapped through the clock fit of its
boot at the moment it is taken. Right after a reboot, events of the new boot wait (up to
`hold_s`) for the new fit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import os
import select
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from device.bridge.clock import ClockFit, ClockFitError, PingSample, fit_bursts
from device.bridge.errors import (
    BridgeClosed,
    BridgeError,
    CommandRejected,
    DeviceTimeout,
    NotSynced,
    PortError,
)
from device.bridge.events import (
    BridgeStats,
    DeviceEvent,
    DeviceLog,
    Gap,
    Reboot,
    now_us,
)
from device.bridge.trafficlog import TrafficLog, log_file_name
from device.protocol import (
    NACK_CODES,
    PROTOCOL_VERSION,
    Ack,
    Boot,
    Command,
    Event,
    Hello,
    Log,
    Message,
    MessageError,
    Nack,
    Ping,
    Pong,
    StreamDecoder,
    encode,
)

HOST_FIRMWARE = "tympan-bridge"
HOST_VERSION = "0.1"
READ_TIMEOUT_S = 0.05  # the reader's poll: how soon it notices `close`
REOPEN_POLL_S = 0.02  # how often a vanished port is retried (reconnect <= this after it returns)
MAX_BURSTS_PER_BOOT = 32  # sync bursts kept for the drift fit (periodic resyncs extend it)
CLOCK_BACK_TOLERANCE_US = 100_000  # a PONG this far before the last device time = a reboot
CLOCK_JUMP_MARGIN_US = 5_000  # a PONG this far off the fit (beyond its bounds) = a reboot
_NACK_NAMES = {v: k for k, v in NACK_CODES.items()}


def default_log_dir() -> Path:
    """``$TYMPAN_BRIDGE_LOG_DIR``, else ``<tmp>/tympan-bridge``."""
    env = os.environ.get("TYMPAN_BRIDGE_LOG_DIR")
    return Path(env) if env else Path(tempfile.gettempdir()) / "tympan-bridge"


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


class _RebootedDuringSync(DeviceTimeout):
    """A sync burst mixed two device boots; it is redone."""


@dataclass
class _Waiter:
    """A caller blocked on one reply (PONG for a PING, ACK/NACK for a CMD, a HELLO)."""

    done: threading.Event = field(default_factory=threading.Event)
    reply: Message | None = None
    t_rx_us: int = 0


@dataclass
class _Raw:
    """An EVENT as received, before it is stamped with host time and handed out."""

    event: Event
    seq: int
    boot: int
    t_rx_us: int


class DeviceBridge:
    """A session with one device over a pyserial URL.

    Args:
        url: a device path (``/dev/ttyACM0``, a pty or a symlink to one), or a pyserial URL
            (``rfc2217://HOST:PORT?ign_set_control``, ``socket://HOST:PORT``, ``loop://``).
        baudrate: for real UARTs (ptys, USB CDC and sockets ignore it).
        log_dir: folder of the raw traffic log (default `default_log_dir`); None: no log.
        handshake: on `open`, ask for the device's HELLO and fail if none comes.
        sync_on_open: on `open`, sync the clock (`sync_pings` exchanges) before returning.
        sync_pings: PING/PONG exchanges of the first sync burst.
        sync_interval_s: re-sync this often (short bursts of `resync_pings`); None: never.
        resync_pings: exchanges of a periodic, post-reboot or post-reconnect burst.
        reconnect: reopen the port when it disappears (else the session ends there).
        sync_spacing_s: pause between the exchanges of the first burst, s.
        hold_s: how long events of a fresh boot wait for its clock fit before they are
            handed out with ``t_host_us=None``.
        ping_timeout_s: how long one PING waits for its PONG (a lost one is skipped).
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        log_dir: Path | str | None = "",
        handshake: bool = True,
        sync_on_open: bool = True,
        sync_pings: int = 48,
        sync_spacing_s: float = 0.01,
        sync_interval_s: float | None = 10.0,
        resync_pings: int = 16,
        reconnect: bool = True,
        hold_s: float = 3.0,
        ping_timeout_s: float = 0.25,
    ) -> None:
        self.url = str(url)
        self.baudrate = baudrate
        self.log_dir = default_log_dir() if log_dir == "" else (Path(log_dir) if log_dir else None)
        self.handshake = handshake
        self.sync_on_open = sync_on_open
        self.sync_pings = sync_pings
        self.sync_spacing_s = sync_spacing_s
        self.sync_interval_s = sync_interval_s
        self.resync_pings = resync_pings
        self.reconnect = reconnect
        self.hold_s = hold_s
        self.ping_timeout_s = ping_timeout_s
        self.log_path: Path | None = None

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._write_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._serial: Any = None
        self._connected = threading.Event()
        self._closed = True
        self._reader: threading.Thread | None = None
        self._maintainer: threading.Thread | None = None
        self._log: TrafficLog | None = None
        self._decoder = StreamDecoder()
        self._tx_seq = 0
        self._last_rx_seq: int | None = None
        self._after_gap: int | None = None  # index into _gaps awaiting its first frame
        self._queue: collections.deque[_Raw] = collections.deque()
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._commands: dict[int, _Waiter] = {}
        self._ping: tuple[int, _Waiter] | None = None
        self._hello_waiters: list[_Waiter] = []
        self._boot = 0
        self._last_device_us: int | None = None
        self._bursts: dict[int, collections.deque[list[PingSample]]] = {}
        self._fits: dict[int, ClockFit] = {}
        self._need_sync = False
        self._sync_enabled = False
        self._gaps: list[Gap] = []
        self._reboots: list[Reboot] = []
        self._logs: collections.deque[DeviceLog] = collections.deque(maxlen=10_000)
        self._hello: Hello | None = None
        self._counts: dict[str, int] = collections.Counter()

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> DeviceBridge:
        """Open the port, start the threads, shake hands and sync the clock (as configured).

        Raises:
            PortError: the port cannot be opened (the user's input: no such port, bad URL).
            DeviceTimeout: no HELLO (or no PONG at all) from whatever is on the port.
            BridgeError: the device speaks another protocol version.
        """
        if not self._closed:
            return self
        self._serial = open_port(self.url, self.baudrate)
        self._closed = False
        if self.log_dir is not None:
            now = datetime.datetime.now(datetime.UTC)
            self.log_path = self.log_dir / log_file_name(self.url, now)
            try:
                self._log = TrafficLog(self.log_path, self.url)
            except OSError as exc:
                self.close()
                raise BridgeError(
                    f"{self.url}: cannot write the traffic log {self.log_path}: {exc}", self.url
                ) from exc
        self._connected.set()
        self._reader = threading.Thread(target=self._read_loop, name="bridge-reader", daemon=True)
        self._reader.start()
        try:
            if self.handshake:
                self.request_hello()
            if self.sync_on_open:
                self._sync_enabled = True
                for attempt in range(3):
                    try:
                        self.sync(self.sync_pings, spacing_s=self.sync_spacing_s)
                        break
                    except _RebootedDuringSync:
                        if attempt == 2:
                            raise
        except BaseException:
            self.close()
            raise
        self._sync_enabled = self.sync_on_open or self.sync_interval_s is not None
        self._need_sync = self._sync_enabled and not self.sync_on_open  # first sync: now
        self._maintainer = threading.Thread(
            target=self._maintain_loop, name="bridge-sync", daemon=True
        )
        self._maintainer.start()
        return self

    def close(self) -> None:
        """Stop the threads, close the port and the traffic log. Queued events stay takeable."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            threads, self._reader, self._maintainer = (self._reader, self._maintainer), None, None
            log = self._log  # kept: writing to a closed log is a no-op
        self._connected.set()  # wake anyone waiting for a reconnect
        for thread in threads:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=2.0)
        self._close_serial()
        if log is not None:
            log.note(now_us(), f"closed; stats {self.stats.to_json()}")
            log.close()
        self._notify_async()

    def __enter__(self) -> DeviceBridge:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        """True between `open` and `close`."""
        return not self._closed

    @property
    def connected(self) -> bool:
        """True while the port is there (False during a gap)."""
        return self._connected.is_set() and not self._closed

    # ------------------------------------------------------------------ state

    @property
    def hello(self) -> Hello | None:
        """The device's latest HELLO (firmware, version, capabilities, clock rate)."""
        return self._hello

    @property
    def boot(self) -> int:
        """Current device boot: 0 at `open`, +1 per reboot seen."""
        return self._boot

    @property
    def clock(self) -> ClockFit | None:
        """The clock fit of the current boot (None before the first sync of that boot)."""
        return self._fits.get(self._boot)

    def clock_for(self, boot: int) -> ClockFit | None:
        """The clock fit of boot ``boot``."""
        return self._fits.get(boot)

    @property
    def gaps(self) -> list[Gap]:
        """Every time the port went away (host times, frames missed), in order."""
        with self._lock:
            return list(self._gaps)

    @property
    def reboots(self) -> list[Reboot]:
        """Every device restart seen (BOOT, or its clock going back), in order."""
        with self._lock:
            return list(self._reboots)

    def device_logs(self) -> list[DeviceLog]:
        """LOG lines received so far (the last 10,000)."""
        with self._lock:
            return list(self._logs)

    @property
    def stats(self) -> BridgeStats:
        """A snapshot of the counters."""
        with self._lock:
            d = self._decoder.stats
            c = self._counts
            return BridgeStats(
                bytes_in=c["bytes_in"],
                bytes_out=c["bytes_out"],
                frames_in=d.frames,
                frames_out=c["frames_out"],
                crc_errors=d.crc_errors,
                framing_errors=d.framing_errors,
                message_errors=d.message_errors,
                oversize=d.oversize,
                bytes_discarded=d.bytes_discarded,
                seq_gaps=c["seq_gaps"],
                frames_missing=c["frames_missing"],
                frames_missing_in_gaps=c["frames_missing_in_gaps"],
                reconnects=c["reconnects"],
                reboots=len(self._reboots),
                events=c["events"],
                events_pending=len(self._queue),
                logs=c["logs"],
                commands=c["commands"],
                retries=c["retries"],
                timeouts=c["timeouts"],
                nacks=c["nacks"],
                pings=c["pings"],
                ping_timeouts=c["ping_timeouts"],
                syncs=c["syncs"],
                stale_replies=c["stale_replies"],
            )

    def to_host_us(self, t_device_us: int, boot: int | None = None) -> int:
        """Map device µs (of boot ``boot``, default the current one) to host monotonic µs:
        ``time.monotonic_ns() // 1000``, the clock of ``device.agent.events.now_us``.

        Raises:
            NotSynced: no clock fit for that boot.
        """
        b = self._boot if boot is None else boot
        fit = self._fits.get(b)
        if fit is None:
            raise NotSynced(
                f"{self.url}: no clock fit for device boot {b} (sync it first: DeviceBridge.sync)",
                self.url,
            )
        return fit.to_host_us(t_device_us)

    # ------------------------------------------------------------------ sending

    def send(self, message: Message) -> int:
        """Send one message now; returns its sequence number.

        Raises:
            BridgeError: the message does not encode (a value too big, an unknown name).
            BridgeClosed / DeviceTimeout: the bridge is closed / the port is gone.
        """
        seq = self._next_seq()
        self._write(self._encode(message, seq))
        return seq

    def write_raw(self, data: bytes) -> None:
        """Write bytes as they are (logged like any traffic): for diagnostics and tests, e.g.
        a lone 0x00 to make a device drop a half-received frame."""
        with self._write_lock:
            t = now_us()
            self._write_locked(bytes(data), t)

    def send_command(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        timeout_s: float = 1.0,
        retries: int = 2,
    ) -> Ack:
        """Send CMD ``name`` with ``args`` (values turned into strings); wait for its ACK.

        A retry resends the same frame, same sequence number, so a device can tell a repeat
        from a new command (the emulator answers a repeat without running it again).

        Returns:
            The ACK.

        Raises:
            CommandRejected: the device answered NACK (code, code_name, text).
            DeviceTimeout: no ACK/NACK after ``retries + 1`` attempts of ``timeout_s`` each.
        """
        str_args = {str(k): str(v) for k, v in (args or {}).items()}
        seq = self._next_seq()
        frame = self._encode(Command(name, str_args), seq)
        waiter = _Waiter()
        with self._lock:
            self._commands[seq] = waiter
            self._counts["commands"] += 1
        try:
            for attempt in range(retries + 1):
                if attempt:
                    with self._lock:
                        self._counts["retries"] += 1
                try:
                    self._write(frame)
                except DeviceTimeout:
                    self._connected.wait(timeout_s)
                    continue
                if waiter.done.wait(timeout_s):
                    reply = waiter.reply
                    if isinstance(reply, Nack):
                        code_name = _NACK_NAMES.get(reply.code, f"code {reply.code}")
                        raise CommandRejected(
                            f"{self.url}: device refused CMD {name} {str_args}: {code_name}"
                            + (f" ({reply.text})" if reply.text else ""),
                            self.url,
                            reply.code,
                            code_name,
                            reply.text,
                        )
                    assert isinstance(reply, Ack)
                    return reply
                self._check_open()
            with self._lock:
                self._counts["timeouts"] += 1
            raise DeviceTimeout(
                f"{self.url}: no ACK for CMD {name} {str_args} (seq {seq}) within {timeout_s:g} s, "
                f"{retries + 1} attempt(s){self._evidence()}",
                self.url,
            )
        finally:
            with self._lock:
                self._commands.pop(seq, None)

    def request_hello(self, timeout_s: float = 1.0, retries: int = 2) -> Hello:
        """Send the host's HELLO; return the device's answer (also kept as `hello`).

        Raises:
            DeviceTimeout: no HELLO came back.
            BridgeError: the device speaks another protocol version.
        """
        hello = Hello(HOST_FIRMWARE, HOST_VERSION, PROTOCOL_VERSION, ("host",))
        for _ in range(retries + 1):
            waiter = _Waiter()
            with self._lock:
                self._hello_waiters.append(waiter)
            try:
                with contextlib.suppress(DeviceTimeout):
                    self.send(hello)
                if waiter.done.wait(timeout_s):
                    reply = waiter.reply
                    assert isinstance(reply, Hello)
                    if reply.protocol_version != PROTOCOL_VERSION:
                        raise BridgeError(
                            f"{self.url}: device {reply.firmware} {reply.firmware_version} speaks "
                            f"protocol version {reply.protocol_version}, this bridge speaks "
                            f"{PROTOCOL_VERSION}",
                            self.url,
                        )
                    return reply
            finally:
                with self._lock:
                    if waiter in self._hello_waiters:
                        self._hello_waiters.remove(waiter)
            self._check_open()
        raise DeviceTimeout(
            f"{self.url}: no HELLO from the device within {timeout_s:g} s ({retries + 1} "
            f"attempts): is a tympan-protocol device on this port?{self._evidence()}",
            self.url,
        )

    def ping(self, timeout_s: float | None = None) -> PingSample:
        """One PING/PONG exchange (the four timestamps).

        Raises:
            DeviceTimeout: no PONG within ``timeout_s`` (default `ping_timeout_s`).
        """
        timeout_s = self.ping_timeout_s if timeout_s is None else timeout_s
        waiter = _Waiter()
        seq = self._next_seq()
        with self._write_lock:
            t_tx = now_us()
            frame = self._encode(Ping(t_tx), seq)
            with self._lock:
                self._ping = (t_tx, waiter)
                self._counts["pings"] += 1
            try:
                self._write_locked(frame, t_tx)
            except BridgeError:
                with self._lock:
                    self._ping = None
                raise
        try:
            if not waiter.done.wait(timeout_s):
                with self._lock:
                    self._counts["ping_timeouts"] += 1
                raise DeviceTimeout(
                    f"{self.url}: no PONG within {timeout_s:g} s{self._evidence()}", self.url
                )
        finally:
            with self._lock:
                if self._ping is not None and self._ping[1] is waiter:
                    self._ping = None
        pong = waiter.reply
        assert isinstance(pong, Pong)
        return PingSample(t_tx, pong.t_device_rx_us, pong.t_device_tx_us, waiter.t_rx_us)

    def sync(self, pings: int | None = None, spacing_s: float = 0.005) -> ClockFit:
        """Run one burst of PING/PONG exchanges and refit the current boot's clock.

        The fit uses the fastest quarter of each burst of this boot so far (up to
        `MAX_BURSTS_PER_BOOT`), so the drift estimate improves with every periodic resync.

        Args:
            pings: exchanges in this burst (default `resync_pings`).
            spacing_s: pause between exchanges, s (spreads the burst to see drift).

        Raises:
            DeviceTimeout: not one PONG came back.
        """
        n = self.resync_pings if pings is None else pings
        with self._sync_lock:
            self._check_open()
            boot = self._boot
            samples: list[PingSample] = []
            for i in range(n):
                if self._boot != boot or self._closed:
                    break
                with contextlib.suppress(DeviceTimeout):
                    samples.append(self.ping())
                if spacing_s and i < n - 1:
                    time.sleep(spacing_s)
            if self._boot != boot:  # rebooted mid-burst: these samples mix two clocks
                with self._cond:
                    self._need_sync = True
                    self._cond.notify_all()
                raise _RebootedDuringSync(
                    f"{self.url}: device rebooted during clock sync (boot {boot} -> "
                    f"{self._boot}); sync again",
                    self.url,
                )
            if not samples:
                raise DeviceTimeout(
                    f"{self.url}: no PONG to any of {n} PINGs: clock not synced{self._evidence()}",
                    self.url,
                )
            with self._cond:
                bursts = self._bursts.setdefault(
                    boot, collections.deque(maxlen=MAX_BURSTS_PER_BOOT)
                )
                bursts.append(samples)
                try:
                    fit = fit_bursts(list(bursts))
                except ClockFitError as exc:
                    raise BridgeError(f"{self.url}: {exc}", self.url) from exc
                self._fits[boot] = fit
                self._counts["syncs"] += 1
                self._cond.notify_all()
            if self._log is not None:
                self._log.note(
                    now_us(),
                    f"clock sync boot {boot}: offset {fit.offset_us:.1f} us, drift "
                    f"{fit.drift_ppm:.3f} ppm, uncertainty {fit.uncertainty_us:.1f} us, "
                    f"rtt p50 {fit.rtt_us_p50:.0f} us ({len(samples)}/{n} pongs)",
                )
            self._notify_async()
            return fit

    # ------------------------------------------------------------------ taking events

    def drain(self) -> list[DeviceEvent]:
        """Every event received and not yet taken (stamped with host time), oldest first.

        Events of a boot whose clock is still being synced stay queued (up to `hold_s`).
        """
        with self._lock:
            return self._take(None)

    def events(
        self, timeout_s: float | None = None, count: int | None = None
    ) -> Iterator[DeviceEvent]:
        """Yield events as they arrive, one at a time (each taken only when yielded).

        Stops after ``count`` events, after ``timeout_s`` seconds in total (None: never),
        or when the bridge is closed and the queue is empty.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        given = 0
        while count is None or given < count:
            with self._cond:
                while True:
                    got = self._take(1)
                    if got:
                        break
                    if self._closed:
                        return
                    wait = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                    if wait <= 0:
                        return
                    self._cond.wait(wait)
            given += 1
            yield got[0]

    async def aevents(
        self, timeout_s: float | None = None, count: int | None = None
    ) -> AsyncIterator[DeviceEvent]:
        """`events` for asyncio: ``async for event in bridge.aevents(): ...``."""
        loop = asyncio.get_running_loop()
        flag = asyncio.Event()
        entry = (loop, flag)
        deadline = None if timeout_s is None else loop.time() + timeout_s
        given = 0
        with self._lock:
            self._async_waiters.add(entry)
        try:
            while count is None or given < count:
                flag.clear()
                with self._lock:
                    got = self._take(1)
                    closed = self._closed
                if got:
                    given += 1
                    yield got[0]
                    continue
                if closed:
                    return
                wait = 0.1 if deadline is None else min(0.1, deadline - loop.time())
                if wait <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(flag.wait(), wait)
        finally:
            with self._lock:
                self._async_waiters.discard(entry)

    def wait_for(self, name: str, timeout_s: float) -> DeviceEvent:
        """Take events until one called ``name`` comes (the others are taken too: use
        `drain` first if you need them). Raises `DeviceTimeout`."""
        for event in self.events(timeout_s=timeout_s):
            if event.name == name:
                return event
        raise DeviceTimeout(f"{self.url}: no {name} event within {timeout_s:g} s", self.url)

    def _take(self, max_n: int | None) -> list[DeviceEvent]:
        # caller holds the lock
        out: list[DeviceEvent] = []
        now = now_us()
        while self._queue and (max_n is None or len(out) < max_n):
            raw = self._queue[0]
            fit = self._fits.get(raw.boot)
            if fit is None and self._waiting_for_fit(raw, now):
                break
            self._queue.popleft()
            ev = raw.event
            out.append(
                DeviceEvent(
                    name=ev.name,
                    t_device_us=ev.t_device_us,
                    t_host_us=fit.to_host_us(ev.t_device_us) if fit is not None else None,
                    fields=ev.fields,
                    seq=raw.seq,
                    boot=raw.boot,
                    t_received_us=raw.t_rx_us,
                )
            )
        return out

    def _waiting_for_fit(self, raw: _Raw, now: int) -> bool:
        return (
            self._sync_enabled
            and not self._closed
            and raw.boot == self._boot
            and now - raw.t_rx_us < self.hold_s * 1e6
        )

    # ------------------------------------------------------------------ internals: I/O

    def _next_seq(self) -> int:
        with self._lock:
            seq = self._tx_seq
            self._tx_seq = (seq + 1) & 0xFFFF
            return seq

    def _encode(self, message: Message, seq: int) -> bytes:
        try:
            return encode(message, seq)
        except MessageError as exc:
            raise BridgeError(f"{self.url}: cannot send {type(message).__name__}: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise BridgeClosed(f"{self.url}: the bridge is closed", self.url)

    def _evidence(self) -> str:
        return f"; traffic log: {self.log_path}" if self.log_path else ""

    def _write(self, frame: bytes) -> None:
        with self._write_lock:
            self._write_locked(frame, now_us())

    def _write_locked(self, frame: bytes, t_us: int) -> None:
        self._check_open()
        ser = self._serial
        if ser is None or not self._connected.is_set():
            raise DeviceTimeout(f"{self.url}: port is gone (waiting to reconnect)", self.url)
        try:
            ser.write(frame)
        except Exception as exc:  # SerialException/OSError: the reader will notice and reopen
            raise DeviceTimeout(f"{self.url}: write failed: {exc}", self.url) from exc
        if self._log is not None:
            self._log.data(t_us, ">", frame)
        with self._lock:
            self._counts["bytes_out"] += len(frame)
            self._counts["frames_out"] += 1

    def _close_serial(self) -> None:
        ser, self._serial = self._serial, None
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()

    def _read_loop(self) -> None:
        while not self._closed:
            ser = self._serial
            try:
                if ser is None:
                    raise OSError("port not open")
                data = _read_available(ser)
            except Exception as exc:  # the port went away (USB unplug, pty closed, TCP reset)
                if self._closed:
                    break
                self._on_lost(exc)
                if not self._reopen():
                    break
                continue
            if data:
                self._on_bytes(data, now_us())

    def _on_lost(self, exc: BaseException) -> None:
        t = now_us()
        self._connected.clear()
        self._close_serial()
        with self._lock:
            self._gaps.append(Gap(t, None, f"{type(exc).__name__}: {exc}"))
            self._decoder.reset()  # a partial frame from before the gap is garbage
            self._ping = None  # its PONG cannot come now
        if self._log is not None:
            self._log.note(t, f"port lost: {type(exc).__name__}: {exc}")

    def _reopen(self) -> bool:
        if not self.reconnect:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            return False
        while not self._closed:
            try:
                ser = open_port(self.url, self.baudrate)
            except PortError:
                time.sleep(REOPEN_POLL_S)
                continue
            t = now_us()
            with self._cond:
                if self._closed:
                    with contextlib.suppress(Exception):
                        ser.close()
                    return False
                self._serial = ser
                gap = self._gaps[-1]
                self._gaps[-1] = replace(gap, t_end_host_us=t)
                self._after_gap = len(self._gaps) - 1
                self._counts["reconnects"] += 1
                self._need_sync = True
                self._cond.notify_all()
            self._connected.set()
            if self._log is not None:
                self._log.note(t, f"reconnected after {(t - gap.t_start_host_us) / 1e6:.3f} s")
            return True
        return False

    def _on_bytes(self, data: bytes, t_rx: int) -> None:
        if self._log is not None:
            self._log.data(t_rx, "<", data)
        with self._lock:
            self._counts["bytes_in"] += len(data)
            messages = self._decoder.feed(data)
            new_events = False
            for message, seq in messages:
                new_events |= self._dispatch(message, seq, t_rx)
            if messages:
                self._cond.notify_all()
        if new_events:
            self._notify_async()

    def _count_seq(self, message: Message, seq: int) -> None:
        # caller holds the lock
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
            self._gaps[i] = replace(self._gaps[i], frames_missing=n)
            if n > 0:
                self._counts["frames_missing_in_gaps"] += n
            return
        if missing:
            self._counts["seq_gaps"] += 1
            if missing < 0x8000:  # forward jump: frames lost; backward: a repeat or a restart
                self._counts["frames_missing"] += missing

    def _dispatch(self, message: Message, seq: int, t_rx: int) -> bool:
        # caller holds the lock; returns True when an event was queued
        self._count_seq(message, seq)
        if isinstance(message, Event):
            if (
                self._last_device_us is not None
                and message.t_device_us < self._last_device_us - CLOCK_BACK_TOLERANCE_US
            ):
                self._on_reboot(t_rx, "device clock went back (BOOT missed)", None)
            self._queue.append(_Raw(message, seq, self._boot, t_rx))
            self._counts["events"] += 1
            if self._last_device_us is None or message.t_device_us > self._last_device_us:
                self._last_device_us = message.t_device_us
            return True
        if isinstance(message, Pong):
            if (
                self._last_device_us is not None
                and message.t_device_rx_us < self._last_device_us - CLOCK_BACK_TOLERANCE_US
            ):
                self._on_reboot(t_rx, "device clock went back (BOOT missed)", None)
            elif self._clock_jumped(message, t_rx):
                self._on_reboot(t_rx, "device clock jumped (BOOT missed)", None)
            self._last_device_us = max(self._last_device_us or 0, message.t_device_tx_us)
            ping = self._ping
            if ping is not None and ping[0] == message.t_host_us:
                ping[1].reply, ping[1].t_rx_us = message, t_rx
                self._ping = None
                ping[1].done.set()
            else:
                self._counts["stale_replies"] += 1
        elif isinstance(message, Ack | Nack):
            waiter = self._commands.get(message.ack_seq)
            if isinstance(message, Nack):
                self._counts["nacks"] += 1
            if waiter is not None and not waiter.done.is_set():
                waiter.reply = message
                waiter.done.set()
            else:
                self._counts["stale_replies"] += 1
        elif isinstance(message, Hello):
            self._hello = message
            for waiter in self._hello_waiters:
                waiter.reply = message
                waiter.done.set()
            self._hello_waiters.clear()
        elif isinstance(message, Boot):
            if self._hello is None and not self._fits and self._last_device_us is None:
                # the device's own start, still buffered in the port when we opened it:
                # nothing of this session happened before it, so it is no reboot
                self._last_device_us = message.t_device_us
                if self._log is not None:
                    self._log.note(t_rx, f"device booted before the session: {message.reason}")
            else:
                self._on_reboot(t_rx, message.reason, message.t_device_us)
        elif isinstance(message, Log):
            self._logs.append(DeviceLog(t_rx, message.level, message.text, self._boot))
            self._counts["logs"] += 1
        # PING and CMD from the device side (or our own on loop://) are not for us
        return False

    def _clock_jumped(self, pong: Pong, t_rx: int) -> bool:
        """True when a PONG's device time is far from what the current fit predicts: the
        device restarted unseen (its BOOT went out while the port was gone, say)."""
        fit = self._fits.get(self._boot)
        if fit is None or pong.t_host_us > t_rx:
            return False
        host_mid = (pong.t_host_us + t_rx) / 2.0
        predicted = fit.to_device_us(round(host_mid))
        # the PONG's own window, the fit's bound there, and 200 ppm of drift beyond it
        tolerance = (
            (t_rx - pong.t_host_us) / 2.0
            + fit.uncertainty_at_us(predicted)
            + abs(host_mid - fit.t_ref_host_us) * 200e-6
            + CLOCK_JUMP_MARGIN_US
        )
        return abs(pong.t_device_rx_us - predicted) > tolerance

    def _on_reboot(self, t_rx: int, reason: str, t_device_us: int | None) -> None:
        # caller holds the lock
        self._boot += 1
        self._last_device_us = t_device_us
        self._reboots.append(Reboot(t_rx, self._boot, reason, t_device_us))
        self._need_sync = self._sync_enabled
        self._cond.notify_all()
        if self._log is not None:
            self._log.note(t_rx, f"device reboot -> boot {self._boot}: {reason}")

    def _notify_async(self) -> None:
        with self._lock:
            waiters = list(self._async_waiters)
        for loop, flag in waiters:
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(flag.set)

    # ------------------------------------------------------------------ internals: upkeep

    def _maintain_loop(self) -> None:
        next_sync = (
            None if self.sync_interval_s is None else time.monotonic() + self.sync_interval_s
        )
        while True:
            with self._cond:
                while not self._closed and not self._need_sync:
                    if next_sync is not None and time.monotonic() >= next_sync:
                        break
                    wait = 0.5 if next_sync is None else max(0.0, next_sync - time.monotonic())
                    self._cond.wait(min(wait, 0.5))
                if self._closed:
                    return
                urgent = self._need_sync
                self._need_sync = False
            if not self._connected.wait(0.5):
                with self._cond:
                    self._need_sync = self._need_sync or urgent
                continue
            if not self._sync_enabled:
                continue
            try:
                # after a reboot or reconnect: a full first burst; periodic: a short one
                self.sync(self.sync_pings if urgent else None)
            except BridgeClosed:
                return
            except BridgeError as exc:
                if self._log is not None:
                    self._log.note(now_us(), f"resync failed: {exc}")
                with self._cond:
                    self._need_sync = self._need_sync or urgent
                time.sleep(0.2)
                continue
            if self.sync_interval_s is not None:
                next_sync = time.monotonic() + self.sync_interval_s
