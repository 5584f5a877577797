"""`DeviceBridge`: the host end of the serial link to a device, over any pyserial URL.

    with DeviceBridge("/dev/ttyACM0") as bridge:          # or a pty path, rfc2217://, socket://
        print(bridge.hello)                                # firmware, version, capabilities
        print(bridge.clock)                                # offset, drift, uncertainty
        bridge.send_command("configure", {"fault": "no-cancel"})
        for event in bridge.events(timeout_s=5):           # or bridge.drain(), or aevents()
            print(event.name, event.t_host_us)

A facade over four parts that share one lock (`link.Shared`): the link (`link.SerialLink`:
the port, a reader thread that reads, logs and decodes, and reopens the port when it
disappears), the request/reply table (`requests.Requests`), the clock keeper
(`clockkeeper.ClockKeeper`: boots, fits, and a maintainer thread that re-syncs
periodically, after a reboot and after a reconnect) and the event queue
(`eventqueue.EventQueue`). This module routes each message received to its part and holds
the public calls. Callers' threads send commands and take events.

Events are queued once and handed out once, in arrival order, to whichever of `drain`,
`events` or `aevents` takes them; the queue is never trimmed (nothing received is lost, so
take them). Each carries ``t_host_us``: its device time mapped through the clock fit of its
boot at the moment it is taken. Right after a reboot, events of the new boot wait (up to
`hold_s`) for the new fit.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

from device.bridge.clock import ClockFit, PingSample
from device.bridge.clockkeeper import ClockKeeper
from device.bridge.errors import (
    BridgeError,
    CommandRejected,
    DeviceTimeout,
    NotSynced,
)
from device.bridge.eventqueue import EventQueue, RawEvent
from device.bridge.events import BridgeStats, DeviceEvent, DeviceLog, Gap, Reboot, now_us
from device.bridge.link import SerialLink, Shared, open_port
from device.bridge.requests import Requests, Waiter
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
    Nack,
    Ping,
    Pong,
)

__all__ = ["HOST_FIRMWARE", "HOST_VERSION", "DeviceBridge", "default_log_dir", "open_port"]

HOST_FIRMWARE = "tympan-bridge"
HOST_VERSION = "0.1"
_NACK_NAMES = {v: k for k, v in NACK_CODES.items()}


def default_log_dir() -> Path:
    """``$TYMPAN_BRIDGE_LOG_DIR``, else ``<tmp>/tympan-bridge``."""
    env = os.environ.get("TYMPAN_BRIDGE_LOG_DIR")
    return Path(env) if env else Path(tempfile.gettempdir()) / "tympan-bridge"


class _RebootedDuringSync(DeviceTimeout):
    """A sync burst mixed two device boots; it is redone."""


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

        self._s = Shared(self.url)
        self._lock, self._cond, self._counts = self._s.lock, self._s.cond, self._s.counts
        self._sync_lock = threading.Lock()
        self._requests = Requests(self._counts)
        self._clock = ClockKeeper(self._s)
        self._queue = EventQueue(self._s, self._clock, hold_s)
        self._link = SerialLink(
            self._s,
            baudrate,
            reconnect,
            dispatch=self._dispatch,
            on_events=self._queue.notify_async,
            on_lost=self._requests.forget_ping,  # its PONG cannot come now
            on_reconnected=self._clock.ask_for_sync_locked,
        )
        self._logs: collections.deque[DeviceLog] = collections.deque(maxlen=10_000)
        self._hello: Hello | None = None

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> DeviceBridge:
        """Open the port, start the threads, shake hands and sync the clock (as configured).

        Raises:
            PortError: the port cannot be opened (the user's input: no such port, bad URL).
            DeviceTimeout: no HELLO (or no PONG at all) from whatever is on the port.
            BridgeError: the device speaks another protocol version.
        """
        if not self._s.closed:
            return self
        self._link.open()
        self._s.closed = False
        if self.log_dir is not None:
            now = datetime.datetime.now(datetime.UTC)
            self.log_path = self.log_dir / log_file_name(self.url, now)
            try:
                self._s.log = TrafficLog(self.log_path, self.url)
            except OSError as exc:
                self.close()
                raise BridgeError(
                    f"{self.url}: cannot write the traffic log {self.log_path}: {exc}", self.url
                ) from exc
        self._link.start_reader()
        try:
            if self.handshake:
                self.request_hello()
            if self.sync_on_open:
                self._clock.sync_enabled = True
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
        self._clock.sync_enabled = self.sync_on_open or self.sync_interval_s is not None
        self._clock.need_sync = self._clock.sync_enabled and not self.sync_on_open  # sync now
        self._clock.start(self.sync, self._link.connected, self.sync_interval_s, self.sync_pings)
        return self

    def close(self) -> None:
        """Stop the threads, close the port and the traffic log. Queued events stay takeable."""
        with self._cond:
            self._s.closed = True
            self._cond.notify_all()
            threads = (self._link.reader, self._clock.maintainer)
            self._link.reader = self._clock.maintainer = None
            log = self._s.log  # kept: writing to a closed log is a no-op
        self._link.connected.set()  # wake anyone waiting for a reconnect
        for thread in threads:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=2.0)
        self._link.close_serial()
        if log is not None:
            log.note(now_us(), f"closed; stats {self.stats.to_json()}")
            log.close()
        self._queue.notify_async()

    def __enter__(self) -> DeviceBridge:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        """True between `open` and `close`."""
        return not self._s.closed

    @property
    def connected(self) -> bool:
        """True while the port is there (False during a gap)."""
        return self._link.connected.is_set() and not self._s.closed

    # ------------------------------------------------------------------ state

    @property
    def hello(self) -> Hello | None:
        """The device's latest HELLO (firmware, version, capabilities, clock rate)."""
        return self._hello

    @property
    def boot(self) -> int:
        """Current device boot: 0 at `open`, +1 per reboot seen."""
        return self._clock.boot

    @property
    def clock(self) -> ClockFit | None:
        """The clock fit of the current boot (None before the first sync of that boot)."""
        return self._clock.fits.get(self._clock.boot)

    def clock_for(self, boot: int) -> ClockFit | None:
        """The clock fit of boot ``boot``."""
        return self._clock.fits.get(boot)

    @property
    def gaps(self) -> list[Gap]:
        """Every time the port went away (host times, frames missed), in order."""
        with self._lock:
            return list(self._link.gaps)

    @property
    def reboots(self) -> list[Reboot]:
        """Every device restart seen (BOOT, or its clock going back), in order."""
        with self._lock:
            return list(self._clock.reboots)

    def device_logs(self) -> list[DeviceLog]:
        """LOG lines received so far (the last 10,000)."""
        with self._lock:
            return list(self._logs)

    @property
    def stats(self) -> BridgeStats:
        """A snapshot of the counters."""
        with self._lock:
            d = self._link.decoder.stats
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
                reboots=len(self._clock.reboots),
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
        b = self._clock.boot if boot is None else boot
        fit = self._clock.fits.get(b)
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
        seq = self._link.next_seq()
        self._link.write(self._link.encode(message, seq))
        return seq

    def write_raw(self, data: bytes) -> None:
        """Write bytes as they are (logged like any traffic): for diagnostics and tests, e.g.
        a lone 0x00 to make a device drop a half-received frame."""
        with self._link.write_lock:
            t = now_us()
            self._link.write_locked(bytes(data), t)

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
        seq = self._link.next_seq()
        frame = self._link.encode(Command(name, str_args), seq)
        waiter = Waiter()
        with self._lock:
            self._requests.commands[seq] = waiter
            self._counts["commands"] += 1
        try:
            for attempt in range(retries + 1):
                if attempt:
                    with self._lock:
                        self._counts["retries"] += 1
                try:
                    self._link.write(frame)
                except DeviceTimeout:
                    self._link.connected.wait(timeout_s)
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
                self._requests.commands.pop(seq, None)

    def request_hello(self, timeout_s: float = 1.0, retries: int = 2) -> Hello:
        """Send the host's HELLO; return the device's answer (also kept as `hello`).

        Raises:
            DeviceTimeout: no HELLO came back.
            BridgeError: the device speaks another protocol version.
        """
        hello = Hello(HOST_FIRMWARE, HOST_VERSION, PROTOCOL_VERSION, ("host",))
        for _ in range(retries + 1):
            waiter = Waiter()
            with self._lock:
                self._requests.hello_waiters.append(waiter)
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
                    if waiter in self._requests.hello_waiters:
                        self._requests.hello_waiters.remove(waiter)
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
        waiter = Waiter()
        seq = self._link.next_seq()
        with self._link.write_lock:
            t_tx = now_us()
            frame = self._link.encode(Ping(t_tx), seq)
            with self._lock:
                self._requests.ping = (t_tx, waiter)
                self._counts["pings"] += 1
            try:
                self._link.write_locked(frame, t_tx)
            except BridgeError:
                with self._lock:
                    self._requests.forget_ping()
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
                self._requests.forget_ping(waiter)
        pong = waiter.reply
        assert isinstance(pong, Pong)
        return PingSample(t_tx, pong.t_device_rx_us, pong.t_device_tx_us, waiter.t_rx_us)

    def sync(self, pings: int | None = None, spacing_s: float = 0.005) -> ClockFit:
        """Run one burst of PING/PONG exchanges and refit the current boot's clock.

        The fit uses the fastest quarter of each burst of this boot so far (up to
        `clockkeeper.MAX_BURSTS_PER_BOOT`), so the drift estimate improves with every
        periodic resync.

        Args:
            pings: exchanges in this burst (default `resync_pings`).
            spacing_s: pause between exchanges, s (spreads the burst to see drift).

        Raises:
            DeviceTimeout: not one PONG came back.
        """
        n = self.resync_pings if pings is None else pings
        keeper = self._clock
        with self._sync_lock:
            self._link.check_open()
            boot = keeper.boot
            samples: list[PingSample] = []
            for i in range(n):
                if keeper.boot != boot or self._s.closed:
                    break
                with contextlib.suppress(DeviceTimeout):
                    samples.append(self.ping())
                if spacing_s and i < n - 1:
                    time.sleep(spacing_s)
            if keeper.boot != boot:  # rebooted mid-burst: these samples mix two clocks
                keeper.ask_for_sync()
                raise _RebootedDuringSync(
                    f"{self.url}: device rebooted during clock sync (boot {boot} -> "
                    f"{keeper.boot}); sync again",
                    self.url,
                )
            if not samples:
                raise DeviceTimeout(
                    f"{self.url}: no PONG to any of {n} PINGs: clock not synced{self._evidence()}",
                    self.url,
                )
            fit = keeper.add_burst(boot, samples)
            self._s.note(
                now_us(),
                f"clock sync boot {boot}: offset {fit.offset_us:.1f} us, drift "
                f"{fit.drift_ppm:.3f} ppm, uncertainty {fit.uncertainty_us:.1f} us, "
                f"rtt p50 {fit.rtt_us_p50:.0f} us ({len(samples)}/{n} pongs)",
            )
            self._queue.notify_async()
            return fit

    # ------------------------------------------------------------------ taking events

    def drain(self) -> list[DeviceEvent]:
        """Every event received and not yet taken (stamped with host time), oldest first.

        Events of a boot whose clock is still being synced stay queued (up to `hold_s`).
        """
        return self._queue.drain()

    def events(
        self, timeout_s: float | None = None, count: int | None = None
    ) -> Iterator[DeviceEvent]:
        """Yield events as they arrive, one at a time (each taken only when yielded).

        Stops after ``count`` events, after ``timeout_s`` seconds in total (None: never),
        or when the bridge is closed and the queue is empty.
        """
        return self._queue.events(timeout_s, count)

    def aevents(
        self, timeout_s: float | None = None, count: int | None = None
    ) -> AsyncIterator[DeviceEvent]:
        """`events` for asyncio: ``async for event in bridge.aevents(): ...``."""
        return self._queue.aevents(timeout_s, count)

    def wait_for(self, name: str, timeout_s: float) -> DeviceEvent:
        """Take events until one called ``name`` comes (the others are taken too: use
        `drain` first if you need them). Raises `DeviceTimeout`."""
        for event in self.events(timeout_s=timeout_s):
            if event.name == name:
                return event
        raise DeviceTimeout(f"{self.url}: no {name} event within {timeout_s:g} s", self.url)

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        self._link.check_open()

    def _evidence(self) -> str:
        return f"; traffic log: {self.log_path}" if self.log_path else ""

    def _dispatch(self, message: Message, seq: int, t_rx: int) -> bool:
        """Route one received message to its part (the link holds the lock); True when an
        event was queued."""
        keeper = self._clock
        if isinstance(message, Event):
            keeper.saw_event(message.t_device_us, t_rx)
            self._queue.put(RawEvent(message, seq, keeper.boot, t_rx))
            self._counts["events"] += 1
            keeper.after_event(message.t_device_us)
            return True
        if isinstance(message, Pong):
            keeper.saw_pong(message, t_rx)
            self._requests.on_pong(message, t_rx)
        elif isinstance(message, Ack | Nack):
            self._requests.on_ack(message)
        elif isinstance(message, Hello):
            self._hello = message
            self._requests.on_hello(message)
        elif isinstance(message, Boot):
            keeper.saw_boot(message, t_rx, session_began=self._hello is not None)
        elif isinstance(message, Log):
            self._logs.append(DeviceLog(t_rx, message.level, message.text, keeper.boot))
            self._counts["logs"] += 1
        # PING and CMD from the device side (or our own on loop://) are not for us
        return False
