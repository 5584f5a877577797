"""What the bridge hands out: device events, link gaps, reboots and counters (frozen values)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from device.protocol import FieldValue


def now_us() -> int:
    """The host's monotonic clock, µs: the same clock as ``device.agent.events.now_us``."""
    return time.monotonic_ns() // 1000


@dataclass(frozen=True)
class DeviceEvent:
    """One EVENT from the device.

    Attributes:
        name: telemetry name (``vad_speech_start``, …; see ``device.protocol.EVENT_TYPES``).
        t_device_us: the device's timestamp, µs on the clock of boot ``boot``.
        t_host_us: the same instant on the host monotonic clock (µs), through the clock fit of
            that boot; None when no fit exists (sync disabled or failed).
        fields: the event's named values.
        seq: the frame's sequence number (u16, restarts at each boot).
        boot: which device boot it came from (0 = the one found at `open`, +1 per reboot).
        t_received_us: host µs when its bytes were read (upper bound on arrival).
    """

    name: str
    t_device_us: int
    t_host_us: int | None
    fields: Mapping[str, FieldValue]
    seq: int
    boot: int
    t_received_us: int = 0

    def get(self, key: str, default: Any = None) -> Any:
        """A field's value, or ``default``."""
        return self.fields.get(key, default)

    def to_json(self) -> dict[str, Any]:
        """``{"event", "t_device_us", "t_host_us", "seq", "boot", "t_received_us", "fields"}``."""
        return {
            "event": self.name,
            "t_device_us": self.t_device_us,
            "t_host_us": self.t_host_us,
            "seq": self.seq,
            "boot": self.boot,
            "t_received_us": self.t_received_us,
            "fields": dict(self.fields),
        }


@dataclass(frozen=True)
class Gap:
    """The link was down from ``t_start_host_us`` to ``t_end_host_us`` (None: still down).

    ``frames_missing`` is how many device frames the sequence numbers say were sent while it
    was down (known once the first frame after it arrives; -1 before, or if the device
    rebooted meanwhile and its numbers restarted).
    """

    t_start_host_us: int
    t_end_host_us: int | None
    reason: str
    frames_missing: int = -1

    @property
    def duration_ms(self) -> float | None:
        """How long the link was down, ms (None while still down)."""
        if self.t_end_host_us is None:
            return None
        return (self.t_end_host_us - self.t_start_host_us) / 1000.0


@dataclass(frozen=True)
class Reboot:
    """The device restarted: seen at host µs ``t_host_us``; ``boot`` is the new boot index."""

    t_host_us: int
    boot: int
    reason: str
    t_device_us: int | None = None


@dataclass(frozen=True)
class DeviceLog:
    """A LOG line from the device, with the host µs it arrived at."""

    t_host_us: int
    level: int
    text: str
    boot: int


@dataclass(frozen=True)
class BridgeStats:
    """Counters of one bridge since `open` (a snapshot).

    Link: ``bytes_in``/``bytes_out``, ``frames_in`` (good frames), ``frames_out``.
    Damage: ``crc_errors``, ``framing_errors``, ``message_errors``, ``oversize``,
    ``bytes_discarded`` (from the stream decoder). Loss by sequence numbers: ``seq_gaps``
    (jumps), ``frames_missing`` (numbers skipped while the link was up: dropped or
    corrupted frames), ``frames_missing_in_gaps`` (sent while the port was gone).
    Faults: ``reconnects``, ``reboots``. Traffic: ``events``, ``events_pending`` (received,
    not yet taken), ``logs``, ``commands``, ``retries``, ``timeouts``, ``nacks``, ``pings``,
    ``ping_timeouts``, ``syncs``, ``stale_replies`` (PONG/ACK nobody waited for).
    """

    bytes_in: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    frames_out: int = 0
    crc_errors: int = 0
    framing_errors: int = 0
    message_errors: int = 0
    oversize: int = 0
    bytes_discarded: int = 0
    seq_gaps: int = 0
    frames_missing: int = 0
    frames_missing_in_gaps: int = 0
    reconnects: int = 0
    reboots: int = 0
    events: int = 0
    events_pending: int = 0
    logs: int = 0
    commands: int = 0
    retries: int = 0
    timeouts: int = 0
    nacks: int = 0
    pings: int = 0
    ping_timeouts: int = 0
    syncs: int = 0
    stale_replies: int = 0

    @property
    def bad_frames(self) -> int:
        """Frames rejected for any reason (CRC, framing, payload, oversize)."""
        return self.crc_errors + self.framing_errors + self.message_errors + self.oversize

    def to_json(self) -> dict[str, Any]:
        """Plain dict, ``bad_frames`` included."""
        doc = asdict(self)
        doc["bad_frames"] = self.bad_frames
        return doc
