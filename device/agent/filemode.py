"""File mode: run the agent on a WAV file in real time and write what it said.

The input is played to the agent in real time, one frame (``pipeline.frame_ms``) at a time,
by a clock thread acting as a duplex sound card: each period it hands over the input frame
that has just been "recorded" and takes one output frame, which plays during the next period
(one period of output latency, like a real device). After the input ends the clock keeps
feeding silence until the agent has finished speaking.

The output WAV has the input's sample rate and starts at the input's first sample, silence
included; it is at least as long as the input. The events file has one JSON object per line;
``session_start`` marks the first input frame, and ``*_s`` fields (``input_s``, ``output_s``)
are positions in the files' timeline, in seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from device.agent.audio import resample
from device.agent.config import AgentConfig
from device.agent.engines import ASR_RATE_HZ, Engines, load_engines
from device.agent.errors import ConfigError
from device.agent.events import JsonlFileSink, TelemetryEvent
from device.agent.host import AgentHost, RealTimeClock

MANIFEST = Path(__file__).resolve().parents[2] / "audio_corpus" / "manifest.json"
IDLE_TAIL_S = 0.4
"""How long the agent must stay idle after the input ends before the run stops, s."""
MAX_TAIL_S = 30.0
"""Longest the run goes on after the input ends, s."""


@dataclass(frozen=True)
class FileRunResult:
    """What `run_file` produced: ``output`` float32 at ``sample_rate_hz``, the ``events``."""

    output: np.ndarray
    sample_rate_hz: int
    events: list[TelemetryEvent]
    input_duration_s: float


def read_input(path: Path | str) -> tuple[np.ndarray, int]:
    """Read a WAV/FLAC as float32 mono (channels averaged).

    Raises:
        ConfigError: missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--input {path}: file not found (expected a WAV file)")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, sf.LibsndfileError) as exc:
        raise ConfigError(f"--input {path}: not a readable audio file ({exc})") from None
    if data.shape[0] == 0:
        raise ConfigError(f"--input {path}: the file holds no samples")
    return np.ascontiguousarray(data.mean(axis=1), dtype=np.float32), int(rate)


def corpus_transcript(path: Path, manifest: Path = MANIFEST) -> str | None:
    """The transcript of ``path`` if it is a corpus file (matched by SHA-256), else None."""
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    for entry in doc.get("utterances", []):
        if isinstance(entry, dict) and entry.get("sha256") == digest:
            text = entry.get("transcript")
            return text if isinstance(text, str) else None
    return None


def with_oracle_transcripts(config: AgentConfig, input_path: Path) -> AgentConfig:
    """Fill the oracle ASR's script from the corpus manifest when it is empty."""
    if config.asr.engine != "oracle" or config.asr.oracle_transcripts:
        return config
    text = corpus_transcript(input_path)
    if text is None:
        raise ConfigError(
            f"--input {input_path}: the oracle ASR needs the transcript; the file is not in "
            "the corpus manifest, so set asr.oracle_transcripts in the config"
        )
    return config.replace(asr=dataclasses.replace(config.asr, oracle_transcripts=(text,)))


def run_file(
    input_path: Path | str,
    output_path: Path | str | None = None,
    events_path: Path | str | None = None,
    config: AgentConfig | None = None,
    engines: Engines | None = None,
) -> FileRunResult:
    """Run the agent on ``input_path`` in real time; write the reply WAV and events JSONL.

    Args:
        input_path: the user's audio (any rate; mono or mixed down).
        output_path: where to write the agent's output (input's rate, PCM 16), or None.
        events_path: where to write events (JSON lines), or None.
        config: agent configuration; an oracle ASR without transcripts gets the corpus one.
        engines: loaded engines to reuse (tests); default loads the config's.

    Raises:
        ConfigError: bad input file or configuration.
    """
    input_path = Path(input_path)
    x, rate = read_input(input_path)
    cfg = with_oracle_transcripts(config or AgentConfig(), input_path)
    if engines is None:
        engines = load_engines(cfg)
    x16 = resample(x, rate, ASR_RATE_HZ)
    frame_s = cfg.pipeline.frame_ms / 1000.0
    n_in = ASR_RATE_HZ * cfg.pipeline.frame_ms // 1000
    n_out = rate * cfg.pipeline.frame_ms // 1000
    duration_s = len(x) / rate
    sink = JsonlFileSink(events_path) if events_path is not None else None
    out: list[np.ndarray] = [np.zeros(n_out, np.float32)]  # one period of output latency
    host = AgentHost(cfg, engines=engines, sink=sink, output_rate_hz=rate)
    try:
        host.start()
        clock = RealTimeClock(frame_s)
        idle_for = 0.0
        k = 0
        while True:
            clock.wait_next()
            block = x16[k * n_in : (k + 1) * n_in]
            if len(block) < n_in:
                block = np.concatenate([block, np.zeros(n_in - len(block), np.float32)])
            host.push(block)
            out.append(host.pull(n_out))
            k += 1
            elapsed = k * frame_s
            if elapsed < duration_s:
                continue
            idle_for = idle_for + frame_s if host.idle() else 0.0
            if idle_for >= IDLE_TAIL_S or elapsed > duration_s + MAX_TAIL_S:
                break
    finally:
        try:
            host.close()
        finally:
            if sink is not None:
                sink.close()
    y = np.concatenate(out)
    if len(y) < len(x):
        y = np.concatenate([y, np.zeros(len(x) - len(y), np.float32)])
    if output_path is not None:
        sf.write(str(output_path), np.clip(y, -1.0, 1.0), rate, subtype="PCM_16")
    return FileRunResult(y, rate, host.events.events(), duration_s)
