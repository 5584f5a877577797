"""What the reference agent's stages pass each other, and the little rules about words.

The items on the pipeline's queues (`UserTurn` -> `TextChunk` -> `AudioChunk`, each tagged
with its turn, `EndOfReply` last), the agent's `State`, what the gate collects while the
user speaks (`Utterance`), a speculative reply (`Speculation`), a turn's timestamps
(`TurnTimes`), and `words_key` / `sounds_unfinished` / `trim_leading_silence`.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field

import numpy as np

from device.agent.chunker import Chunk


class State(enum.StrEnum):
    """What the agent is doing."""

    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    THINKING = "thinking"
    SPEAKING = "speaking"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class UserTurn:
    """A transcript for the LLM (``partial`` only with the partial-to-llm fault)."""

    turn: int
    text: str
    partial: bool = False
    speculative: bool = False


@dataclass(frozen=True)
class TextChunk:
    """A chunk of reply text for TTS."""

    turn: int
    chunk: Chunk


@dataclass(frozen=True)
class AudioChunk:
    """Synthesised audio of one chunk, at the output rate."""

    turn: int
    index: int
    samples: np.ndarray


@dataclass(frozen=True)
class EndOfReply:
    """The last item of a reply's data stream."""

    turn: int


@dataclass
class TurnTimes:
    """Monotonic µs stamps of one turn, for the agent's own latency summary."""

    speech_end_us: int | None = None
    speech_end_input_s: float | None = None
    eou_us: int | None = None
    asr_final_us: int | None = None
    llm_request_us: int | None = None
    llm_first_token_us: int | None = None
    first_chunk_us: int | None = None
    tts_first_audio_us: int | None = None
    playback_start_us: int | None = None
    playback_start_output_s: float | None = None
    underruns: int = 0
    summarised: bool = False


@dataclass
class Utterance:
    """What the gate collects while the user speaks."""

    turn: int
    frames: list[np.ndarray] = field(default_factory=list)
    voiced_ms: float = 0.0
    speechlike_ms: float = 0.0  # frames at or above neg_threshold: the barge-in's evidence
    silence_ms: float = 0.0
    since_partial_ms: float = 0.0
    last_voiced_end: int = 0  # input sample index
    last_voiced_us: int = 0
    barge_in_done: bool = False
    candidate: asyncio.Task[str] | None = None  # final decode started at the first silence
    partials: list[str] = field(default_factory=list)

    def audio(self) -> np.ndarray:
        return np.concatenate(self.frames) if self.frames else np.zeros(0, np.float32)


@dataclass
class Speculation:
    """A reply started during the end-of-utterance silence, not yet allowed to play."""

    turn: int
    text: str
    source: str  # "partial" (a stable partial transcript) or "final" (the early final decode)
    started_us: int
    history_len: int  # the history before it, restored if it is cancelled
    committed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def key(self) -> str:
        return words_key(self.text)


def words_key(text: str) -> str:
    """A transcript reduced to its words (lower case, no punctuation), for comparisons."""
    return " ".join("".join(c if c.isalnum() or c == "'" else " " for c in text.lower()).split())


DANGLING_WORDS: frozenset[str] = frozenset(
    {
        *("a", "an", "the", "my", "your", "our", "their", "some"),
        *("for", "to", "of", "in", "at", "with", "from", "about", "into", "than"),
        *("and", "or", "but", "because", "if"),
        *("um", "uh", "er"),
    }
)
"""Words a finished request does not end on (English articles, possessives, prepositions,
conjunctions, fillers): a transcript ending on one is a sentence the user paused in. Words
that can end a request ("on" in "turn it on", "it" in "what time is it") are left out."""


def sounds_unfinished(text: str, max_words: int) -> bool:
    """True when `text` reads like a sentence the user paused in, not a whole request:
    it ends on a `DANGLING_WORDS` word ("Set a timer for"), has at most `max_words` words
    ("Play the song") or trails off ("Remind me to... Remind me too. Rem", tiny.en's usual
    answer to a sentence cut off mid-way). Empty text: False.

    (A repeated phrase is no sign: tiny.en also repeats the end of whole questions, "How
    many ounces are in a pound? How many ouncees are".)"""
    words = words_key(text).split()
    if not words:
        return False
    if words[-1] in DANGLING_WORDS or len(words) <= max_words:
        return True
    return "..." in text or "\u2026" in text


def trim_leading_silence(audio: np.ndarray, rate_hz: int, level: float = 1e-3) -> np.ndarray:
    """Drop the dead air a synthesiser puts before the first sound (piper: 5-45 ms below
    -60 dBFS), keeping 2 ms before it: the reply's first chunk is heard that much sooner."""
    loud = np.flatnonzero(np.abs(audio) > level)
    if not len(loud):
        return audio
    return audio[max(0, int(loud[0]) - rate_hz // 500) :]
