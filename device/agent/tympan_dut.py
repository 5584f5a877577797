"""The reference agent as a tympan DUT backend (entry point ``tympan.duts: reference``).

The harness never imports `device.agent` (ARCHITECTURE.md); it finds DUT backends by name in
the ``tympan.duts`` entry-point group (labgrid style) and talks to them through the plain
shape below. This module imports nothing from `harness` either.

Shape of a backend object (``backend`` here)::

    name: str                                   the spec's kind ("reference")
    option_choices: dict[str, tuple[str, ...]]  spec options and their allowed values
                                                (an empty tuple: any value)
    info(options) -> dict[str, str]             what the report shows (kind, fault, engines, ...)
    open_process(options, sample_rate_hz)       -> the same, in a process of its own (what the
                                                sim rig uses when a backend has it; .pid)
    open_in_process(options, sample_rate_hz)    -> an in-process DUT for the sim rig:
        .push(samples)  float32 mono mic samples at sample_rate_hz, any block length
        .pull(n)        -> the next n speaker samples (float32, zeros when quiet)
        .drain_events() -> [{"event": NAME, "t_us": host monotonic µs, **fields}, ...]
                        (everything emitted since the last call)
        .close()        stop the agent (idempotent)
        .info           dict[str, str]
    command(options, *, client_name, server_name, events_path) -> list[str]
        argv of a process that joins JACK server `server_name` as client `client_name`,
        writes its telemetry as JSON lines to `events_path` (one line per event, flushed)
        and prints a line starting with `ready_prefix` once its ports exist.
    ready_prefix: str

Options: ``fault=NAME`` (one of `device.agent.config.FAULTS`), ``config=PATH`` (an agent
config file), ``earcon=on`` (the wake chime when the user starts speaking). Engines are
loaded once per in-process DUT; in one process, DUTs with the same engine settings share
one loaded set (the agent resets them per use; two in-process DUTs are
never run at the same time).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from device.agent.config import FAULTS, AgentConfig, load_config

_ENGINES: dict[str, Any] = {}
_ENGINES_LOCK = threading.Lock()


def _config(options: Mapping[str, str]) -> AgentConfig:
    path = options.get("config")
    config = load_config(Path(path)) if path else AgentConfig()
    if options.get("earcon") == "on":
        config = dataclasses.replace(
            config, pipeline=dataclasses.replace(config.pipeline, earcon=True)
        )
    fault = options.get("fault")
    return config.with_fault(fault) if fault else config


def _engine_names(config: AgentConfig) -> str:
    parts = []
    for stage in ("vad", "asr", "llm", "tts"):
        section = getattr(config, stage, None)
        engine = getattr(section, "engine", None)
        if engine:
            parts.append(f"{stage}={engine}")
    return ",".join(parts)


class InProcessAgent:
    """The reference agent on its own thread, with the sim rig's push/pull interface.

    realtime is True: the sim paces itself to the wall clock for it.
    """

    realtime = True

    def __init__(self, config: AgentConfig, sample_rate_hz: int, info: dict[str, str]) -> None:
        from device.agent.engines import load_engines
        from device.agent.host import AgentHost

        key = repr((config.vad, config.asr, config.llm, config.tts))
        with _ENGINES_LOCK:
            engines = _ENGINES.get(key)
            if engines is None:
                engines = _ENGINES[key] = load_engines(config)
        self.info = info
        self.host = AgentHost(
            config, engines=engines, input_rate_hz=sample_rate_hz, output_rate_hz=sample_rate_hz
        ).start()
        self._drained = 0
        self._closed = False

    def push(self, samples: np.ndarray) -> None:
        """Microphone samples (float mono, the sim's rate)."""
        self.host.push(samples)

    def pull(self, n: int) -> np.ndarray:
        """The next `n` speaker samples."""
        return self.host.pull(n)

    def drain_events(self) -> list[dict[str, Any]]:
        """Telemetry emitted since the last call, as dicts with host-monotonic ``t_us``."""
        events = self.host.events.events()
        new, self._drained = events[self._drained :], len(events)
        return [e.to_dict() for e in new]

    def close(self) -> None:
        """Stop the agent's thread (idempotent)."""
        if not self._closed:
            self._closed = True
            self.host.close()


class ReferenceBackend:
    """The reference agent: in a process of its own on the sim (or in process, for tests),
    `device.agent.live` on JACK."""

    name = "reference"
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {
        "fault": tuple(FAULTS),
        "config": (),
        "earcon": ("on", "off"),
    }
    ready_prefix = "ready:"

    def info(self, options: Mapping[str, str]) -> dict[str, str]:
        """Kind, fault, engines and version, for reports."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            tympan_version = version("tympan")
        except PackageNotFoundError:
            tympan_version = "unknown"
        config = _config(options)
        out = {
            "kind": "reference",
            "fault": config.fault or "none",
            "engines": _engine_names(config),
            "version": tympan_version,
        }
        if options.get("config"):
            out["config"] = str(options["config"])
        if options.get("earcon") == "on":
            out["earcon"] = "on"
        return out

    def open_in_process(self, options: Mapping[str, str], sample_rate_hz: int) -> InProcessAgent:
        """A started in-process agent at `sample_rate_hz` (a multiple of 16 kHz)."""
        return InProcessAgent(_config(options), sample_rate_hz, self.info(options))

    def open_process(self, options: Mapping[str, str], sample_rate_hz: int) -> Any:
        """The same agent in a process of its own (`device.agent.simproc.AgentProcess`):
        its GIL and the harness's are not shared, so neither side's stalls are the other's."""
        from device.agent.simproc import AgentProcess

        _config(options)  # a bad option is refused here, not in the child
        return AgentProcess(options, sample_rate_hz)

    def command(
        self,
        options: Mapping[str, str],
        *,
        client_name: str,
        server_name: str,
        events_path: Path,
    ) -> list[str]:
        """``python -m device.agent.live --jack CLIENT --server SERVER --events FILE ...``."""
        argv = [
            sys.executable,
            "-m",
            "device.agent.live",
            "--jack",
            client_name,
            "--server",
            server_name,
            "--events",
            str(events_path),
        ]
        if options.get("fault"):
            argv += ["--fault", options["fault"]]
        if options.get("config"):
            argv += ["--config", str(options["config"])]
        if options.get("earcon") == "on":
            argv += ["--earcon"]
        return argv


backend = ReferenceBackend()
"""The object the ``tympan.duts`` entry point ``reference`` names."""


if __name__ == "__main__":  # the sim's agent process (`device.agent.simproc.AgentProcess`)
    from device.agent.simproc import serve

    serve(backend.open_in_process(json.loads(sys.argv[2]), int(sys.argv[1])))
