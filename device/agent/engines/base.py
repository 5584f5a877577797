"""The engines' shared types: the conversation message, the four Protocols, the ASR rate.

Apart from the package so that an engine module (`device.agent.engines.llm`, ...) can use
them without importing the package that imports it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

ASR_RATE_HZ = 16000
"""Sample rate of everything the VAD and ASR see, Hz."""


@dataclass(frozen=True)
class Message:
    """One entry of the conversation history: ``role`` is ``user`` or ``assistant``;
    ``interrupted`` marks an assistant reply cut short by a barge-in (``text`` is then what
    was generated before the cut)."""

    role: str
    text: str
    interrupted: bool = False


class Vad(Protocol):
    """Speech probability of fixed-size 16 kHz frames."""

    frame_samples: int
    """Samples per frame the model takes (512 for silero, 480 for webrtc)."""

    def reset(self) -> None: ...

    def prob(self, frame: np.ndarray) -> float:
        """Probability that ``frame`` (shape ``(frame_samples,)``) holds speech, 0..1."""
        ...


class Asr(Protocol):
    """Transcribes the whole utterance so far (16 kHz); called again as it grows."""

    def reset(self) -> None: ...

    def transcribe(self, audio: np.ndarray, final: bool) -> str:
        """Text of ``audio`` (shape ``(n,)``); ``final`` marks the end-of-utterance decode
        (which may still be discarded if the user goes on speaking)."""
        ...

    def end_utterance(self) -> None:
        """The last final transcript was used: the next utterance begins."""
        ...


class Llm(Protocol):
    """Streams a reply to the conversation, token by token (blocking iterator)."""

    def reset(self) -> None: ...

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        """Tokens of the reply to the last user message; may yield nothing (silence)."""
        ...


class Tts(Protocol):
    """Synthesises one chunk of text."""

    sample_rate_hz: int

    def synthesize(self, text: str) -> np.ndarray:
        """Audio of ``text``, float32 shape ``(n,)`` at `sample_rate_hz`."""
        ...
