"""`Emulator`: a `VirtualDevice` on a `PtyLink`, its commands, timers and (optionally) the
reference agent on a JACK loopback rig.

Commands (CMD name, key=value args) -> ACK, or NACK with a code and a reason:

    reset                      ACK, then reboot (BOOT + HELLO, clock and sequence restart)
    configure KEY=VALUE ...    fault (agent fault knob, "none" clears), link_noise, drop_rate
    start_session/stop_session session_start/session_end events (NACK busy when repeated)
    set_volume level=0..1
    stream count=N rate_hz=R [name=EVENT]   N synthetic events at R per second (checkable
                               content, see `device.emulator.device.synthetic_fields`)
    stats                      a LOG line "stats {json}" with the link counters, then ACK
    unplug for_s=S             ACK, then the pty vanishes for S seconds (USB re-enumeration)
    stall ms=N                 answer only after N ms (a busy device: host timeouts)
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from device.emulator.device import VirtualDevice, host_now_us, synthetic_fields
from device.emulator.ptylink import PtyLink
from device.protocol import EVENT_TYPES, Command

MAX_STREAM_RATE_HZ = 200_000


class Emulator:
    """The virtual device, wired up. `start` opens the pty; `stop` shuts everything down.

    Args:
        link_path: stable symlink to the current pty slave (needed to survive `unplug`).
        drift_ppm, link_noise, drop_rate, seed: see `VirtualDevice`.
        agent_factory: ``(sink, fault) -> started agent`` or None for a protocol-only device.
        fault: the agent's fault knob at start.
        truth: add the host timestamp ``t_true_us`` to agent events.
    """

    def __init__(
        self,
        *,
        link_path: Path | str | None = None,
        drift_ppm: float = 0.0,
        link_noise: float = 0.0,
        drop_rate: float = 0.0,
        seed: int | None = None,
        agent_factory: Any = None,
        fault: str | None = None,
        truth: bool = False,
    ) -> None:
        self.link = PtyLink(self._on_data, link_path, on_replug=self._on_replug)
        capabilities = ("events", "ping", "commands", "stream", "unplug")
        if agent_factory is not None:
            capabilities += ("agent",)
        self.device = VirtualDevice(
            self.link.write,
            drift_ppm=drift_ppm,
            link_noise=link_noise,
            drop_rate=drop_rate,
            seed=seed,
            capabilities=capabilities,
        )
        self.fault = fault
        self.truth = truth
        self.volume = 1.0
        self.session = False
        self.agent: Any = None
        self.sink: Any = None  # ProtocolSink, while an agent runs
        self._agent_factory = agent_factory
        self._agent_lock = threading.Lock()
        self._streams: list[threading.Thread] = []
        self._stop = threading.Event()
        self.replugged: list[tuple[int, str]] = []
        d = self.device.commands
        d["reset"] = self._cmd_reset
        d["configure"] = self._cmd_configure
        d["start_session"] = self._cmd_start_session
        d["stop_session"] = self._cmd_stop_session
        d["set_volume"] = self._cmd_set_volume
        d["stream"] = self._cmd_stream
        d["stats"] = self._cmd_stats
        d["unplug"] = self._cmd_unplug
        d["stall"] = self._cmd_stall

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Emulator:
        """Open the pty (the device is then reachable at `path`)."""
        self.link.open()
        return self

    def start_agent(self) -> Any:
        """Start the reference agent (if configured); returns it (None: protocol only)."""
        if self._agent_factory is None:
            return None
        from device.emulator.sink import ProtocolSink

        with self._agent_lock:
            self.sink = ProtocolSink(self.device, truth=self.truth)
            self.agent = self._agent_factory(self.sink, self.fault, None)
        return self.agent

    @property
    def path(self) -> str:
        """Where the host opens the device."""
        return self.link.path

    def after(self, delay_s: float, action: Any, *args: Any) -> None:
        """Run ``action(*args)`` in ``delay_s`` seconds unless stopped first."""

        def run() -> None:
            if not self._stop.wait(delay_s):
                action(*args)

        threading.Thread(target=run, daemon=True).start()

    def reboot(self, reason: str = "reset") -> None:
        """BOOT + HELLO, clock reset."""
        self.device.reboot(reason)

    def stop(self) -> None:
        """Stop streams, the agent and the pty."""
        self._stop.set()
        for t in self._streams:
            t.join(timeout=2.0)
        with self._agent_lock:
            agent, self.agent = self.agent, None
        try:
            if agent is not None:
                agent.close()
        finally:
            if self.sink is not None:
                self.sink.close()
            self.link.close()

    def summary(self) -> dict[str, Any]:
        """The device's counters plus link facts (what the emulator prints at exit)."""
        doc = self.device.stats()
        if self.sink is not None:
            doc["agent_events_overflowed"] = self.sink.overflowed
        doc["unplugs"] = self.link.unplugs
        doc["replugs"] = [[t, slave] for t, slave in self.replugged]
        doc["path"] = self.path
        doc["slave"] = self.link.slave_name
        return doc

    def _on_data(self, data: bytes, t_host_us: int) -> None:
        self.device.feed(data, t_host_us)

    def _on_replug(self, slave: str) -> None:
        # host µs of the moment the new pty exists: same clock as the bridge's, so a
        # benchmark can measure how soon after this the bridge was back
        self.replugged.append((host_now_us(), slave))

    # ------------------------------------------------------------------ commands

    def emit_synthetic(self, rate_hz: float, name: str = "llm_token") -> None:
        """Emit synthetic events at ``rate_hz`` until stopped (a device that talks by itself)."""
        t = threading.Thread(target=self._stream, args=(name, 2**62, rate_hz), daemon=True)
        self._streams.append(t)
        t.start()

    def _cmd_reset(self, cmd: Command) -> tuple[str, str] | None:
        self.after(0.02, self.reboot, "reset")
        return None

    def _cmd_configure(self, cmd: Command) -> tuple[str, str] | None:
        if not cmd.args:
            return ("bad_argument", "configure needs key=value (fault, link_noise, drop_rate)")
        rates: dict[str, float] = {}
        fault: str | None = None
        for key, value in cmd.args.items():
            if key in ("link_noise", "drop_rate"):
                try:
                    rates[key] = float(value)
                except ValueError:
                    return ("bad_argument", f"{key}={value!r}: expected a number in 0..1")
                if not 0.0 <= rates[key] <= 1.0:
                    return ("bad_argument", f"{key}={value!r}: expected a number in 0..1")
            elif key == "fault":
                from device.agent.config import FAULTS

                if value not in FAULTS and value != "none":
                    return (
                        "bad_argument",
                        f"fault={value!r}: expected none or one of {', '.join(FAULTS)}",
                    )
                fault = None if value == "none" else value
            else:
                return (
                    "bad_argument",
                    f"unknown key {key!r}: expected fault, link_noise or drop_rate",
                )
        if "fault" in cmd.args:
            self.fault = fault
            with self._agent_lock:
                if self.agent is not None:  # the agent's config is frozen: restart it
                    old = self.agent
                    engines = getattr(getattr(old, "host", None), "engines", None)
                    old.close()
                    self.agent = self._agent_factory(self.sink, fault, engines)
        self.device.set_impairments(rates.get("link_noise"), rates.get("drop_rate"))
        return None

    def _cmd_start_session(self, cmd: Command) -> tuple[str, str] | None:
        if self.session:
            return ("busy", "a session is already running (stop_session first)")
        self.session = True
        if self.agent is None:
            self.device.emit("session_start", {"input_rate_hz": 16000})
        return None

    def _cmd_stop_session(self, cmd: Command) -> tuple[str, str] | None:
        if not self.session:
            return ("busy", "no session is running (start_session first)")
        self.session = False
        if self.agent is None:
            self.device.emit("session_end", {"output_s": 0.0})
        return None

    def _cmd_set_volume(self, cmd: Command) -> tuple[str, str] | None:
        raw = cmd.args.get("level")
        try:
            level = float(raw) if raw is not None else float("nan")
        except ValueError:
            level = float("nan")
        if not 0.0 <= level <= 1.0:
            return ("bad_argument", f"set_volume level={raw!r}: expected a number in 0..1")
        self.volume = level
        return None

    def _cmd_stream(self, cmd: Command) -> tuple[str, str] | None:
        try:
            count = int(cmd.args.get("count", "1"))
            rate_hz = float(cmd.args.get("rate_hz", "1000"))
        except ValueError:
            return ("bad_argument", f"stream {dict(cmd.args)}: count and rate_hz are numbers")
        name = cmd.args.get("name", "llm_token")
        if name not in EVENT_TYPES:
            return ("bad_argument", f"stream name={name!r}: not an event name")
        if count < 1 or not 0 < rate_hz <= MAX_STREAM_RATE_HZ:
            return ("bad_argument", f"stream: count >= 1 and 0 < rate_hz <= {MAX_STREAM_RATE_HZ}")
        t = threading.Thread(target=self._stream, args=(name, count, rate_hz), daemon=True)
        self._streams.append(t)
        self.after(0.0, t.start)
        return None

    def _stream(self, name: str, count: int, rate_hz: float) -> None:
        # paced against the start time (not sleep-per-event), so the rate holds on average
        period_ns = 1e9 / rate_hz
        t0 = time.monotonic_ns()
        for i in range(count):
            if self._stop.is_set():
                return
            due = t0 + i * period_ns
            lag = due - time.monotonic_ns()
            if lag > 1e6:
                time.sleep(lag / 1e9)
            t = host_now_us()
            self.device.emit(name, synthetic_fields(i, t), t_host_us=t)

    def _cmd_stats(self, cmd: Command) -> tuple[str, str] | None:
        self.device.log("stats " + self.device.stats_json())
        return None

    def _cmd_unplug(self, cmd: Command) -> tuple[str, str] | None:
        try:
            for_s = float(cmd.args.get("for_s", "0.5"))
        except ValueError:
            return ("bad_argument", "unplug for_s: expected seconds")
        self.after(0.05, self.link.unplug, for_s)
        return None

    def _cmd_stall(self, cmd: Command) -> tuple[str, str] | None:
        try:
            ms = float(cmd.args.get("ms", "1000"))
        except ValueError:
            return ("bad_argument", "stall ms: expected milliseconds")
        time.sleep(min(ms, 10_000) / 1000.0)
        return None
