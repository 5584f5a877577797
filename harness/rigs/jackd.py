"""Start and stop JACK servers (jackd, dummy driver) without ever leaving one behind.

Every server this process starts gets a unique name (``tympan-PID-N``), is tracked in a
registry, and is stopped by PID: on `JackServer.stop`, at interpreter exit (atexit), on
SIGTERM (turned into SystemExit so atexit runs), on Ctrl-C (KeyboardInterrupt unwinds the
same way), and if this process dies hard, by the kernel: the child is started with
PR_SET_PDEATHSIG = SIGTERM, so jackd gets SIGTERM when its parent thread goes.

jackd needs about a second after exiting before the same server name can be used again;
unique names sidestep that, and `stop` waits for the process to be gone.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness.rigs.base import RigUnavailable

NAME_PREFIX = "tympan-"
_counter = itertools.count(1)
_live: dict[int, JackServer] = {}
# re-entrant: the SIGTERM handler runs stop_all on the main thread, which may be inside
# claim() or release() holding the lock at that moment
_lock = threading.RLock()
_hooks_installed = False


REGISTRY_FULL = (
    "JACK's server registry (/dev/shm/jack-shm-registry, 8 slots) is full. A jackd that "
    "was killed without unregistering keeps its slot until the file goes, and tympan's "
    "unique server names never reuse one. With no jackd running (pgrep jackd), delete "
    "/dev/shm/jack-shm-registry (jackd makes a new one), or reboot"
)
"""Why jackd said "Too many servers already active", and the remedy."""


def jack_module():  # noqa: ANN201 - returns the `jack` module
    """Import JACK-Client's `jack` module, or say how to get it."""
    try:
        import jack
    except ImportError as err:
        raise RigUnavailable(
            "the loopback rig needs the JACK-Client Python package (module 'jack'): "
            "pip install 'tympan[rigs]' (or pip install JACK-Client)"
        ) from err
    except OSError as err:  # libjack missing
        raise RigUnavailable(
            f"JACK-Client could not load libjack ({err}); install the Debian package jackd2"
        ) from err
    return jack


def _pdeathsig() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(stop_all)
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGTERM)
        if previous in (signal.SIG_DFL, None):

            def on_term(signum: int, frame: object) -> None:
                stop_all()
                raise SystemExit(128 + signum)

            signal.signal(signal.SIGTERM, on_term)


_bound: dict[str, int] = {}


def claim(server: str) -> None:
    """Note a client of this process on `server`; refuse a second server.

    libjack (JACK2) keeps one server's shared graph per process: a client on a second
    server while a client with a process callback runs on the first crashes the process.
    Rigs that must run side by side run in separate processes (pytest -n, two commands).
    """
    with _lock:
        others = sorted(name for name, n in _bound.items() if n > 0 and name != server)
        if others:
            raise RigUnavailable(
                f"this process already has JACK clients on server {others[0]!r}; libjack "
                f"serves one server per process, so {server!r} cannot be used here too: close "
                "the other rig first, or run the rigs in separate processes (e.g. pytest -n)"
            )
        _bound[server] = _bound.get(server, 0) + 1


def release(server: str) -> None:
    """Undo one `claim`."""
    with _lock:
        n = _bound.get(server, 0) - 1
        if n > 0:
            _bound[server] = n
        else:
            _bound.pop(server, None)


def stop_all() -> None:
    """Stop every server this process started and has not stopped yet."""
    with _lock:
        servers = list(_live.values())
    for server in servers:
        server.stop()


def live_servers() -> list[JackServer]:
    """Servers started by this process that are still running."""
    with _lock:
        return list(_live.values())


def running_jackd(prefix: str = NAME_PREFIX) -> list[tuple[int, str]]:
    """(pid, server name) of every jackd on this machine whose name starts with `prefix`
    (for orphan checks). Zombies, already dead, are not counted."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z" or not argv or not argv[0].endswith(b"jackd"):
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "-n" in args:
            name = args[args.index("-n") + 1] if args.index("-n") + 1 < len(args) else ""
            if name.startswith(prefix):
                found.append((int(proc.name), name))
    return found


class JackServer:
    """A jackd with the dummy driver, owned by this process.

    name: server name (default: unique ``tympan-PID-N``). sample_rate_hz: Hz. period:
    frames per period (-p). The log (jackd's stdout and stderr) is kept in a temp file and
    quoted when the server fails to start.

    The graph is asynchronous, like a sound card's: the dummy driver's timer never waits
    for a client. (``jackd -S`` was tried: it waits for a slow DUT too, and the DUT's
    slowness then vanishes from what the ear hears; docs/lab-rig.md.)
    """

    def __init__(
        self, name: str | None = None, sample_rate_hz: int = 48000, period: int = 1024
    ) -> None:
        self.name = name or f"{NAME_PREFIX}{os.getpid()}-{next(_counter)}"
        self.sample_rate_hz = sample_rate_hz
        self.period = period
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def pid(self) -> int | None:
        """jackd's PID while it runs."""
        return self.process.pid if self.process else None

    def command(self) -> list[str]:
        """The jackd command line."""
        exe = shutil.which("jackd")
        if exe is None:
            raise RigUnavailable(
                "jackd not found on PATH: the loopback rig needs the JACK server; install the "
                "Debian package jackd2 (apt-get install jackd2; scripts/setup.sh does this)"
            )
        return [exe, "-n", self.name, "-d", "dummy", "-r", str(self.sample_rate_hz),
                "-p", str(self.period)]  # fmt: skip

    def start(self, timeout_s: float = 15.0) -> JackServer:
        """Start jackd and wait until a client can connect (RigUnavailable otherwise)."""
        cmd = self.command()
        claim(self.name)  # refuse early (before jackd starts) if the process is bound elsewhere
        release(self.name)
        _install_hooks()
        fd, log = tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log")
        self.log_path = Path(log)
        env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1")
        with os.fdopen(fd, "wb") as out:
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_pdeathsig,
            )
        with _lock:
            _live[self.process.pid] = self
        try:
            wait_for_server(self.name, timeout_s, self.process)
        except BaseException:
            tail = self.log_tail()
            self.stop()
            why = f"jackd -n {self.name} did not come up within {timeout_s:g} s"
            if "Too many servers already active" in tail:
                why += f": {REGISTRY_FULL}"
            raise RigUnavailable(f"{why}; its log ({self.log_path}):\n{tail}") from None
        return self

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of jackd's output."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, wait for exit (SIGKILL after `timeout_s`); idempotent."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        with _lock:
            _live.pop(proc.pid, None)
        self.process = None
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def __enter__(self) -> JackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_server(
    name: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll until a JACK client can connect to server `name` (TimeoutError otherwise)."""
    jack = jack_module()
    deadline = time.monotonic() + timeout_s
    claim(name)
    try:
        _probe(jack, name, deadline, process)
    finally:
        release(name)


def _probe(jack, name: str, deadline: float, process: subprocess.Popen[bytes] | None) -> None:  # noqa: ANN001
    with _quiet_jack(jack):
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"jackd exited with status {process.returncode}")
            try:
                client = jack.Client("tympan-probe", servername=name, no_start_server=True)
            except jack.JackOpenError:
                if time.monotonic() > deadline:
                    raise TimeoutError(name) from None
                time.sleep(0.05)
                continue
            client.close()
            return


_probing = threading.Event()
_message_hooks_installed = False


def _jack_message(message: str) -> None:
    """libjack's error/info messages: dropped while probing for a server, else to stderr."""
    if not _probing.is_set():
        print(message, file=sys.stderr)


@contextlib.contextmanager
def _quiet_jack(jack):  # noqa: ANN001
    """Silence libjack's "cannot connect" chatter while probing.

    The message functions are installed once and never reset: JACK-Client's "restore the
    default" (None) hands libjack a NULL function pointer, which it then calls on the next
    error (a segfault).
    """
    global _message_hooks_installed
    if not _message_hooks_installed:
        jack.set_error_function(_jack_message)
        jack.set_info_function(_jack_message)
        _message_hooks_installed = True
    _probing.set()
    try:
        yield
    finally:
        _probing.clear()
