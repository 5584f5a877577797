"""The self-test's own DUTs, one per rig kind, and the true TTFA each knows to the sample.

Each DUT ends the user's speech by a level threshold and a hangover, and starts its reply
a delay after that end which the self-test draws and hands it out of band (`arm`, on the
in-process object) before the turn. After the turn it says, on its own sample clock, where
it heard the stimulus and where its reply started; `truth` turns that into the true
mouth-to-ear TTFA through the rig's known paths. None of it goes to the analysis, which
gets the capture and the stimulus as on any run.

The TTFA tympan reports runs from the stimulus' labelled speech end as the ref hears it to
the reply's first sound as the ear hears it (the reply's first sample within 50 dB of its
peak, `harness.signal.resample.first_sound`: the same truth as `harness.groundtruth`).

sim (`SimSelfTestDut`): the sim's `ScriptedDut`, its clock the session's from the sample
    read just before the session (``clock``). True TTFA = reply start (DUT clock, minus that
    sample) + first sound + the DUT-speaker-to-ear path - (stimulus start + label end +
    mouth-to-ref), paths from the sim's model (`SimRig.path_delay_samples`).
loopback (`JackDelayDut`): a JACK client in the harness's process, wired like any
    ``jack:CLIENT`` DUT. Its clock is JACK's frame clock (``last_frame_time``), so a cycle
    it missed moves nothing; it notes one missed before it heard the stimulus or while its
    reply went out (where the record could be wrong), and such a turn is played again.
    Its input is the mouth, bit-exact, so the first non-zero sample it hears is the played
    stimulus' first non-zero sample. On a JACK graph mouth -> DUT plus DUT -> ear is the one
    period mouth -> ref takes, so the true TTFA is the DUT's own input-to-output interval:
    reply start - first heard sample + that sample's index in the stimulus + first sound -
    label end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.errors import InputError
from harness.rigs.base import RigError
from harness.rigs.jackd import jack_module
from harness.rigs.simduts import ScriptedDut
from harness.scenario import Dut, open_dut


@dataclass(frozen=True)
class Truth:
    """What the self-test's DUT knows of one attempt.

    ttfa_samples: the true TTFA, samples (None when the attempt's record is not exact).
    spoiled: why it is not (for people), e.g. a JACK cycle the DUT missed. transient: the
    reason may be gone on the next attempt (play the turn again). dut: the DUT's own figures,
    on its clock, for the record.
    """

    ttfa_samples: float | None
    spoiled: str | None = None
    transient: bool = False
    dut: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stimulus:
    """What the truth needs of a turn's stimulus and reply, at the rig's rate (samples).

    first_nonzero: the played stimulus' first non-zero sample. speech_end: its labelled
    speech end (fractional). reply_first_sound: the reply clip's first sound.
    """

    first_nonzero: int
    speech_end: float
    reply_first_sound: int


# ------------------------------------------------------------------------------------------
# sim: the scripted DUT
# ------------------------------------------------------------------------------------------


class SimSelfTestDut:
    """The sim rig's scripted DUT, re-armed per turn (see the module docstring).

    rig: an unopened `SimRig` made with ``dut=scripted`` (this object's `scripted`).
    """

    def __init__(self, rig: Any, scripted: ScriptedDut) -> None:
        if rig.profile.table("sim.clock")["dut_drift_ppm"]:
            raise InputError(
                f"{rig.profile.source}: sim.clock.dut_drift_ppm = "
                f"{rig.profile.table('sim.clock')['dut_drift_ppm']:g}: the self-test needs the "
                "DUT on the rig's clock to know the true delay to the sample; expected 0"
            )
        self.rig = rig
        self.scripted = scripted
        self.dut: Dut = open_dut("scripted", rig)
        self._t0 = 0
        self._n_events = 0

    def arm(self, delay_samples: int, reply: np.ndarray) -> None:
        """The next turn's reply and delay, and where the DUT's clock stands."""
        self.scripted.delay = int(delay_samples)
        self.scripted.reply = np.asarray(reply, dtype=np.float32)
        self._t0 = self.scripted.clock
        self._n_events = len(self.scripted.events)

    def truth(self, result: Any, stim: Stimulus) -> Truth:
        """The true TTFA of the turn just played (`result`: its `TurnResult`)."""
        events = self.scripted.events[self._n_events :]
        cancelled = {t for e, t in events if e == "reply_cancelled"}
        ends = [t - self._t0 for e, t in events if e == "speech_end"]
        starts = [t - self._t0 for e, t in events if e == "reply_start" and t not in cancelled]
        record = {"speech_end": ends[0] if ends else None, "reply_start": None}
        if not starts:
            return Truth(None, "the scripted DUT never heard the speech end", dut=record)
        record["reply_start"] = starts[0]
        rig = self.rig
        at_ear = starts[0] + stim.reply_first_sound + rig.path_delay_samples("dut_to_ear")
        end_at_ref = (
            result.stimulus_at_sample + stim.speech_end + rig.path_delay_samples("mouth_to_ref")
        )
        return Truth(at_ear - end_at_ref, dut=record)

    def close(self) -> None:
        """Close the DUT handle (the rig owns the scripted DUT)."""
        self.dut.close()


# ------------------------------------------------------------------------------------------
# loopback: a JACK client in this process
# ------------------------------------------------------------------------------------------


@dataclass
class DelayTurn:
    """One armed turn of `ReplyAfterSpeech`, on its frame clock; only `process` writes it.

    cycles: blocks seen. missed: blocks that did not follow the last one (a cycle missed)
    where that spoils the truth: before the first non-zero input sample was heard (it may
    have been in the missed cycle) or while the reply went out. A cycle missed in between
    moves nothing the truth uses (the clock is the server's; a later speech end only moves
    the reply, whose frame is recorded). first_in: the first non-zero input sample.
    speech_end: the last loud sample + 1. reply_at: where the reply's first sample was due;
    started: where it went out.
    """

    delay: int
    reply: np.ndarray
    cycles: int = 0
    missed: int = 0
    first_in: int | None = None
    speech_start: int | None = None
    last_loud: int = -1
    speech_end: int | None = None
    reply_at: int | None = None
    started: int | None = None
    done: bool = False


class ReplyAfterSpeech:
    """The delay DUT's logic, block by block on a frame clock (no I/O: the JACK client and
    the tests drive it).

    Speech ends at the last input sample above `threshold_dbfs` once `hangover_ms` of quiet
    followed at least `min_speech_ms` of speech (the scripted DUT's rule); the reply's first
    sample is output frame speech end + the armed delay.
    """

    def __init__(
        self,
        sample_rate_hz: int,
        *,
        threshold_dbfs: float = -45.0,
        hangover_ms: float = 300.0,
        min_speech_ms: float = 100.0,
    ) -> None:
        fs = int(sample_rate_hz)
        self.threshold = 10 ** (threshold_dbfs / 20)
        self.hangover = max(1, int(round(hangover_ms * fs / 1000)))
        self.min_speech = int(round(min_speech_ms * fs / 1000))
        self._turn: DelayTurn | None = None
        self._next_frame: int | None = None

    def arm(self, delay_samples: int, reply: np.ndarray) -> None:
        """Answer the next utterance `delay_samples` after its end with `reply`."""
        self._turn = DelayTurn(int(delay_samples), np.asarray(reply, dtype=np.float32))

    @property
    def last(self) -> DelayTurn | None:
        """The armed turn's record."""
        return self._turn

    def process(self, frame: int, x: np.ndarray, out: np.ndarray) -> None:
        """One block: input `x` and output `out` (filled here) of frames ``frame ..``."""
        f, frames = int(frame), len(out)
        out.fill(0.0)
        expected, self._next_frame = self._next_frame, f + frames
        t = self._turn
        if t is None or t.done:
            return
        if t.cycles and f != expected and (t.first_in is None or t.started is not None):
            t.missed += 1
        t.cycles += 1
        if t.first_in is None:
            nz = np.flatnonzero(x)
            if nz.size:
                t.first_in = f + int(nz[0])
        if t.reply_at is None:
            loud = np.flatnonzero(np.abs(x) > self.threshold)
            if loud.size:
                if t.speech_start is None:
                    t.speech_start = f + int(loud[0])
                t.last_loud = f + int(loud[-1])
            if (
                t.speech_start is not None
                and f + frames - 1 - t.last_loud >= self.hangover
                and t.last_loud + 1 - t.speech_start >= self.min_speech
            ):
                t.speech_end = t.last_loud + 1
                t.reply_at = t.speech_end + t.delay
        if t.reply_at is not None:
            end = t.reply_at + len(t.reply)
            a, b = max(f, t.reply_at), min(f + frames, end)
            if b > a:
                out[a - f : b - f] = t.reply[a - t.reply_at : b - t.reply_at]
                if t.started is None:
                    t.started = a
            t.done = f + frames >= end


class JackDelayDut:
    """The loopback's built-in delay DUT: `ReplyAfterSpeech` as a JACK client with ports
    ``NAME:in`` and ``NAME:out`` on server `server_name`, on JACK's frame clock
    (``last_frame_time``)."""

    def __init__(self, server_name: str, name: str = "tympan-selftest", **rule: float) -> None:
        jack = jack_module()
        try:
            self.client = jack.Client(name, servername=server_name, no_start_server=True)
        except jack.JackError as err:
            raise RigError(
                f"the self-test's JACK client {name!r} could not join server {server_name!r}: {err}"
            ) from None
        self.logic = ReplyAfterSpeech(int(self.client.samplerate), **rule)
        self._in = self.client.inports.register("in")
        self._out = self.client.outports.register("out")
        self.client.set_process_callback(self._process)
        self.client.activate()

    @property
    def name(self) -> str:
        """The client's JACK name."""
        return str(self.client.name)

    def _process(self, frames: int) -> None:
        self.logic.process(self.client.last_frame_time, self._in.get_array(), self._out.get_array())

    def close(self) -> None:
        """Deactivate and close the client (the server may be gone already)."""
        try:
            self.client.deactivate()
            self.client.close()
        except Exception:  # closing after the server went is no error
            pass


class LoopbackSelfTestDut:
    """`JackDelayDut` on an opened loopback rig, wired as ``jack:NAME``."""

    def __init__(self, rig: Any, *, threshold_dbfs: float = -45.0, hangover_ms: float = 300.0):
        self.rig = rig
        self.jack = JackDelayDut(
            rig.server_name, threshold_dbfs=threshold_dbfs, hangover_ms=hangover_ms
        )
        try:
            self.dut: Dut = open_dut(f"jack:{self.jack.name}", rig)
        except BaseException:
            self.jack.close()
            raise
        self.dut.info = {"kind": "selftest", "client": self.jack.name, "where": "in process"}

    def arm(self, delay_samples: int, reply: np.ndarray) -> None:
        """The next turn's reply and delay."""
        self.jack.logic.arm(delay_samples, reply)

    def truth(self, result: Any, stim: Stimulus) -> Truth:
        """The true TTFA of the turn just played, from the DUT's own record."""
        t = self.jack.logic.last
        if t is None:
            return Truth(None, "the self-test DUT was not armed")
        record = {
            k: getattr(t, k)
            for k in ("first_in", "speech_end", "reply_at", "started", "missed", "delay")
        }
        if t.missed:
            return Truth(
                None,
                f"JACK skipped the self-test DUT for {t.missed} cycle(s) (a late cycle) before it "
                "heard the stimulus or while it played its reply",
                transient=True,
                dut=record,
            )
        if t.first_in is None:
            return Truth(None, "the self-test DUT heard nothing", dut=record)
        if t.reply_at is None:
            return Truth(None, "the self-test DUT never heard the speech end", dut=record)
        if t.started != t.reply_at:
            return Truth(
                None,
                f"the self-test DUT's reply started at frame {t.started}, not {t.reply_at}",
                transient=True,
                dut=record,
            )
        ttfa = (
            t.reply_at - t.first_in + stim.first_nonzero + stim.reply_first_sound - stim.speech_end
        )
        return Truth(float(ttfa), dut=record)

    def close(self) -> None:
        """Unwire and close the client."""
        try:
            self.dut.close()
        finally:
            self.jack.close()
