"""DUT backends: open what a `DutSpec` names on a rig, and close it again.

| spec | rig | what happens |
|---|---|---|
| ``scripted`` | sim | the sim profile's own DUT (``[sim] dut``), faster than real time |
| ``reference[:fault=NAME]`` | sim | the reference agent in a process of its own as the sim's DUT |
| ``reference[:fault=NAME]`` | loopback | ``python -m device.agent.live`` as a subprocess, wired |
| ``jack:CLIENT`` | loopback | an already running JACK client, wired by name |
| ``cmd:"COMMAND"`` | loopback | COMMAND started (own process group); its new JACK client wired |
| ``pipecat:BOT.py`` | loopback | the bot, unmodified, in its framework's Python, observed |
| ``livekit:AGENT.py`` | loopback | the agent in console mode, the same way |

``scripted``, ``jack``, ``cmd`` and the frameworks are the harness's own. Every other kind is
looked up by name in the ``tympan.duts`` entry-point group (``reference`` is
``device.agent.tympan_dut:backend``; the shape a backend object has is documented there), so
the harness never imports `device.agent`.

A `Dut` stops everything it started, by PID (process group), on `close`; it is a context
manager, and `open_dut` returns it opened.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.rigs.base import RigUnavailable
from harness.scenario.backends import (
    FRAMEWORK_KINDS,
    DutSpecError,
    load_backend,
)
from harness.scenario.spec import DutSpec, parse_dut_spec


class DutError(RigUnavailable):
    """A DUT could not be started or wired; the message quotes its output and log files."""


def rig_kind(rig: Any) -> str:
    """ "sim", "loopback", "soundcard" (the rig profile's kind)."""
    profile = getattr(rig, "profile", None)
    return str(getattr(profile, "kind", type(rig).__name__.lower()))


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").rstrip()
    except OSError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


class EventTail:
    """Reads new complete JSON lines from a file another process appends to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self.bad_lines = 0

    def read(self) -> list[dict[str, Any]]:
        """Events written since the last call (a partly written last line waits)."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except OSError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self._offset += end + 1
        out = []
        for line in data[: end + 1].splitlines():
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                self.bad_lines += 1
        return out


class _Process:
    """A child process in its own process group, output to log files, stopped by PID."""

    def __init__(
        self,
        argv: list[str],
        log_dir: Path,
        stem: str,
        env: dict[str, str] | None = None,
        ready_prefix: str | None = None,
    ) -> None:
        self.argv = argv
        self.stdout_path = log_dir / f"{stem}.stdout.log"
        self.stderr_path = log_dir / f"{stem}.stderr.log"
        self.ready = threading.Event()
        self.ready_line = ""
        self._prefix = ready_prefix
        self._stdout = self.stdout_path.open("w", encoding="utf-8")
        self._stderr = self.stderr_path.open("w", encoding="utf-8")
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=env,
                start_new_session=True,  # its own process group: close() stops all of it
                text=True,
                bufsize=1,
            )
        except OSError as exc:
            self._stdout.close()
            self._stderr.close()
            raise DutError(f"cannot start {' '.join(argv)!r}: {exc}") from exc
        self._reader = threading.Thread(target=self._read, name="dut-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._stdout.write(line)
            self._stdout.flush()
            waiting = self._prefix is not None and not self.ready.is_set()
            if waiting and line.startswith(self._prefix or ""):
                self.ready_line = line.strip()
                self.ready.set()
        self.ready.set()  # EOF: wake a waiter, which then sees the process gone

    def failure(self, what: str) -> str:
        code = self.proc.poll()
        state = "is still running" if code is None else f"exited with status {code}"
        return (
            f"{what}: {' '.join(self.argv)!r} {state}; its stderr ends:\n{_tail(self.stderr_path)}"
            f"\n(full logs: {self.stdout_path}, {self.stderr_path})"
        )

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """SIGTERM the process group, then SIGKILL after `timeout_s`; returns the exit code."""
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout_s)
        else:
            # The leader is gone; children it left in its group go too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        self._reader.join(2.0)
        self._stdout.close()
        self._stderr.close()
        return proc.returncode


class Dut:
    """An opened DUT on a rig (see the module docstring for the kinds).

    spec: the parsed spec. name: a short name for reports (the JACK client, or the kind).
    info: what reports show: kind, fault, engines, client/command, version, ...
    """

    def __init__(self, spec: DutSpec, name: str, info: dict[str, str]) -> None:
        self.spec = spec
        self.name = name
        self.info = info
        self._drain: Callable[[], list[dict[str, Any]]] = list
        self._closers: list[Callable[[], None]] = []
        self._closed = False
        self.pid: int | None = None
        """PID of the process this DUT started, if any."""
        self.bridge: Any = None
        """The device bridge to the DUT's telemetry when the DUT opened one itself (a
        framework's observer); else the session opens one for ``,serial=URL``."""

    def drain_events(self) -> list[dict[str, Any]]:
        """Telemetry received since the last call: ``{"event", "t_us", ...fields}`` with
        ``t_us`` host monotonic µs; empty for DUTs without telemetry."""
        return self._drain()

    def close(self) -> None:
        """Stop and unwire what `open_dut` started (idempotent)."""
        if self._closed:
            return
        self._closed = True
        errors = []
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception as exc:  # close everything, then report the first failure
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> Dut:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_dut(
    spec: DutSpec | str,
    rig: Any,
    *,
    log_dir: Path | str | None = None,
    start_timeout_s: float = 60.0,
) -> Dut:
    """Open the DUT `spec` names on an opened (or openable) `rig`; use as a context manager.

    log_dir: where a started process's stdout/stderr and events go (default: a new
    temporary folder). start_timeout_s: how long a started DUT may take to come up (the
    reference agent loads its engines first: a few seconds). Raises `DutSpecError` for a
    spec that does not fit the rig, `DutError` when a DUT does not come up.
    """
    if isinstance(spec, str):
        spec = parse_dut_spec(spec)
    kind = rig_kind(rig)
    if log_dir is None:
        log_dir = Path(tempfile.mkdtemp(prefix="tympan-dut-"))
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    if kind == "sim":
        return _open_on_sim(spec, rig)
    if spec.kind == "scripted":
        raise DutSpecError(
            f"--dut {spec.text!r}: 'scripted' is the sim rig's own DUT; this rig is "
            f"{kind!r} (use --rig sim, or a reference/jack:/cmd: DUT)"
        )
    if kind != "loopback":
        raise DutSpecError(
            f"--dut {spec.text!r} on a {kind!r} rig: the DUT is wired by cables there; "
            "jack:/cmd:/reference DUTs need the loopback (JACK) rig"
        )
    if rig.client is None:
        rig.open()
    if spec.kind == "jack":
        return _open_jack(spec, rig, start_timeout_s)
    if spec.kind == "cmd":
        return _open_cmd(spec, rig, log_dir, start_timeout_s)
    if spec.kind in FRAMEWORK_KINDS:
        return _open_framework(spec, rig, log_dir, max(start_timeout_s, FRAMEWORK_START_S))
    return _open_backend_process(spec, rig, log_dir, start_timeout_s)


def _open_on_sim(spec: DutSpec, rig: Any) -> Dut:
    if spec.kind in ("jack", "cmd"):
        raise DutSpecError(
            f"--dut {spec.text!r}: {spec.kind}: DUTs are JACK clients; they need the loopback "
            "rig (--rig loopback), not the sim"
        )
    rig.open()
    if spec.kind == "scripted":
        inner = rig.dut
        dut = Dut(spec, "scripted", {"kind": "scripted", "sim_dut": type(inner).__name__})
        return dut
    backend = load_backend(spec.kind)
    options = dict(spec.options)
    # a process of its own when the backend can: the DUT's GIL and the harness's apart
    own = getattr(backend, "open_process", None)
    obj = (
        own(options, rig.sample_rate_hz)
        if own
        else backend.open_in_process(options, rig.sample_rate_hz)
    )
    previous = rig.dut
    rig.dut = obj
    where = "own process (sim)" if own else "in process (sim)"
    dut = Dut(spec, spec.kind, {**obj.info, "where": where})
    dut.pid = getattr(obj, "pid", None)
    dut._drain = obj.drain_events

    def restore() -> None:
        rig.dut = previous
        obj.close()

    dut._closers.append(restore)
    return dut


def _clients(rig: Any) -> set[str]:
    return {p.name.split(":", 1)[0] for p in rig.client.get_ports(is_audio=True)}


def _disconnect(rig: Any, name: str) -> None:
    """Undo `connect_dut`: the DUT's ports off the mouth and the ear (it may be gone)."""
    client = rig.client
    if client is None:
        return
    for port in client.get_ports("^" + name + ":", is_audio=True):
        with contextlib.suppress(Exception):
            if port.is_input:
                client.disconnect(rig._mouth, port)
            else:
                client.disconnect(port, rig._ear)
    if getattr(rig, "dut", None) == name:
        rig.dut = None


def _wire(dut: Dut, rig: Any, client: str, timeout_s: float) -> None:
    rig.connect_dut(client, timeout_s=timeout_s)
    dut._closers.append(lambda: _disconnect(rig, client))


def _open_jack(spec: DutSpec, rig: Any, timeout_s: float) -> Dut:
    assert spec.client is not None
    dut = Dut(spec, spec.client, {"kind": "jack", "client": spec.client})
    _wire(dut, rig, spec.client, min(timeout_s, 10.0))
    return dut


def _dut_env(rig: Any) -> dict[str, str]:
    env = dict(os.environ)
    env["TYMPAN_JACK_SERVER"] = rig.server_name
    env["JACK_DEFAULT_SERVER"] = rig.server_name
    env.setdefault("PYTHONUNBUFFERED", "1")
    # offline at run time: onnxruntime looks up its telemetry host as it loads a model
    env.setdefault("ORT_DISABLE_TELEMETRY", "1")
    return env


def _open_cmd(spec: DutSpec, rig: Any, log_dir: Path, timeout_s: float) -> Dut:
    before = _clients(rig)
    proc = _Process(list(spec.argv), log_dir, "dut", env=_dut_env(rig))
    dut = Dut(spec, spec.argv[0], {"kind": "cmd", "command": spec.command or ""})
    dut.pid = proc.proc.pid
    dut._closers.append(proc.stop)
    try:
        deadline = time.monotonic() + timeout_s
        new = _wait_for(
            lambda: [n for n in sorted(_clients(rig) - before) if _has_ports(rig, n)],
            proc,
            deadline,
            ended="the DUT command ended before its JACK client came up",
            missing=f"no new JACK client with audio input and output ports appeared on "
            f"server {rig.server_name!r} within {timeout_s:g} s",
        )
        _wire_the_one(dut, rig, new, f"the DUT command {spec.command!r}", deadline)
    except BaseException:
        dut.close()
        raise
    return dut


_COUNTER = [0]


def _open_backend_process(spec: DutSpec, rig: Any, log_dir: Path, timeout_s: float) -> Dut:
    backend = load_backend(spec.kind)
    options = dict(spec.options)
    _COUNTER[0] += 1
    client = f"{spec.kind}-dut-{os.getpid()}-{_COUNTER[0]}"
    events_path = log_dir / "events.jsonl"
    argv = backend.command(
        options, client_name=client, server_name=rig.server_name, events_path=events_path
    )
    info = {**backend.info(options), "client": client, "where": "subprocess (JACK)"}
    proc = _Process(argv, log_dir, spec.kind, env=_dut_env(rig), ready_prefix=backend.ready_prefix)
    dut = Dut(spec, client, info)
    dut.pid = proc.proc.pid
    dut._closers.append(proc.stop)
    try:
        if not proc.ready.wait(timeout_s) or not proc.ready_line:
            raise DutError(proc.failure(f"no {backend.ready_prefix!r} line within {timeout_s:g} s"))
        tail = EventTail(events_path)
        dut._drain = tail.read
        _wire(dut, rig, client, 5.0)
    except BaseException:
        dut.close()
        raise
    return dut


FRAMEWORK_START_S = 180.0
"""How long a framework's bot may take to open its audio (it imports the framework and
loads its models first: 20-60 s on a busy 2-core machine)."""


def framework_python(kind: str, option: str | None) -> Path:
    """The Python of the framework's virtualenv: ``python=`` of the spec, else
    ``TYMPAN_<KIND>_PYTHON``, else ``.venv-<kind>/bin/python`` of this checkout (what
    ``make setup`` makes)."""
    root = Path(__file__).resolve().parents[2]
    chosen = option or os.environ.get(f"TYMPAN_{kind.upper()}_PYTHON")
    path = Path(chosen) if chosen else root / f".venv-{kind}" / "bin" / "python"
    if not path.is_file():
        how = (
            f"scripts/setup_{kind}.sh (make setup runs it)"
            if not chosen
            else "check the python= option or the environment variable"
        )
        raise DutError(
            f"--dut {kind}:...: no Python for {kind} bots at {path}; create it with {how}, "
            f"or name one with ,python=PATH"
        )
    return path


def _observer_path(log_dir: Path) -> Path:
    """A folder holding only tympan's `device` package (a symlink), for the bot's
    PYTHONPATH: the observer and the protocol, and none of the harness's dependencies."""
    folder = log_dir / "observer-path"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "device"
    if not link.exists():
        link.symlink_to(Path(__file__).resolve().parents[2] / "device", target_is_directory=True)
    return folder


def _open_framework(spec: DutSpec, rig: Any, log_dir: Path, timeout_s: float) -> Dut:
    """Start a framework's bot through `device.observer.launch` (its JACK client named, its
    framework observed), wire its client, and open the bridge to its observer."""
    kind = spec.kind
    script = Path(spec.command or "")
    if not script.is_file():
        raise DutSpecError(f"--dut {spec.text!r}: {script}: no such file (the bot's script)")
    python = framework_python(kind, spec.option("python"))
    _COUNTER[0] += 1
    client = f"{kind}-dut-{os.getpid()}-{_COUNTER[0]}"
    env = _dut_env(rig)
    env["TYMPAN_JACK_CLIENT"] = client
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_observer_path(log_dir)), env.get("PYTHONPATH", "")) if p
    )
    env.setdefault("HF_HUB_OFFLINE", "1")  # offline at run time: a download is an error
    argv = [str(python), "-m", "device.observer.launch", "--framework", kind]
    argv += ["--jack-name", client, str(script), *spec.argv[1:]]
    info = {"kind": kind, "script": str(script), "client": client, "python": str(python)}
    info["args"] = " ".join(spec.argv[1:])
    before = _clients(rig)
    proc = _Process(argv, log_dir, kind, env=env, ready_prefix="tympan-observer:")
    dut = Dut(spec, client, info)
    dut.pid = proc.proc.pid
    dut._closers.append(proc.stop)
    try:
        deadline = time.monotonic() + timeout_s
        if not proc.ready.wait(timeout_s) or not proc.ready_line:
            raise DutError(proc.failure(f"no 'tympan-observer:' line within {timeout_s:g} s"))
        url = proc.ready_line.split(":", 1)[1].strip()
        # the launcher named PortAudio's client; a bot that names its own is found as the
        # one new client with ports (as for cmd:)
        found = _wait_for(
            lambda: (
                [client]
                if _has_ports(rig, client)
                else [n for n in sorted(_clients(rig) - before) if _has_ports(rig, n)]
            ),
            proc,
            deadline,
            ended=f"the {kind} bot ended before its JACK client came up",
            missing=f"the {kind} bot's JACK client ({client!r}, or any new one) has no audio "
            f"input and output ports on server {rig.server_name!r} after {timeout_s:g} s",
        )
        _wire_the_one(dut, rig, found, f"the {kind} bot", deadline)
        # the observer answers from a thread of the bot's process: once the bot has its
        # audio up (its imports and models loaded, which hold the GIL), it answers in time
        dut.bridge = _open_observer_bridge(url, log_dir / "serial", proc, deadline)
        dut._closers.append(dut.bridge.close)
        if dut.bridge.hello is not None:
            dut.info["version"] = dut.bridge.hello.firmware_version
    except BaseException:
        dut.close()
        raise
    return dut


def _open_observer_bridge(url: str, log_dir: Path, proc: _Process, deadline: float) -> Any:
    """The device bridge to a framework bot's observer, retried while the bot is busy (its
    process holds the GIL for seconds at a time while it loads) until `deadline`."""
    from device.bridge import DeviceBridge
    from device.bridge.errors import BridgeError, DeviceTimeout

    while True:
        bridge = DeviceBridge(url, log_dir=log_dir)
        try:
            return bridge.open()
        except BridgeError as exc:
            bridge.close()
            busy = isinstance(exc, DeviceTimeout) and proc.proc.poll() is None
            if not busy or time.monotonic() > deadline:
                raise DutError(
                    proc.failure(f"the bot's observer at {url} did not answer: {exc}")
                ) from exc


def _wire_the_one(dut: Dut, rig: Any, clients: list[str], what: str, deadline: float) -> None:
    """Name `dut` after the one JACK client it brought up and wire it. Its ports exist
    before it activates (an agent loads its engines first): the wiring waits for that
    within what is left of the start timeout (monotonic `deadline`)."""
    if len(clients) > 1:
        raise DutError(
            f"{what} brought up {len(clients)} JACK clients ({', '.join(clients)}); "
            "expected one (use jack:CLIENT to pick one)"
        )
    dut.name = clients[0]
    dut.info["client"] = clients[0]
    _wire(dut, rig, clients[0], max(5.0, deadline - time.monotonic()))


def _wait_for(
    found: Callable[[], Any], proc: _Process, deadline: float, *, ended: str, missing: str
) -> Any:
    """Poll `found` until it returns something true (returned), the process ends or the
    monotonic `deadline` passes (`DutError` with `ended` / `missing` and the DUT's logs)."""
    while True:
        got = found()
        if got:
            return got
        if proc.proc.poll() is not None:
            raise DutError(proc.failure(ended))
        if time.monotonic() > deadline:
            raise DutError(proc.failure(missing))
        time.sleep(0.05)


def _has_ports(rig: Any, client: str) -> bool:
    ports = rig.client.get_ports("^" + re.escape(client) + ":", is_audio=True)
    return any(p.is_input for p in ports) and any(p.is_output for p in ports)
