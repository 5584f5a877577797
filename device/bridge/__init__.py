"""The host end of the serial link to a device (framed protocol: ``device.protocol``).

- `DeviceBridge(url, ...)`: open/close (or ``with``), `hello`, `send_command`, `sync` and
  `clock`, `to_host_us`, events through `drain`, `events` (blocking) or `aevents` (asyncio),
  `stats`, `gaps`, `reboots`, `device_logs`, and a raw traffic log at `log_path`.
- Values: `DeviceEvent`, `Gap`, `Reboot`, `DeviceLog`, `BridgeStats`, `ClockFit`,
  `PingSample`; `fit_clock` / `fit_bursts` are the pure clock-sync fit.
- Errors: `BridgeError` and its kinds `PortError` (the user's input: exit status 2 in the
  CLI), `DeviceTimeout`, `CommandRejected`, `NotSynced`, `BridgeClosed`.

Host time everywhere is ``time.monotonic_ns() // 1000`` (`now_us`), the clock the reference
agent stamps its telemetry with. The bridge never imports ``device.agent``.
"""

from device.bridge.bridge import DeviceBridge, default_log_dir, open_port
from device.bridge.clock import ClockFit, ClockFitError, PingSample, fit_bursts, fit_clock
from device.bridge.errors import (
    BridgeClosed,
    BridgeError,
    CommandRejected,
    DeviceTimeout,
    NotSynced,
    PortError,
)
from device.bridge.events import BridgeStats, DeviceEvent, DeviceLog, Gap, Reboot, now_us
from device.bridge.trafficlog import TrafficRecord, read_traffic_log

__all__ = [
    "BridgeClosed",
    "BridgeError",
    "BridgeStats",
    "ClockFit",
    "ClockFitError",
    "CommandRejected",
    "DeviceBridge",
    "DeviceEvent",
    "DeviceLog",
    "DeviceTimeout",
    "Gap",
    "NotSynced",
    "PingSample",
    "PortError",
    "Reboot",
    "TrafficRecord",
    "default_log_dir",
    "fit_bursts",
    "fit_clock",
    "now_us",
    "open_port",
    "read_traffic_log",
]
