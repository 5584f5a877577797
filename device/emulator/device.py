"""`VirtualDevice`: the device end of the protocol, with its own clock and link impairments.

Transport-agnostic: bytes from the host go in through `feed`; frames go out through the
link's ``write(bytes) -> bool``. It answers PING with PONG (device receive and send times),
HELLO with its HELLO, CMD with ACK/NACK, and sends EVENT, LOG and BOOT.

Its clock counts µs since its own boot (an MCU's ``esp_timer_get_time``), optionally
``drift_ppm`` fast against the host's monotonic clock, and restarts on `reboot`.

Link impairments act on what the device sends (device -> host), so that what the host
receives can be checked against what was sent:

- ``drop_rate``: each frame is dropped with this probability (its sequence number is used).
- ``link_noise``: each byte is corrupted (XOR with a random non-zero byte) with this
  probability. A frame is *corrupted* when one of its bytes (trailing 0x00 included) was
  changed; a corrupted trailing 0x00 joins the frame to the next one, so that next frame is
  *damaged* too. ``frames_damaged`` is the most the host can fairly lose.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from device.protocol import (
    NACK_CODES,
    PROTOCOL_VERSION,
    Ack,
    Boot,
    Command,
    Event,
    FieldValue,
    Hello,
    Log,
    LogLevel,
    Message,
    Nack,
    Ping,
    Pong,
    StreamDecoder,
    encode,
    fit_event,
)

FIRMWARE = "tympan-emulator"
FIRMWARE_VERSION = "0.1.0"
BOOT_CLOCK_US = 1_000  # where the device clock starts at boot (µs since power-on)


def host_now_us() -> int:
    """Host monotonic µs (the agent's telemetry clock)."""
    return time.monotonic_ns() // 1000


class DeviceClock:
    """µs since the device booted, running ``drift_ppm`` fast against host monotonic time."""

    def __init__(self, drift_ppm: float = 0.0) -> None:
        self.drift_ppm = drift_ppm
        self._rate = 1.0 + drift_ppm * 1e-6
        self.boot_host_us = host_now_us()

    def reset(self) -> None:
        """Reboot: the count starts again at `BOOT_CLOCK_US`."""
        self.boot_host_us = host_now_us()

    def now_us(self) -> int:
        """Device µs now."""
        return self.from_host_us(host_now_us())

    def from_host_us(self, t_host_us: int) -> int:
        """The device time at host monotonic µs ``t_host_us`` (the truth the host estimates)."""
        return BOOT_CLOCK_US + round((t_host_us - self.boot_host_us) * self._rate)


@dataclass
class LinkCounters:
    """What the device sent and what its link impairments did to it."""

    frames_sent: int = 0  # sequence numbers used (dropped frames included)
    frames_written: int = 0  # frames that reached the link
    frames_dropped: int = 0
    frames_corrupted: int = 0
    frames_damaged: int = 0
    bytes_corrupted: int = 0
    frames_lost_unplugged: int = 0  # written while the port was gone
    events_sent: int = 0
    commands: int = 0
    commands_repeated: int = 0
    pings: int = 0
    boots: int = 1
    last_seq: int = -1
    by_type: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain dict."""
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


CommandHandler = Callable[[Command], "tuple[str, str] | None"]
"""Runs a CMD; returns None (ACK) or ``(nack_code_name, text)``."""


def synthetic_fields(i: int, t_true_us: int) -> dict[str, FieldValue]:
    """The fields of synthetic event ``i``: checkable content (`check_synthetic`) + truth."""
    return {
        "i": i,
        "x": (i * 2654435761) % 4294967291,
        "text": f"tok{i % 1000:03d}",
        "t_true_us": t_true_us,
    }


def check_synthetic(fields: Mapping[str, Any]) -> bool:
    """True if ``fields`` are exactly what `synthetic_fields` makes for their ``i``."""
    i = fields.get("i")
    if not isinstance(i, int) or isinstance(i, bool):
        return False
    expect = synthetic_fields(i, 0)
    return (
        set(fields) == set(expect)
        and all(fields[k] == expect[k] for k in ("i", "x", "text"))
        and type(fields["t_true_us"]) is int
    )


class VirtualDevice:
    """The protocol engine of the emulator.

    Args:
        write: the link's writer: ``write(frame) -> bool`` (False: the port is gone).
        drift_ppm: device clock drift against the host's.
        link_noise: fraction of sent bytes corrupted.
        drop_rate: fraction of sent frames dropped.
        seed: of the impairments' random numbers (None: random).
        capabilities: advertised in HELLO.
        firmware, firmware_version: what HELLO names (a framework's observer names the
            framework and its version).
    """

    def __init__(
        self,
        write: Callable[[bytes], bool],
        *,
        drift_ppm: float = 0.0,
        link_noise: float = 0.0,
        drop_rate: float = 0.0,
        seed: int | None = None,
        capabilities: tuple[str, ...] = ("events", "ping", "commands"),
        firmware: str = FIRMWARE,
        firmware_version: str = FIRMWARE_VERSION,
    ) -> None:
        self._write = write
        self.firmware = firmware
        self.firmware_version = firmware_version
        self.clock = DeviceClock(drift_ppm)
        self.link_noise = link_noise
        self.drop_rate = drop_rate
        self.capabilities = capabilities
        self.counters = LinkCounters()
        self.commands: dict[str, CommandHandler] = {}
        self._rng = random.Random(seed)
        self._tx_lock = threading.Lock()
        self._seq = 0
        self._decoder = StreamDecoder()
        self._next_noise = self._noise_gap()
        self._prev_delimiter_hit = False
        self._last_cmd: tuple[int, Command, Message] | None = None

    # ------------------------------------------------------------------ sending

    def send(self, message: Message) -> int:
        """Encode and send (through the impairments); returns the sequence number used."""
        with self._tx_lock:
            seq = self._seq
            self._seq = (seq + 1) & 0xFFFF
            if isinstance(message, Pong):  # stamp the send time as late as possible
                message = Pong(message.t_host_us, message.t_device_rx_us, self.clock.now_us())
            frame = encode(message, seq)
            c = self.counters
            c.frames_sent += 1
            c.last_seq = seq
            kind = type(message).__name__
            c.by_type[kind] = c.by_type.get(kind, 0) + 1
            if self.drop_rate and self._rng.random() < self.drop_rate:
                c.frames_dropped += 1
                return seq
            damaged = self._prev_delimiter_hit
            self._prev_delimiter_hit = False
            if self.link_noise:
                frame, hits, delimiter_hit = self._corrupt(frame)
                if hits:
                    c.frames_corrupted += 1
                    c.bytes_corrupted += hits
                    damaged = True
                self._prev_delimiter_hit = delimiter_hit
            if damaged:
                c.frames_damaged += 1
            if self._write(frame):
                c.frames_written += 1
            else:
                c.frames_lost_unplugged += 1
            return seq

    def _noise_gap(self) -> float:
        """Bytes until the next corrupted one (geometric: one draw per corruption)."""
        if not self.link_noise:
            return math.inf
        if self.link_noise >= 1:
            return 0
        u = 1.0 - self._rng.random()
        return math.floor(math.log(u) / math.log(1.0 - self.link_noise))

    def _corrupt(self, frame: bytes) -> tuple[bytes, int, bool]:
        n = len(frame)
        if self._next_noise >= n:
            self._next_noise -= n
            return frame, 0, False
        buf = bytearray(frame)
        pos = self._next_noise
        hits = 0
        while pos < n:
            buf[int(pos)] ^= self._rng.randrange(1, 256)
            hits += 1
            pos += 1 + self._noise_gap()
        self._next_noise = pos - n
        return bytes(buf), hits, buf[-1] != 0

    def set_impairments(
        self, link_noise: float | None = None, drop_rate: float | None = None
    ) -> None:
        """Change the link impairments while running."""
        with self._tx_lock:
            if link_noise is not None:
                self.link_noise = link_noise
                self._next_noise = self._noise_gap()
            if drop_rate is not None:
                self.drop_rate = drop_rate

    def hello(self) -> Hello:
        """This device's HELLO."""
        return Hello(
            self.firmware, self.firmware_version, PROTOCOL_VERSION, self.capabilities, 1_000_000
        )

    def emit(
        self, name: str, fields: Mapping[str, FieldValue], t_host_us: int | None = None
    ) -> int:
        """Send EVENT ``name`` stamped with the device time of host µs ``t_host_us`` (now)."""
        t_dev = self.clock.from_host_us(host_now_us() if t_host_us is None else t_host_us)
        seq = self.send(fit_event(Event(name, max(t_dev, 0), dict(fields))))
        self.counters.events_sent += 1
        return seq

    def log(self, text: str, level: int = LogLevel.INFO) -> None:
        """Send a LOG line."""
        self.send(Log(int(level), text))

    def reboot(self, reason: str = "reset") -> None:
        """Restart: clock from zero, sequence numbers from zero, BOOT then HELLO."""
        with self._tx_lock:
            self.clock.reset()
            self._seq = 0
            self._last_cmd = None
            self.counters.boots += 1
        self.send(Boot(reason, self.clock.now_us()))
        self.send(self.hello())

    def stats(self) -> dict[str, Any]:
        """Counters as a dict (also what the ``stats`` command logs)."""
        with self._tx_lock:
            doc = self.counters.to_json()
        doc["rx"] = {
            "frames": self._decoder.stats.frames,
            "bad_frames": self._decoder.stats.bad_frames,
        }
        return doc

    # ------------------------------------------------------------------ receiving

    def feed(self, data: bytes, t_rx_host_us: int | None = None) -> None:
        """Bytes from the host (``t_rx_host_us``: when they were read, host µs)."""
        t_rx_dev = self.clock.from_host_us(host_now_us() if t_rx_host_us is None else t_rx_host_us)
        for message, seq in self._decoder.feed(data):
            self._handle(message, seq, t_rx_dev)

    def _handle(self, message: Message, seq: int, t_rx_dev: int) -> None:
        if isinstance(message, Ping):
            self.counters.pings += 1
            self.send(Pong(message.t_host_us, t_rx_dev, 0))
        elif isinstance(message, Hello):
            self.send(self.hello())
        elif isinstance(message, Command):
            self._command(message, seq)

    def _command(self, cmd: Command, seq: int) -> None:
        last = self._last_cmd
        if last is not None and last[0] == seq and last[1] == cmd:
            # a retry of the CMD just done (its ACK got lost): answer again, do not redo it
            self.counters.commands_repeated += 1
            self.send(last[2])
            return
        self.counters.commands += 1
        handler = self.commands.get(cmd.name)
        if handler is None:
            known = ", ".join(sorted(self.commands))
            reply: Message = Nack(
                seq, NACK_CODES["unknown_command"], f"unknown command {cmd.name!r} (known: {known})"
            )
        else:
            try:
                result = handler(cmd)
            except Exception as exc:  # a handler bug is the device failing, not the link
                result = ("failed", f"{type(exc).__name__}: {exc}")
            reply = (
                Ack(seq) if result is None else Nack(seq, NACK_CODES[result[0]], result[1][:255])
            )
        self._last_cmd = (seq, cmd, reply)
        self.send(reply)

    def stats_json(self) -> str:
        """`stats` as one JSON line."""
        return json.dumps(self.stats(), separators=(",", ":"))
