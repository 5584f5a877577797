"""Engines behind small Protocols, chosen by name in the config.

| kind | Protocol | registered names |
|---|---|---|
| VAD | `Vad` | ``silero`` (default), ``webrtc`` |
| ASR | `Asr` | ``whisper`` (default), ``oracle`` (known transcripts, for tests) |
| LLM | `Llm` | ``scripted`` (default, deterministic), ``llama`` (optional ``[llm]`` extra) |
| TTS | `Tts` | ``piper`` (default), ``espeak`` (light fallback) |

Engines are synchronous and may be slow: the pipeline always calls them from worker threads,
never on its event loop. Audio arrays are float32 mono in [-1, 1]; VAD and ASR take 16 kHz.
`load_engines` builds the four from a config; an `Engines` bundle can be reused by agents that
run one after another (each agent resets them), not by agents running at the same time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from device.agent.config import AgentConfig
from device.agent.engines.base import ASR_RATE_HZ, Asr, Llm, Message, Tts, Vad
from device.agent.errors import EngineError

__all__ = [
    "ASR_RATE_HZ",
    "FACTORIES",
    "Asr",
    "Engines",
    "Llm",
    "Message",
    "Tts",
    "Vad",
    "load_engines",
    "warm_up",
]


@dataclass
class Engines:
    """The four engines an agent runs on."""

    vad: Vad
    asr: Asr
    llm: Llm
    tts: Tts

    def reset(self) -> None:
        """Clear per-conversation state (VAD state, oracle position, ...)."""
        self.vad.reset()
        self.asr.reset()
        self.llm.reset()


def _vad(cfg: AgentConfig) -> Vad:
    from device.agent.engines import vad

    return {"silero": vad.SileroVad, "webrtc": vad.WebrtcVad}[cfg.vad.engine](cfg.vad)


def _asr(cfg: AgentConfig) -> Asr:
    from device.agent.engines import asr

    return {"whisper": asr.WhisperAsr, "oracle": asr.OracleAsr}[cfg.asr.engine](cfg.asr)


def _llm(cfg: AgentConfig) -> Llm:
    from device.agent.engines import llm

    return {"scripted": llm.ScriptedLlm, "llama": llm.LlamaLlm}[cfg.llm.engine](cfg.llm)


def _tts(cfg: AgentConfig) -> Tts:
    from device.agent.engines import tts

    return {"piper": tts.PiperTts, "espeak": tts.EspeakTts}[cfg.tts.engine](cfg.tts)


FACTORIES: dict[str, Callable[[AgentConfig], object]] = {
    "vad": _vad,
    "asr": _asr,
    "llm": _llm,
    "tts": _tts,
}


def load_engines(cfg: AgentConfig) -> Engines:
    """Load the engines named in ``cfg`` (takes ~2 s: piper's model is the slow one).

    Raises:
        EngineError: a package or model file is missing.
    """
    try:
        engines = Engines(vad=_vad(cfg), asr=_asr(cfg), llm=_llm(cfg), tts=_tts(cfg))
    except ImportError as exc:
        raise EngineError(
            f"cannot load an engine: {exc} (run `bash scripts/setup.sh`; the llama LLM needs "
            "`pip install -e '.[llm]'`)"
        ) from exc
    warm_up(engines)
    return engines


def warm_up(engines: Engines) -> None:
    """Run each engine once on a dummy input: the first onnxruntime/CTranslate2 call is
    several times slower than the next ones, and must not land on the first turn."""
    engines.vad.prob(np.zeros(engines.vad.frame_samples, np.float32))
    engines.vad.reset()
    if not hasattr(engines.asr, "set_transcripts"):  # the oracle has nothing to warm
        engines.asr.transcribe(np.zeros(ASR_RATE_HZ // 2, np.float32), True)
    engines.tts.synthesize("Hello.")
    llm_warm_up = getattr(engines.llm, "warm_up", None)
    if llm_warm_up is not None:
        llm_warm_up()
