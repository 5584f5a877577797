"""A LiveKit Agents voice agent, fully offline, for tympan to test through its console mode.

Built the way LiveKit's examples build one (examples/voice_agents/basic_agent.py): an
``AgentServer``, a prewarm that loads the Silero VAD, an ``rtc_session`` entrypoint that
starts an ``AgentSession``, and ``cli.run_app``. The engines are local (local_engines.py):
faster-whisper tiny.en, a scripted LLM (150 ms to the first token), piper with the joe voice.

    python examples/livekit_agent/agent.py console [--jack-name NAME] [--turn-detection eot|vad]
                                                   [LIVEKIT CONSOLE OPTIONS]
    python examples/livekit_agent/agent.py jack    [--jack-name NAME] [--turn-detection eot|vad]

``console`` is LiveKit's own console mode (livekit-agents 1.8: ``cli/_legacy.py``): no
LiveKit server, no room, no network; it plays and records through sounddevice (PortAudio).
With Debian's libportaudio2 PortAudio has a JACK host API, so on a machine whose only audio
is a JACK server (tympan's loopback rig) the console's default device is that server and
the agent is a JACK client. Three things this file does for that, none of them inside
LiveKit:

- names the JACK client (``--jack-name``, default ``livekit-agent``) with PortAudio's
  ``PaJack_SetClientName`` before PortAudio initialises; otherwise it is "PortAudio";
- takes the JACK server from ``TYMPAN_JACK_SERVER`` / ``JACK_DEFAULT_SERVER``;
- points sounddevice's default device at the JACK host API's when a JACK server answers
  (LiveKit's ``--input-device`` / ``--output-device`` still win).

LiveKit's console opens its streams at 24000 Hz (hard-coded) and PortAudio's JACK host API
does not resample: the JACK server must run at 24 kHz (``loopback-24k.toml`` here). On a
48 kHz server the console cannot open its streams; this file says so before LiveKit fails
(exit status 2; LiveKit itself shuts down and exits with status 0).

``jack`` is the closest thing on a 48 kHz server (tympan's ``--rig loopback``): the same
``AgentSession``, started without LiveKit's CLI or worker, its audio through LiveKit's
``io.AudioInput`` / ``io.AudioOutput`` extension points on one sounddevice duplex stream at
the device's rate (jack_io.py says what differs from the console). Ends on SIGTERM/SIGINT.

Offline settings (the only departures from LiveKit's defaults):

- turn detection: LiveKit's own end-of-turn model ``inference.TurnDetector(version=
  "v1-mini")``, which ships inside the ``livekit-local-inference`` wheel (no download). Left
  to itself, console (dev) mode picks the cloud ``v1`` model and falls back to ``v1-mini``
  with a warning when no LiveKit API key is set. ``--turn-detection vad`` uses the Silero
  VAD's end of speech alone (LiveKit's ``"vad"`` mode).
- interruptions by the VAD (``"mode": "vad"``): the default in dev/console mode is LiveKit
  Cloud's adaptive interruption detector (a websocket to LiveKit's inference gateway).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parents[1]
for _path in (_HERE, _REPO):  # local_engines; device.agent.engines.llm (the reply table)
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

CONSOLE_RATE_HZ = 24000  # livekit/agents/cli/_legacy.py: SAMPLE_RATE, sd.*Stream(samplerate=)
_KEEP: list[object] = []  # PaJack_SetClientName keeps the pointer, not a copy


def _take_option(argv: list[str], name: str, default: str) -> tuple[str, list[str]]:
    """``--name VALUE`` or ``--name=VALUE`` out of argv (LiveKit's CLI would refuse it)."""
    out, value, k = [], default, 0
    while k < len(argv):
        arg = argv[k]
        if arg == name and k + 1 < len(argv):
            value, k = argv[k + 1], k + 2
            continue
        if arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
        else:
            out.append(arg)
        k += 1
    return value, out


def name_jack_client(name: str) -> str | None:
    """Call PaJack_SetClientName on the libportaudio sounddevice will load (before it does).

    Returns the library's name, or None when there is none or it has no JACK host API.
    """
    server = os.environ.get("TYMPAN_JACK_SERVER") or os.environ.get("JACK_DEFAULT_SERVER")
    if server:
        os.environ["JACK_DEFAULT_SERVER"] = server
    if "sounddevice" in sys.modules:
        # PortAudio is up already: tympan's launcher (``--dut livekit:...``) named the client
        # before anything of the agent ran; anyone else named it too late to matter
        return sys.modules["sounddevice"]._libname
    libname = ctypes.util.find_library("portaudio")  # what sounddevice loads on Linux
    if libname is None:
        return None
    lib = ctypes.CDLL(libname)
    if not hasattr(lib, "PaJack_SetClientName"):
        return None
    buf = ctypes.create_string_buffer(name.encode())
    _KEEP.append(buf)
    lib.PaJack_SetClientName.argtypes = [ctypes.c_char_p]
    lib.PaJack_SetClientName.restype = ctypes.c_int
    if lib.PaJack_SetClientName(buf) != 0:
        return None
    return libname


def use_jack_device(libname: str | None, mode: str) -> tuple[str, bool]:
    """Make the JACK host API's device sounddevice's default when a JACK server answers.

    Returns what was found, and False when LiveKit's console could not open that device
    (``mode`` "console"; the ``jack`` mode opens it at its own rate).
    """
    import sounddevice as sd

    if libname is not None and sd._libname != libname:
        return f"sounddevice loaded {sd._libname}, not {libname}: the JACK client is unnamed", True
    apis = {api["name"]: api for api in sd.query_hostapis()}
    jack = apis.get("JACK Audio Connection Kit")
    if jack is None or jack["default_input_device"] < 0:
        return f"no JACK server answered (host APIs: {', '.join(apis)})", True
    device = (jack["default_input_device"], jack["default_output_device"])
    sd.default.device = device
    info = sd.query_devices(device[0])
    rate = int(info["default_samplerate"])
    note = f"JACK device {info['name']!r} at {rate} Hz, client {JACK_NAME!r}"
    if rate == CONSOLE_RATE_HZ or mode != "console":
        return note, True
    return (
        f"{note}: LiveKit's console opens its streams at {CONSOLE_RATE_HZ} Hz and PortAudio's "
        "JACK host API does not resample ('Invalid sample rate [PaErrorCode -9997]'); run "
        f"JACK at {CONSOLE_RATE_HZ} Hz (tympan: --rig examples/livekit_agent/loopback-24k.toml)",
        False,
    )


JACK_NAME, _ARGV = _take_option(sys.argv[1:], "--jack-name", "livekit-agent")
TURN_DETECTION, _ARGV = _take_option(_ARGV, "--turn-detection", "eot")
if TURN_DETECTION not in ("eot", "vad"):
    sys.exit(f"--turn-detection {TURN_DETECTION!r}: expected eot or vad")
_LIB = name_jack_client(JACK_NAME)
MODE = _ARGV[0] if _ARGV else ""
if MODE in ("console", "jack") and not any(a.startswith("--list-devices") for a in _ARGV):
    _note, _usable = use_jack_device(_LIB, MODE)
    print(f"audio: {_note}", flush=True)
    if not _usable:
        # LiveKit would open the streams, fail, shut the worker down and exit with status 0
        print(f"{sys.argv[0]}: cannot run the console here: {_note}", file=sys.stderr)
        sys.exit(2)
sys.argv[1:] = _ARGV

from livekit.agents import (  # noqa: E402  (after the JACK client is named)
    Agent,
    AgentServer,
    AgentSession,
    JobContext,
    JobProcess,
    MetricsCollectedEvent,
    __version__,
    cli,
    inference,
    metrics,
)
from livekit.plugins import silero  # noqa: E402
from local_engines import PiperTTS, ScriptedLLM, WhisperSTT  # noqa: E402

logger = logging.getLogger("tympan-livekit-agent")


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(
            instructions="You are a voice assistant. Answer in one or two short sentences."
        )


server = AgentServer()


def prewarm(proc: JobProcess) -> None:
    proc.userdata["vad"] = silero.VAD.load()
    proc.userdata["stt"] = WhisperSTT()
    proc.userdata["tts"] = PiperTTS()


server.setup_fnc = prewarm


def build_session(vad: silero.VAD, stt: WhisperSTT, tts: PiperTTS) -> AgentSession:
    session: AgentSession = AgentSession(
        vad=vad,
        stt=stt,
        llm=ScriptedLLM(),
        tts=tts,
        turn_handling={
            "turn_detection": (
                inference.TurnDetector(version="v1-mini") if TURN_DETECTION == "eot" else "vad"
            ),
            "interruption": {"enabled": True, "mode": "vad"},
        },
    )

    @session.on("metrics_collected")
    def _on_metrics_collected(ev: MetricsCollectedEvent) -> None:
        metrics.log_metrics(ev.metrics)
        # one line a metric, for comparing LiveKit's own figures with what tympan hears
        m = ev.metrics
        if getattr(m, "type", "") == "vad_metrics":
            return  # one a second, with nothing to compare
        keep = ("ttft", "ttfb", "duration", "end_of_utterance_delay", "transcription_delay")
        fields = {k: round(v, 4) for k, v in m.model_dump().items() if k in keep and v}
        t = getattr(m, "timestamp", 0.0)
        print(f"lk-metrics: {getattr(m, 'type', '?')} {json.dumps(fields)} t={t:.3f}", flush=True)

    return session


def ready_line(mode: str, stt: WhisperSTT, extra: str = "") -> str:
    return (
        f"ready: livekit-agents {__version__} {mode}, JACK client {JACK_NAME!r} on server "
        f"{os.environ.get('JACK_DEFAULT_SERVER', 'default')!r}{extra}, stt faster-whisper "
        f"tiny.en ({stt.model_path}), tts piper joe, vad silero, turn detection {TURN_DETECTION}"
    )


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    stt = ctx.proc.userdata["stt"]
    session = build_session(ctx.proc.userdata["vad"], stt, ctx.proc.userdata["tts"])
    await session.start(agent=Assistant(), room=ctx.room)
    print(ready_line("console", stt), flush=True)


async def run_jack() -> None:
    """The same session without LiveKit's CLI: audio through jack_io's AudioInput/Output."""
    from jack_io import DuplexJackStream

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    vad, stt, tts = silero.VAD.load(), WhisperSTT(), PiperTTS()
    stream = DuplexJackStream(loop)
    session = build_session(vad, stt, tts)
    session.input.audio = stream.input
    session.output.audio = stream.output
    await session.start(agent=Assistant())
    stream.start()
    extra = f" at {stream.rate} Hz, block {stream.blocksize}, latency {stream.latency}"
    print(ready_line("jack (AudioInput/AudioOutput)", stt, extra), flush=True)
    try:
        await stop.wait()
    finally:
        t0 = time.monotonic()
        await session.aclose()
        t1 = time.monotonic()
        stream.close()
        print(
            f"stopped: session closed in {t1 - t0:.2f} s, stream in {time.monotonic() - t1:.2f} s",
            flush=True,
        )


if __name__ == "__main__":
    if MODE == "jack":
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
        asyncio.run(run_jack())
    else:
        cli.run_app(server)
