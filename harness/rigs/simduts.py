"""The sim rig's own DUTs (`SimDut`: anything with ``push(samples)`` and ``pull(n)``): a
scripted one that replies a set time after it hears the user stop (or at a set time), one
that passes the mouth straight back, and a silent one; `SIM_DUTS` names them for a
profile's ``[sim] dut``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from harness.rigs.base import ProfileError
from harness.rigs.profile import RigProfile
from harness.signal.resample import resample


class SimDut(Protocol):
    """A DUT the sim can drive: microphone samples in, speaker samples out, same rate.

    Optional attribute ``realtime`` (default True): False lets the sim run faster than
    real time.
    """

    def push(self, samples: np.ndarray) -> None:
        """Microphone samples, float mono, any block length."""
        ...

    def pull(self, n: int) -> np.ndarray:
        """The next `n` speaker samples (zeros when quiet)."""
        ...


# ------------------------------------------------------------------------------------------
# Scripted DUTs (registered backends: a profile names them in [sim] dut)
# ------------------------------------------------------------------------------------------


class ScriptedDut:
    """A DUT with exactly known timing, for tests and calibration.

    It listens for speech with a sample threshold: speech ends at the last mic sample above
    `threshold_dbfs` once `hangover_ms` of quiet followed at least `min_speech_ms` of speech.
    It then plays `reply` starting exactly `delay_ms` after that speech end (trigger
    "speech_end"), or at `at_s` of its own clock (trigger "fixed"). A mic sample above the
    threshold while it replies is a barge-in: it stops `stop_after_ms` later (never, if
    negative) and listens again. Speech resuming before the reply starts cancels the reply.

    events: (name, DUT sample index) in order: "speech_end", "reply_start" (decided: the
    sample where the reply starts), "barge_in", "reply_stop", "reply_end"; "resumed" and
    "reply_cancelled" when the user went on before the reply started. The DUT's sample
    clock counts pushed samples. `real_time`: the sim paces it to the wall clock, as it
    does a real DUT (then the host's stalls touch it as they would a real DUT in this
    process); by default it runs as fast as the CPU allows.
    """

    realtime = False

    def __init__(
        self,
        reply: np.ndarray,
        sample_rate_hz: int,
        *,
        trigger: str = "speech_end",
        delay_ms: float = 600.0,
        at_s: float = 1.0,
        threshold_dbfs: float = -45.0,
        hangover_ms: float = 300.0,
        min_speech_ms: float = 100.0,
        stop_after_ms: float = -1.0,
        real_time: bool = False,
    ) -> None:
        fs = sample_rate_hz
        self.realtime = bool(real_time)
        self.sample_rate_hz = fs
        self.reply = np.asarray(reply, dtype=np.float32)
        self.trigger = trigger
        self.delay = int(round(delay_ms * fs / 1000))
        self.threshold = 10 ** (threshold_dbfs / 20)
        self.hangover = max(1, int(round(hangover_ms * fs / 1000)))
        self.min_speech = int(round(min_speech_ms * fs / 1000))
        self.stop_after = None if stop_after_ms < 0 else int(round(stop_after_ms * fs / 1000))
        self.events: list[tuple[str, int]] = []
        self._t_in = 0
        self._t_out = 0
        self._speech_start: int | None = None
        self._last_loud = -1
        self._reply_at: int | None = int(round(at_s * fs)) if trigger == "fixed" else None
        self._reply_stop: int | None = None
        self._barged = False
        if self._reply_at is not None:
            self.events.append(("reply_start", self._reply_at))

    @property
    def clock(self) -> int:
        """The DUT's sample clock now: how many mic samples it has heard. Its event indices
        count on this clock; a sim session's frame k reaches it as sample ``clock + k`` of
        the clock read just before the session started (without clock drift)."""
        return self._t_in

    def _reply_end(self) -> int:
        assert self._reply_at is not None
        end = self._reply_at + len(self.reply)
        return end if self._reply_stop is None else min(end, self._reply_stop)

    def push(self, samples: np.ndarray) -> None:
        """Listen to one block of mic samples."""
        x = np.asarray(samples, dtype=np.float64).reshape(-1)
        t0, t1 = self._t_in, self._t_in + len(x)
        loud = np.flatnonzero(np.abs(x) > self.threshold) + t0
        self._t_in = t1
        replying = self._reply_at is not None
        if replying and loud.size:
            in_reply = loud[(loud >= self._reply_at) & (loud < self._reply_end())]
            if in_reply.size and not self._barged:
                b = int(in_reply[0])
                self._barged = True
                self.events.append(("barge_in", b))
                if self.stop_after is not None:
                    self._reply_stop = b + self.stop_after
                    self.events.append(("reply_stop", self._reply_stop))
            pending = loud[loud < self._reply_at]
            if pending.size and self.trigger == "speech_end" and self._reply_at > t0:
                # The user went on speaking before the reply started: not the end after all.
                self.events.append(("resumed", int(pending[0])))
                self.events.append(("reply_cancelled", self._reply_at))
                self._reply_at = None
                replying = False
        if replying:
            # Retired only once its last sample has been pulled (pull follows push, block by
            # block): retiring at t1 silenced the rest of the block the reply ends in.
            if self._reply_end() <= t0 and self.trigger == "speech_end":
                self.events.append(("reply_end", self._reply_end()))
                self._reply_at, self._reply_stop, self._barged = None, None, False
                self._speech_start, self._last_loud = None, -1
                loud = loud[loud >= t1]  # what was heard during the reply was not a question
            else:
                return
        if self.trigger != "speech_end":
            return
        if loud.size:
            if self._speech_start is None:
                self._speech_start = int(loud[0])
            self._last_loud = int(loud[-1])
        if (
            self._speech_start is not None
            and t1 - 1 - self._last_loud >= self.hangover
            and self._last_loud + 1 - self._speech_start >= self.min_speech
        ):
            end = self._last_loud + 1
            self.events.append(("speech_end", end))
            self._reply_at = max(end + self.delay, self._t_out)
            self.events.append(("reply_start", self._reply_at))
            self._speech_start = None

    def pull(self, n: int) -> np.ndarray:
        """The next `n` speaker samples."""
        out = np.zeros(n, dtype=np.float32)
        t0 = self._t_out
        self._t_out += n
        if self._reply_at is None:
            return out
        a, b = max(t0, self._reply_at), min(t0 + n, self._reply_end())
        if b > a:
            out[a - t0 : b - t0] = self.reply[a - self._reply_at : b - self._reply_at]
        return out

    def first(self, name: str) -> int | None:
        """DUT sample index of the first event called `name`, or None ("reply_start":
        the first reply that was not cancelled)."""
        cancelled = {t for e, t in self.events if e == "reply_cancelled"}
        return next(
            (
                t
                for e, t in self.events
                if e == name and not (e == "reply_start" and t in cancelled)
            ),
            None,
        )


class PassthroughDut:
    """Speaker = microphone delayed by `delay_samples` (plus the sim's one-block DUT period):
    lets calibration measure mouth -> ear through the DUT."""

    realtime = False

    def __init__(self, delay_samples: int = 0) -> None:
        self._fifo = np.zeros(int(delay_samples), dtype=np.float32)

    def push(self, samples: np.ndarray) -> None:
        """Take mic samples."""
        self._fifo = np.concatenate([self._fifo, np.asarray(samples, dtype=np.float32)])

    def pull(self, n: int) -> np.ndarray:
        """The delayed mic samples."""
        out = np.zeros(n, dtype=np.float32)
        k = min(n, len(self._fifo))
        out[:k] = self._fifo[:k]
        self._fifo = self._fifo[k:]
        return out


class SilentDut:
    """Hears everything, says nothing (measures the room and noise alone)."""

    realtime = False

    def push(self, samples: np.ndarray) -> None:
        """Ignore mic samples."""

    def pull(self, n: int) -> np.ndarray:
        """Silence."""
        return np.zeros(n, dtype=np.float32)


def load_reply(spec: str, sample_rate_hz: int, source: str = "profile") -> np.ndarray:
    """Reply audio for a scripted DUT: "corpus:ID" (cut to its speech labels) or
    "tone:HZ:SECONDS". Returns float32 mono at `sample_rate_hz`."""
    kind, _, rest = spec.partition(":")
    if kind == "corpus":
        from harness.corpus import Corpus
        from harness.errors import CorpusError

        try:
            u = Corpus.load().by_id(rest)
        except CorpusError as err:
            raise ProfileError(f"{source}: sim.scripted.reply = {spec!r}: {err}") from err
        x = u.load()
        if u.is_speech:
            x = x[int(u.speech_start_s * u.sample_rate_hz) : int(u.speech_end_s * u.sample_rate_hz)]
        return resample(x, u.sample_rate_hz, sample_rate_hz).astype(np.float32)
    if kind == "tone":
        try:
            hz, seconds = (float(v) for v in rest.split(":"))
        except ValueError:
            raise ProfileError(
                f"{source}: sim.scripted.reply = {spec!r}; expected tone:HZ:SECONDS"
            ) from None
        t = np.arange(int(seconds * sample_rate_hz)) / sample_rate_hz
        return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    raise ProfileError(
        f"{source}: sim.scripted.reply = {spec!r}; expected corpus:ID or tone:HZ:SECONDS"
    )


def _scripted_from(profile: RigProfile) -> ScriptedDut:
    sc = profile.table("sim.scripted")
    fs = profile.sample_rate_hz
    return ScriptedDut(
        load_reply(sc["reply"], fs, profile.source),
        fs,
        trigger=sc["trigger"],
        delay_ms=sc["delay_ms"],
        at_s=sc["at_s"],
        threshold_dbfs=sc["threshold_dbfs"],
        hangover_ms=sc["hangover_ms"],
        min_speech_ms=sc["min_speech_ms"],
        stop_after_ms=sc["stop_after_ms"],
        real_time=sc["real_time"],
    )


SIM_DUTS: dict[str, Callable[[RigProfile], SimDut]] = {
    "scripted": _scripted_from,
    "passthrough": lambda p: PassthroughDut(p.table("sim.scripted")["passthrough_delay_samples"]),
    "silent": lambda p: SilentDut(),
}
"""DUT backends a sim profile can name in ``[sim] dut``."""
