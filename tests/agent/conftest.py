"""Shared engines for the agent tests: loading piper and whisper takes seconds, so each set
is loaded once per session and reset by every agent that uses it."""

from __future__ import annotations

import pytest

from device.agent.config import AgentConfig
from device.agent.engines import Engines, load_engines

ORACLE = AgentConfig().replace(asr={"engine": "oracle"})
"""Silero VAD, oracle ASR, scripted LLM, piper TTS: real audio, known transcripts."""


@pytest.fixture(scope="session")
def oracle_engines() -> Engines:
    return load_engines(ORACLE)


@pytest.fixture(scope="session")
def real_engines() -> Engines:
    """The defaults: silero, whisper tiny.en (int8), scripted LLM, piper."""
    return load_engines(AgentConfig())
