"""tympan's reference streaming voice agent: VAD → ASR → LLM → clause buffer → TTS, with
barge-in, telemetry and fault knobs. It never imports `harness`.

Map:

- `config`     `AgentConfig` (frozen, loaded from TOML/JSON), `FAULTS`
- `events`     `TelemetryEvent`, `Telemetry`, sinks (JSONL file, callback, memory)
- `chunker`    `ClauseChunker`: LLM tokens → speakable chunks
- `engines`    `Vad`/`Asr`/`Llm`/`Tts` Protocols and the registered engines
- `pipeline`   `Agent`: the asyncio stages, states, barge-in (STOP, DRAIN, RESET)
- `host`       `AgentHost`: the in-process frame interface (push mic frames, pull speaker frames)
- `filemode`   `run_file`: a WAV in, the reply WAV and events out, in real time
- `cli`        ``python -m device.agent --input Q.wav --output REPLY.wav --events E.jsonl``
"""

from device.agent.config import FAULTS, AgentConfig, load_config
from device.agent.errors import AgentError, ConfigError, EngineError

__all__ = ["FAULTS", "AgentConfig", "AgentError", "ConfigError", "EngineError", "load_config"]
