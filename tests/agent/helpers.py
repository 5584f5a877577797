"""Drive an `AgentHost` in real time like a duplex sound card, with an optional barge-in
clip played a set time after the agent starts speaking."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.agent.audio import resample
from device.agent.config import AgentConfig
from device.agent.engines import Engines
from device.agent.events import TelemetryEvent
from device.agent.host import AgentHost, RealTimeClock
from harness.corpus import Corpus

RATE = 48000
FRAME_MS = 20


def corpus_audio(uid: str, rate: int = RATE) -> tuple[np.ndarray, str]:
    """A corpus utterance at ``rate`` and its transcript."""
    u = Corpus.load().by_id(uid)
    return resample(u.load(), u.sample_rate_hz, rate), u.transcript or ""


@dataclass
class Run:
    output: np.ndarray
    events: list[TelemetryEvent]
    rate: int
    barge_in_at_s: float | None
    history: list

    def of(self, name: str, turn: int | None = None) -> list[TelemetryEvent]:
        return [
            e for e in self.events if e.event == name and (turn is None or e.get("turn") == turn)
        ]

    def first(self, name: str, turn: int | None = None) -> TelemetryEvent:
        found = self.of(name, turn)
        assert found, f"no {name} event (turn {turn}); events: {[e.event for e in self.events]}"
        return found[0]

    def rms(self, start_s: float, end_s: float) -> float:
        seg = self.output[int(start_s * self.rate) : int(end_s * self.rate)]
        return float(np.sqrt(np.mean(seg**2))) if len(seg) else 0.0


def converse(
    config: AgentConfig,
    engines: Engines,
    speech: np.ndarray,
    *,
    barge_in: np.ndarray | None = None,
    barge_in_delay_s: float = 0.2,
    max_s: float = 20.0,
    stop_after_playback_s: float | None = None,
    rate: int = RATE,
) -> Run:
    """Play ``speech`` (at ``rate``) to a fresh agent in real time; when the agent starts its
    first reply, play ``barge_in`` ``barge_in_delay_s`` later. Returns output and events."""
    n = rate * FRAME_MS // 1000
    out = [np.zeros(n, np.float32)]
    clip_at: int | None = None
    barge_in_at_s = None
    host = AgentHost(config, engines=engines, input_rate_hz=rate, output_rate_hz=rate)
    with host:
        clock = RealTimeClock(FRAME_MS / 1000)
        idle_for = 0.0
        k = 0
        while k * FRAME_MS / 1000 < max_s:
            clock.wait_next()
            block = np.zeros(n, np.float32)
            seg = speech[k * n : (k + 1) * n]
            block[: len(seg)] += seg
            if clip_at is not None:
                seg = barge_in[max(0, k * n - clip_at) : max(0, (k + 1) * n - clip_at)]
                if k * n >= clip_at:
                    block[: len(seg)] += seg
            host.push(block)
            out.append(host.pull(n))
            k += 1
            starts = host.events.events("playback_start")
            if barge_in is not None and clip_at is None and starts:
                clip_at = int((starts[0].get("output_s") + barge_in_delay_s) * rate)
                clip_at = max(clip_at, (k + 1) * n)
                barge_in_at_s = clip_at / rate
            if (
                stop_after_playback_s is not None
                and starts
                and k * n / rate > starts[0].get("output_s") + stop_after_playback_s
            ):
                break
            done_input = k * n >= len(speech) and (
                barge_in is None or (clip_at is not None and k * n >= clip_at + len(barge_in))
            )
            idle_for = idle_for + FRAME_MS / 1000 if done_input and host.idle() else 0.0
            if idle_for >= 0.4:
                break
        history = list(host.agent.history)
    return Run(np.concatenate(out), host.events.events(), rate, barge_in_at_s, history)


# A speculative turn: the LLM starts before the end of the utterance, nothing plays before it.
# Its first token may come before or after the end is declared (a busy machine delays it):
# that order is not part of the contract, only llm_request -> llm_first_token -> playback.
SPECULATIVE_TURN_ORDER = [
    "vad_speech_start",
    "llm_request",
    "vad_speech_end",
    "asr_final",
    "speculation",
    "playback_start",
    "turn_summary",
    "playback_end",
]
