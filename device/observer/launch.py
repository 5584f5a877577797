"""Start a framework's voice bot as tympan's DUT, unmodified::

    python -m device.observer.launch --framework pipecat [--jack-name NAME] BOT.py [ARGS...]

In this order, before the bot's own code runs:

1. PortAudio's JACK client name (``PaJack_SetClientName``, from ``--jack-name`` or the
   environment's ``TYMPAN_JACK_CLIENT``): PortAudio calls every JACK client "PortAudio"
   otherwise, and the harness wires the DUT by its client's name.
2. The framework's hook: every Pipecat `PipelineTask` gets a `TympanObserver` (unless the
   bot added one); every LiveKit `AgentSession` is observed when it starts.
3. The observer (`device.observer.Observer`), listening on a free localhost port; its URL is
   the first line on stdout, ``tympan-observer: socket://127.0.0.1:PORT``, which the harness
   opens with its device bridge.
4. BOT.py as ``__main__`` with ARGS as its argv (``runpy``), in this process.

Runs in the framework's own virtualenv; the harness puts this package on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import runpy
import sys
from importlib import metadata

from device.observer.core import Observer, set_current

_client_name: ctypes.Array[ctypes.c_char] | None = None
"""PortAudio keeps the pointer it is given: the name must outlive every stream."""


class LaunchError(RuntimeError):
    """The bot cannot be started as asked (the message says why)."""


def set_portaudio_jack_name(name: str) -> None:
    """Name the JACK client PortAudio will open (before PortAudio initialises)."""
    global _client_name
    path = ctypes.util.find_library("portaudio") or "libportaudio.so.2"
    try:
        lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        setter = lib.PaJack_SetClientName
    except (OSError, AttributeError) as exc:
        raise LaunchError(
            f"cannot name the JACK client {name!r}: {path} has no PaJack_SetClientName "
            f"({exc}); Debian's libportaudio2 (with the JACK host API) is needed"
        ) from exc
    setter.argtypes = [ctypes.c_char_p]
    setter.restype = ctypes.c_int
    _client_name = ctypes.create_string_buffer(name.encode())
    code = setter(_client_name)
    if code != 0:
        raise LaunchError(f"PaJack_SetClientName({name!r}) failed with PortAudio error {code}")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def hook_pipecat() -> str:
    """Give every PipelineTask a TympanObserver; returns pipecat-ai's version."""
    from pipecat.pipeline.worker import PipelineWorker

    from device.observer.pipecat import TympanObserver

    original = PipelineWorker.__init__

    def init(self, *args, **kwargs) -> None:  # noqa: ANN001 - Pipecat's own signature
        named = kwargs.get("observers") or []
        original(self, *args, **kwargs)
        if not any(isinstance(o, TympanObserver) for o in named):
            self.add_observer(TympanObserver())

    PipelineWorker.__init__ = init  # type: ignore[method-assign]
    return _version("pipecat-ai")


def use_jack_for_sounddevice() -> None:
    """Make the JACK host API's device sounddevice's default when a JACK server answers
    (LiveKit's console opens the default device; on a host with ALSA too, that would not be
    tympan's loopback)."""
    import sounddevice as sd

    jack = next((a for a in sd.query_hostapis() if a["name"] == "JACK Audio Connection Kit"), None)
    if jack is not None and jack["default_input_device"] >= 0:
        sd.default.device = (jack["default_input_device"], jack["default_output_device"])


def hook_livekit() -> str:
    """Observe every AgentSession when it starts; returns livekit-agents' version."""
    from livekit.agents import AgentSession

    use_jack_for_sounddevice()

    from device.observer.livekit import observe

    original = AgentSession.start

    async def start(self, *args, **kwargs):  # noqa: ANN001 - LiveKit's own signature
        observe(self)
        return await original(self, *args, **kwargs)

    AgentSession.start = start  # type: ignore[method-assign]
    return _version("livekit-agents")


HOOKS = {"pipecat": hook_pipecat, "livekit": hook_livekit}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.observer.launch", description=__doc__)
    parser.add_argument("--framework", required=True, choices=sorted(HOOKS))
    parser.add_argument("--jack-name", default=os.environ.get("TYMPAN_JACK_CLIENT"))
    parser.add_argument("--observer-port", type=int, default=0)
    parser.add_argument("bot", help="the bot's script")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the bot's own arguments")
    opts = parser.parse_args(argv)
    if not os.path.isfile(opts.bot):
        print(f"launch: {opts.bot}: no such file (expected the bot's script)", file=sys.stderr)
        return 2
    try:
        if opts.jack_name:
            set_portaudio_jack_name(opts.jack_name)
        version = HOOKS[opts.framework]()
    except (LaunchError, ImportError) as exc:
        print(f"launch: {exc}", file=sys.stderr)
        return 2
    observer = Observer(opts.framework, version, port=opts.observer_port).open()
    set_current(observer)
    print(f"tympan-observer: {observer.url}", flush=True)
    sys.argv = [opts.bot, *opts.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(opts.bot)))
    try:
        runpy.run_path(opts.bot, run_name="__main__")
    finally:
        observer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
