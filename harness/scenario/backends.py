"""DUT backends: the ``tympan.duts`` entry-point registry and the shape a backend has.

The harness never imports a backend's package (the reference agent is `device.agent`, found
here by name like any other); it loads the object a backend registers and talks to it
through `DutBackend`. Both `harness.scenario.spec` (to check a spec's options) and
`harness.scenario.duts` (to start what a spec names) use this module, which uses neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from harness.errors import InputError

ENTRY_POINT_GROUP = "tympan.duts"
"""The entry-point group DUT backends register in (pyproject.toml)."""

FRAMEWORK_KINDS = ("pipecat", "livekit")
"""Voice-agent frameworks whose bots the harness starts itself (`harness.scenario.duts`,
through `device.observer.launch`)."""

FRAMEWORK_ARGS: dict[str, tuple[str, ...]] = {"pipecat": (), "livekit": ("console",)}
"""A framework bot's arguments when the spec names none: a LiveKit agent runs its CLI's
console mode (offline, no LiveKit server)."""

BUILTIN_KINDS = ("scripted", "jack", "cmd", *FRAMEWORK_KINDS)
"""DUT kinds the harness itself knows (no backend object)."""

_LOADED: dict[str, Any] = {}


class DutSpecError(InputError):
    """A DUT spec that cannot be parsed or names something that does not exist."""


class InProcessDut(Protocol):
    """What `DutBackend.open_in_process` returns: a DUT the sim rig drives frame by frame."""

    info: dict[str, str]

    def push(self, samples: Any) -> None:
        """Microphone samples (float32 mono at the rig's rate), any block length."""
        ...

    def pull(self, n: int) -> Any:
        """The next `n` speaker samples (float32, zeros when quiet)."""
        ...

    def drain_events(self) -> list[dict[str, Any]]:
        """Telemetry since the last call: {"event": NAME, "t_us": host µs, **fields}."""
        ...

    def close(self) -> None: ...


class DutBackend(Protocol):
    """The object a ``tympan.duts`` entry point names (see device/agent/tympan_dut.py).

    name: the spec's kind. option_choices: spec options and their allowed values (an empty
    tuple: any value). ready_prefix: what the process prints once its ports exist.
    """

    name: str
    option_choices: Mapping[str, tuple[str, ...]]
    ready_prefix: str

    def info(self, options: Mapping[str, str]) -> dict[str, str]:
        """What the report shows (kind, fault, engines, ...)."""
        ...

    def open_in_process(self, options: Mapping[str, str], sample_rate_hz: int) -> InProcessDut:
        """An in-process DUT for the sim rig."""
        ...

    def command(
        self,
        options: Mapping[str, str],
        *,
        client_name: str,
        server_name: str,
        events_path: Path,
    ) -> list[str]:
        """argv of a process that joins JACK server `server_name` as `client_name`, writes
        its telemetry as JSON lines to `events_path` and prints `ready_prefix` when ready."""
        ...


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def backend_names() -> set[str]:
    """Every DUT kind a spec may name: the harness's own and the registered backends."""
    return set(BUILTIN_KINDS) | set(_entry_points())


def load_backend(name: str) -> DutBackend:
    """The backend object registered as `name` in ``tympan.duts`` (loaded once)."""
    if name not in _LOADED:
        eps = _entry_points()
        if name not in eps:
            raise DutSpecError(
                f"no DUT backend {name!r} in the {ENTRY_POINT_GROUP!r} entry points (registered: "
                f"{', '.join(sorted(eps)) or 'none'}); is tympan installed (pip install -e .)?"
            )
        _LOADED[name] = eps[name].load()
    return _LOADED[name]
