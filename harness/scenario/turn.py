"""One turn: play a stimulus at the mouth, record ref + ear, wait for the reply to end,
inject a barge-in at the live reply onset + Δ, then save the evidence and analyse it.

Timeline of a turn (session sample indices; mouth sample k leaves in frame k, capture row k
is what the inputs held in frame k):

1. settle: stream silence until the ear has been quiet for `lead_in_s` (at most `settle_s`);
   that quiet stretch is the lead-in, the noise-only region the analysis learns noise from.
2. the stimulus is scheduled right after it (`stimulus_at_sample`); its labelled speech end
   lands at `speech_end_sample` on the mouth timeline.
3. after the speech end has played, the ear is watched for the reply's onset
   (`harness.scenario.live.EarWatcher`: leakage- and noise-aware); none within
   `reply_timeout_s` -> ``timeout = "no reply within 8.0 s ..."``.
4. with a barge-in clip: scheduled so that its labelled speech start lands exactly at
   live onset + Δ on the mouth timeline (`RigSession.schedule`, sample-exact); recording goes
   on through the agent's answer to it (up to `answer_timeout_s` for it to start).
5. the reply is over after `reply_end_silence_s` of quiet at the ear, or `max_reply_s`.
6. the session stops; only then is anything heavy done (saving, analysis): on the JACK rig
   the callback needs the GIL every period, and long numpy calls starve it.

Every wait has a limit. A limit hit is recorded in `TurnResult.timeout` with the capture
saved; only a stalled stream (no audio blocks at all) raises `TurnTimeout`.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from harness.analysis import AnalysisOptions, TurnMetrics, analyze_capture
from harness.corpus import Utterance
from harness.errors import HarnessError, InputError
from harness.reasons import Discard, Timeout
from harness.rigs.base import Capture, SessionError
from harness.scenario.live import EarWatcher
from harness.signal.resample import resample

READ_TIMEOUT_S = 2.0
"""A real-time stream that delivers no block for this long has stalled (TurnTimeout)."""

ANALYSIS_TIMEOUT_S = 120.0
"""The longest wait for a pool worker's analysis of one turn."""


class TurnTimeout(HarnessError):
    """The stream or rig stalled during a turn (no audio blocks arrived); the capture so far
    is saved and named in the message."""


@dataclass(frozen=True)
class TurnPlan:
    """What one turn does. Times in seconds unless the name says otherwise.

    stimulus: the user's utterance, played at the mouth.
    barge_in: a clip (corpus category "barge_in") to play into the reply, or None.
    barge_in_offset_ms: Δ: the clip's labelled speech start lands this long after the
        live-detected reply onset (needs `barge_in`).
    lead_in_s: quiet before the stimulus (the noise-only region).
    reply_end_silence_s: the reply is over after this much quiet at the ear.
    max_reply_s: the longest reply waited for (from its onset; with a barge-in, from the
        clip's speech end for the answer).
    reply_timeout_s: no reply onset within this after the speech end -> "no reply".
    settle_s: the longest wait for the DUT to go quiet before the turn.
    answer_timeout_s: after a barge-in clip's speech end, how long to wait for the agent's
        answer to start (a "stop" clip expects none).
    reply_reference: the DUT's own reply audio ``(samples, rate_hz)`` when known (e.g. a test
        bot's tone): the analysis then locates it by correlation, sample-exact.
    analysis: options for `analyze_capture` (None: its defaults).
    """

    stimulus: Utterance
    barge_in: Utterance | None = None
    barge_in_offset_ms: float | None = None
    lead_in_s: float = 0.3
    reply_end_silence_s: float = 1.0
    max_reply_s: float = 20.0
    reply_timeout_s: float = 8.0
    settle_s: float = 5.0
    answer_timeout_s: float = 3.0
    reply_reference: tuple[np.ndarray, int] | None = field(default=None, compare=False)
    analysis: AnalysisOptions | None = None

    def __post_init__(self) -> None:
        if (self.barge_in is None) != (self.barge_in_offset_ms is None):
            raise InputError(
                "TurnPlan: barge_in and barge_in_offset_ms go together (got barge_in="
                f"{getattr(self.barge_in, 'id', None)!r}, "
                f"barge_in_offset_ms={self.barge_in_offset_ms!r})"
            )
        for u, what in ((self.stimulus, "stimulus"), (self.barge_in, "barge_in")):
            if u is not None and (u.speech_start_s is None or u.speech_end_s is None):
                raise InputError(
                    f"TurnPlan: {what} {u.id!r} is a {u.category!r} entry without speech "
                    "labels; expected a speech utterance"
                )


@dataclass
class TurnResult:
    """What one turn recorded and measured. Sample indices are session/capture indices.

    metrics: `analyze_capture`'s result (with barge-in figures when a clip was injected).
    stimulus_at_sample: where the stimulus started on the mouth timeline.
    speech_end_sample: its labelled speech end on the mouth timeline.
    barge_in_at_sample: where the barge-in clip (as played) started; None without one.
    barge_in_speech_at_sample: where the clip's labelled speech start landed.
    live_onset_sample: the reply onset the live watcher found (5 ms frame resolution).
    events: DUT telemetry of this turn, each with ``"t_s"``: capture-timeline seconds
        through the session's host clock map (None when the map has no acoustic meaning).
    timeout: None, or which limit was hit, for people ("no reply within 8.0 s ...");
        timeout_kind: the same as a `Timeout`, for code.
    xruns: glitches during the session. wall_s: the whole call, s. audio_s: the capture's
        length, s. stream_s: wall time of the streaming part. analysis_s: saving + analysis.
    paths: capture_wav (float32 WAV [ref, ear] at the rig rate), metrics_json, events_jsonl.
    notes: anything a reader of the result should know.
    """

    name: str
    plan: TurnPlan
    capture: Capture
    _metrics: TurnMetrics | Future[TurnMetrics]
    stimulus_at_sample: int
    speech_end_sample: int
    barge_in_at_sample: int | None
    barge_in_speech_at_sample: int | None
    live_onset_sample: int | None
    events: list[dict[str, Any]]
    timeout: str | None
    xruns: int
    wall_s: float
    audio_s: float
    paths: dict[str, Path]
    stream_s: float = 0.0
    analysis_s: float = 0.0
    timeout_kind: Timeout | None = None
    dut_info: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    analysis_wait_s: float = 0.0
    """How long reading `metrics` waited for a pool's worker, s (0 without a pool)."""

    @property
    def metrics(self) -> TurnMetrics:
        """The analysis (waits for it when it runs in an `AnalysisPool`; writes
        ``metrics.json`` once it is there)."""
        m = self._metrics
        if isinstance(m, Future):
            t0 = time.monotonic()
            m = m.result(timeout=ANALYSIS_TIMEOUT_S)
            self._metrics = m
            self.analysis_wait_s = time.monotonic() - t0
            self._write_summary()
        return m

    @property
    def analysed(self) -> bool:
        """True once the metrics are there (always, without a pool)."""
        m = self._metrics
        return not isinstance(m, Future) or m.done()

    def _write_summary(self) -> None:
        self.paths["metrics_json"].write_text(json.dumps(_summary(self), indent=2) + "\n")

    @property
    def overhead_s(self) -> float:
        """Harness overhead: wall time minus the audio's own length, s."""
        return self.wall_s - self.audio_s

    @property
    def sample_rate_hz(self) -> int:
        """The capture's rate, Hz."""
        return self.capture.sample_rate_hz

    def capture_s_of_host_us(self, t_us: float) -> float | None:
        """Capture-timeline seconds of a host monotonic time (µs); None without a clock."""
        return self.capture.capture_s_of_host_us(t_us)

    def first_event(self, name: str) -> dict[str, Any] | None:
        """The first telemetry event called `name`, or None."""
        return next((e for e in self.events if e.get("event") == name), None)


def played_audio(u: Utterance, fs: int) -> np.ndarray:
    """What `run_turn` plays of utterance `u` on a rig running at `fs`: the whole file at
    that rate, float32."""
    return resample(u.load(), u.sample_rate_hz, fs).astype(np.float32)


_audio = played_audio


def save_evidence(capture: Capture, events: list[dict[str, Any]], paths: dict[str, Path]) -> None:
    """Put the DUT's events on the capture's timeline (``t_s``: None where the session's
    host clock map has no acoustic meaning) and save the capture (float32 WAV [ref, ear]) and
    the events (JSON lines) to ``paths["capture_wav"]`` and ``paths["events_jsonl"]``."""
    clock = capture.clock
    for e in events:
        t_us = e.get("t_us")
        ok = clock is not None and clock.paced and isinstance(t_us, int | float)
        e["t_s"] = capture.capture_s_of_host_us(t_us) if ok else None
    sf.write(paths["capture_wav"], capture.samples, capture.sample_rate_hz, subtype="FLOAT")
    with paths["events_jsonl"].open("w", encoding="utf-8") as fh:
        for e in events:
            fh.write(json.dumps(e, separators=(",", ":"), default=str) + "\n")


class _Stalled(Exception):
    pass


def run_turn(
    rig: Any,
    dut: Any,
    plan: TurnPlan,
    *,
    out_dir: Path | str,
    name: str | None = None,
    pool: AnalysisPool | None = None,
) -> TurnResult:
    """Run one turn of `plan` on an opened `rig` with an opened `dut` (`open_dut`).

    Saves ``capture.wav``, ``metrics.json`` and ``events.jsonl`` in `out_dir` and returns
    the `TurnResult`. Raises `TurnTimeout` only when the stream stalls.

    pool: analyse in this `AnalysisPool`'s worker process instead of here, after the
    session stopped either way. `run_turn` then returns as soon as the evidence is saved and
    ``result.metrics`` waits for the worker: the analysis of one turn overlaps the next
    turn's audio, and never holds this process's GIL (which the JACK callback needs).

    The turn's life: the session sized for it (`_capacity_s`), streamed inside one
    try/finally that always stops it, the evidence saved, the analysis started, the result
    made (`_turn_result`).
    """
    t_start = time.monotonic()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = name or plan.stimulus.id
    fs = int(rig.sample_rate_hz)
    stim = _audio(plan.stimulus, fs)
    clip = _audio(plan.barge_in, fs) if plan.barge_in is not None else None
    events = list(dut.drain_events()) if dut is not None else []
    notes: list[str] = []

    session = rig.session(capacity_s=_capacity_s(plan, len(stim), clip, fs))
    w = EarWatcher(fs)
    st = _State(plan, fs, w)
    t_stream = time.monotonic()
    session.start()
    try:
        _stream(session, st, stim, clip, notes)
        stalled = None
    except _Stalled as exc:
        stalled = str(exc)
    finally:
        capture = session.stop()
    stream_s = time.monotonic() - t_stream

    t_an = time.monotonic()
    if dut is not None:
        events += dut.drain_events()
    paths = {
        "capture_wav": out / "capture.wav",
        "metrics_json": out / "metrics.json",
        "events_jsonl": out / "events.jsonl",
    }
    save_evidence(capture, events, paths)
    if stalled is not None:
        raise TurnTimeout(
            f"turn {name!r}: {stalled}; is the audio server running? capture so far saved to "
            f"{paths['capture_wav']}"
        )

    played_clip = clip[st.clip_from :] if clip is not None and st.barge_at is not None else None
    job = (capture.samples, stim, fs, plan.stimulus.speech_end_s, played_clip)
    job += (plan.reply_reference, plan.analysis)
    metrics = pool.submit(*job) if pool is not None else _analyse(*job)
    result = _turn_result(name, plan, capture, metrics, st, events, paths, stream_s, dut, notes)
    result.analysis_s = time.monotonic() - t_an
    result.wall_s = time.monotonic() - t_start
    if pool is None:
        result._write_summary()
    else:
        pool.track(result)
    return result


def _capacity_s(plan: TurnPlan, stim_frames: int, clip: np.ndarray | None, fs: int) -> float:
    """How long a turn's session must be able to record, s: every phase at its limit, 2 s
    more."""
    extra_s = 0.0
    if clip is not None:
        extra_s = len(clip) / fs + plan.answer_timeout_s + plan.max_reply_s
    return (
        plan.settle_s + plan.lead_in_s + stim_frames / fs + plan.reply_timeout_s
        + plan.max_reply_s + plan.reply_end_silence_s + extra_s + 2.0
    )  # fmt: skip


def _turn_result(
    name: str,
    plan: TurnPlan,
    capture: Capture,
    metrics: TurnMetrics | Future[TurnMetrics],
    st: _State,
    events: list[dict],
    paths: dict[str, Path],
    stream_s: float,
    dut: Any,
    notes: list[str],
) -> TurnResult:
    """The `TurnResult` of a streamed turn (its times, wall_s and analysis_s, still 0)."""
    return TurnResult(
        name=name,
        plan=plan,
        capture=capture,
        _metrics=metrics,
        stimulus_at_sample=st.stim_at,
        speech_end_sample=st.speech_end_at,
        barge_in_at_sample=st.barge_at,
        barge_in_speech_at_sample=st.barge_speech_at,
        live_onset_sample=st.onset_at,
        events=events,
        timeout=st.timeout,
        timeout_kind=st.timeout_kind,
        xruns=capture.status.xrun_count,
        wall_s=0.0,
        audio_s=capture.duration_s,
        paths=paths,
        stream_s=stream_s,
        dut_info=dict(getattr(dut, "info", {}) or {}),
        notes=notes,
    )


class _State:
    """Where the turn is (all sample indices on the session timeline)."""

    def __init__(self, plan: TurnPlan, fs: int, watcher: EarWatcher) -> None:
        self.plan = plan
        self.fs = fs
        self.w = watcher
        self.phase = "settle"
        self.stim_at = 0
        self.speech_end_at = 0
        self.onset_at: int | None = None
        self.barge_at: int | None = None
        self.barge_speech_at: int | None = None
        self.barge_end_at: int | None = None
        self.clip_from = 0
        self.timeout: str | None = None
        self.timeout_kind: Timeout | None = None
        self.last_loud_end = 0
        self.answered = False
        self.next_frame = 0  # first frame not yet judged


def _stream(
    session: Any, st: _State, stim: np.ndarray, clip: np.ndarray | None, notes: list[str]
) -> None:
    """Stream one turn through `session`: settle, play the stimulus, watch the ear for the
    reply's onset, schedule the barge-in, wait for the reply's end (or a limit: `st.timeout`).

    Long on purpose: the turn's state machine (settle, stimulus, onset, reply), one block at
    a time in the capture path; a block can carry the turn through several phases (the
    stimulus' end falls through to the onset search, the onset to the reply), so the phases
    stay one loop over one state, with no call per block and phase.
    """
    plan, fs, w = st.plan, st.fs, st.w
    lead_frames = max(1, int(round(plan.lead_in_s * fs / w.frame)))
    run_frames, run_window = 6, 8  # onset: 6 loud frames of the next 8 (30 of 40 ms)
    silence = int(round(plan.reply_end_silence_s * fs))
    while True:
        block = session.read(timeout_s=READ_TIMEOUT_S)
        if block is None:
            if session.realtime:
                raise _Stalled(
                    f"the stream stalled at sample {session.position}: no audio block for "
                    f"{READ_TIMEOUT_S:g} s"
                )
            st.timeout = f"the session's capacity ran out at sample {session.position}"
            st.timeout_kind = Timeout.CAPACITY
            return
        w.feed(block.ref, block.ear)
        pos = block.start + len(block.ref)
        if st.phase == "settle":
            settled = w.quiet_run(lead_frames)
            if settled or pos >= plan.settle_s * fs:
                if not settled:
                    notes.append(
                        f"the ear was not quiet within settle_s = {plan.settle_s:g} s; "
                        "the stimulus was played anyway"
                    )
                st.stim_at = session.position + session.guard_frames
                session.schedule(stim, st.stim_at)
                st.speech_end_at = st.stim_at + int(round(plan.stimulus.speech_end_s * fs))
                first = w.frame_of(st.stim_at) - lead_frames
                w.learn_noise(first, w.frame_of(st.stim_at))
                st.phase = "stimulus"
            continue
        if st.phase == "stimulus":
            if pos < st.speech_end_at:
                continue
            speech_start = st.stim_at + int(round(plan.stimulus.speech_start_s * fs))
            w.learn_leakage(w.frame_of(speech_start), w.frame_of(st.speech_end_at))
            st.phase = "onset"
            st.next_frame = w.frame_of(st.speech_end_at)
        if st.phase == "onset":
            while st.next_frame + run_window <= w.frames:
                i = st.next_frame
                if w.loud(i) and sum(w.loud(j) for j in range(i, i + run_window)) >= run_frames:
                    st.onset_at = w.start_of(i)
                    st.last_loud_end = w.start_of(i + run_window)
                    st.phase = "reply"
                    break
                st.next_frame += 1
            if st.phase == "onset":
                if pos >= st.speech_end_at + plan.reply_timeout_s * fs:
                    st.timeout = (
                        f"no reply within {plan.reply_timeout_s:g} s after the speech end "
                        f"(reply_timeout_s)"
                    )
                    st.timeout_kind = Timeout.NO_REPLY
                    return
                continue
            st.next_frame += run_window
            if clip is not None:
                _schedule_barge_in(session, st, clip, notes)
        if st.phase == "reply":
            assert st.onset_at is not None
            for i in range(st.next_frame, w.frames):
                if w.loud(i):
                    st.last_loud_end = w.start_of(i + 1)
                    if st.barge_end_at is not None and w.start_of(i) >= st.barge_end_at:
                        st.answered = True
            st.next_frame = w.frames
            limit_from = st.onset_at
            if st.barge_end_at is not None and pos >= st.barge_end_at:
                limit_from = st.barge_end_at
            if pos - limit_from >= plan.max_reply_s * fs:
                st.timeout = f"the reply was still going after {plan.max_reply_s:g} s (max_reply_s)"
                st.timeout_kind = Timeout.REPLY_TOO_LONG
                return
            quiet = pos - st.last_loud_end >= silence
            if st.barge_end_at is None:
                if quiet:
                    return
            elif (
                pos >= st.barge_end_at
                and quiet
                and (st.answered or pos >= st.barge_end_at + plan.answer_timeout_s * fs)
            ):
                return


def _schedule_barge_in(session: Any, st: _State, clip: np.ndarray, notes: list[str]) -> None:
    """Schedule `clip` so its labelled speech start lands at live onset + Δ."""
    plan, fs = st.plan, st.fs
    assert st.onset_at is not None and plan.barge_in is not None
    assert plan.barge_in_offset_ms is not None
    speech_in_clip = int(round(plan.barge_in.speech_start_s * fs))
    speech_end_in_clip = int(round(plan.barge_in.speech_end_s * fs))
    target = st.onset_at + int(round(plan.barge_in_offset_ms * fs / 1000))
    for _ in range(4):
        # Half a guard (one period) more on a real-time stream: it moves on meanwhile.
        slack = session.guard_frames + session.guard_frames // 2
        earliest = session.position + slack
        skip = max(0, speech_in_clip - (target - earliest))  # clip samples that cannot play
        at = target - speech_in_clip + skip
        if skip > speech_in_clip:  # Δ too short: even the speech start is already past
            skip, at = speech_in_clip, earliest
        try:
            session.schedule(clip[skip:], at)
        except SessionError:
            continue
        st.clip_from = skip
        st.barge_at = at
        st.barge_speech_at = at + speech_in_clip - skip
        st.barge_end_at = at + speech_end_in_clip - skip
        if st.barge_speech_at != target:
            notes.append(
                f"barge-in speech landed {(st.barge_speech_at - target) / fs * 1000:.1f} ms "
                f"after onset + {plan.barge_in_offset_ms:g} ms: the onset was detected too late "
                "for that offset"
            )
        return
    notes.append("the barge-in clip could not be scheduled (the stream kept moving on)")


def _analyse(
    samples: np.ndarray,
    stim: np.ndarray,
    fs: int,
    speech_end_s: float | None,
    clip: np.ndarray | None,
    ref: tuple[np.ndarray, int] | None,
    options: AnalysisOptions | None,
) -> TurnMetrics:
    """`analyze_capture` on one turn's arrays (module-level: a worker process runs it)."""
    try:
        return analyze_capture(
            samples,
            fs,
            stim,
            fs,
            speech_end_s=speech_end_s,
            barge_in=clip,
            barge_in_rate_hz=fs if clip is not None else None,
            reply_reference=None if ref is None else ref[0],
            reply_reference_rate_hz=None if ref is None else int(ref[1]),
            options=options,
        )
    except InputError as exc:
        # A capture the analysis cannot take at all (an ear that heard nothing): no reply.
        return TurnMetrics.refused(f"{Discard.NO_REPLY}: {exc}", fs)


def _summary(r: TurnResult) -> dict[str, Any]:
    fs = r.sample_rate_hz
    return {
        "name": r.name,
        "stimulus": r.plan.stimulus.id,
        "barge_in": r.plan.barge_in.id if r.plan.barge_in else None,
        "barge_in_offset_ms": r.plan.barge_in_offset_ms,
        "sample_rate_hz": fs,
        "stimulus_at_sample": r.stimulus_at_sample,
        "speech_end_sample": r.speech_end_sample,
        "live_onset_sample": r.live_onset_sample,
        "barge_in_at_sample": r.barge_in_at_sample,
        "barge_in_speech_at_sample": r.barge_in_speech_at_sample,
        "timeout": r.timeout,
        "xruns": r.xruns,
        "wall_s": round(r.wall_s, 4),
        "audio_s": round(r.audio_s, 4),
        "overhead_s": round(r.overhead_s, 4),
        "stream_s": round(r.stream_s, 4),
        "analysis_s": round(r.analysis_s, 4),
        "dut": r.dut_info,
        "notes": r.notes,
        "metrics": r.metrics.to_json(barge_in=r.plan.barge_in is not None),
    }


class AnalysisPool:
    """One worker process that analyses turns while the next turn records.

    Use as a context manager around a run of turns; on exit it waits for every pending
    analysis and writes its ``metrics.json``. The worker is started with "spawn" (never
    fork a process whose JACK client has real-time threads); it takes ~1 s to import
    numpy/scipy once, at the first turn.
    """

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._executor = ProcessPoolExecutor(max_workers=1, mp_context=ctx)
        self._pending: list[TurnResult] = []

    def submit(self, *job: Any) -> Future[TurnMetrics]:
        """Queue one `_analyse` job; returns its future."""
        return self._executor.submit(_analyse, *job)

    def track(self, result: TurnResult) -> None:
        """Remember `result` so `close` can finish it."""
        # Results whose metrics were never read still need their metrics.json.
        self._pending = [r for r in self._pending if isinstance(r._metrics, Future)]
        self._pending.append(result)

    def close(self) -> None:
        """Finish every pending analysis (writing metrics.json), then stop the worker."""
        pending, self._pending = self._pending, []
        try:
            for r in pending:
                r.metrics  # noqa: B018 - resolving writes metrics.json
        finally:
            self._executor.shutdown(wait=True, cancel_futures=False)

    def __enter__(self) -> AnalysisPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
