"""Synthetic turns with exactly known timing, for tests, the accuracy benchmark and the demo.

A turn is built the way a real rig would record it: the stimulus (user speech) is played at
the mouth and looped back into the ref channel; the DUT's reply, placed a known time after
the labelled end of the user's speech, reaches the ear mic through a room (direct path
delay, optional reverberation from pyroomacoustics); the ear also hears the mouth (leakage),
noise, and may run on its own clock (drift). An optional barge-in clip is played at the
mouth at a known time after the reply started, and the DUT's output is cut a known time
after that, then it answers.

Real conversations add what the accuracy benchmark must see too: the agent's own sound at
the ear before the question (a greeting, an earcon, an idle prompt), a stretch of the
user's audio lost on its way to the agent (packet loss, a jitter buffer), telephony's 8 kHz
G.711 companding and comfort noise, a reply that starts with a filler, and whole multi-turn
calls in one capture (`harness.groundtruth_call.make_conversation`).

The truth is defined on the DUT's output: the reply audio starts at its labelled speech start
(it is cut there), and its first sound is its first sample within 50 dB of its peak; the
first acoustic event at the ear is that sample arriving over the direct path.
docs/measurement.md states the same definition from the analysis side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.signal as ss

from harness.signal.resample import first_sound as _first_sound
from harness.signal.resample import resample as _resample
from harness.synth import (
    active_rms,
    comfort_noise_gate,
    earcon,
    fractional_delay,
    g711,
    lossy,
    noise_of_kind,
    place,
    room_rirs,
    stretch,
)


@dataclass(frozen=True)
class Speech:
    """A clean utterance: mono float samples with its labelled speech start/end (seconds)."""

    samples: np.ndarray
    sample_rate_hz: int
    speech_start_s: float
    speech_end_s: float
    name: str = ""


@dataclass(frozen=True)
class Condition:
    """How a synthetic turn is recorded.

    rt60_s: None for a dry path (pure delay), else a shoebox room with this reverberation time.
    leakage_db: level of the mouth as heard at the ear relative to the mouth itself at the
        ref (None: the ear does not hear the mouth).
    noise: None, "white", "pink" or "babble"; snr_db is the reply's active level at the ear
        over the noise RMS.
    ear_gain_db: overall level of the ear channel (very low levels: -40 dB and below).
    dut_drift_ppm: the DUT's playback clock against the harness's (the reply is stretched).
    ear_drift_ppm: the ear's recording clock against the ref's (the ear channel is stretched).
    pcm16: quantise the capture to 16-bit as a WAV file would.
    barge_in: play a barge-in clip during the reply and cut the reply a known time later.
    context: the agent's own sound at the ear before the question: "greeting" (speech at
        the start of the capture, as when a call connects), "earcon" (a short chime, as
        after a wake word) or "prompt" (speech after a long quiet, "are you still there?").
    context_db: its level relative to the reply's active level.
    context_gap_s: quiet between its end and the stimulus' first sample (None: 0.2..1.2 s).
    lost_ms: a stretch of the stimulus this long does not reach the mouth/ref intact;
        `loss` says how: "drop" (removed: what follows comes early), "conceal" (replaced
        by a repeat of the audio before it, as packet-loss concealment does: same length),
        "stretch" (a stretch played twice, as a jitter buffer that stretched: later).
    codec: "mulaw" or "alaw": the capture goes through G.711 (8-bit companding).
    comfort_noise_dbfs: noise at the ear while the DUT is silent (telephony's comfort
        noise), switched off while it talks.
    filler: the reply starts with a short filler ("hold on"), 0.35..0.8 s of quiet, then
        the answer.
    ttfa_range_ms: the range the random TTFA is drawn from; a negative one is the agent
        talking over the user.
    """

    name: str
    sample_rate_hz: int = 48000
    rt60_s: float | None = None
    leakage_db: float | None = None
    noise: str | None = None
    snr_db: float = 60.0
    ear_gain_db: float = 0.0
    dut_drift_ppm: float = 0.0
    ear_drift_ppm: float = 0.0
    pcm16: bool = False
    barge_in: bool = False
    context: str | None = None
    context_db: float = 0.0
    context_gap_s: float | None = None
    lost_ms: float = 0.0
    loss: str = "drop"
    codec: str | None = None
    comfort_noise_dbfs: float | None = None
    filler: bool = False
    ttfa_range_ms: tuple[float, float] = (200.0, 1500.0)


@dataclass(frozen=True)
class Truth:
    """What really happened, in seconds of the capture timeline (ref clock)."""

    speech_end_s: float
    reply_onset_s: float
    ttfa_ms: float
    barge_in_onset_s: float | None = None
    stop_s: float | None = None
    stop_latency_ms: float | None = None
    ttfa_content_ms: float | None = None
    """With a filler: speech end -> the first sound of the answer after it."""
    overlap_ms: float = 0.0
    """How long the reply sounded before the user's speech ended (the agent talking over)."""
    context_end_s: float | None = None
    """Where the agent's own sound before the question (greeting, earcon, prompt) ended at
    the ear; None without one."""
    stimulus_warp_ms: float = 0.0
    """How much later (+) or earlier (-) the speech end reached the ref than an intact
    stimulus would have put it (a lost or stretched stretch of the stimulus)."""


@dataclass(frozen=True)
class SyntheticTurn:
    """A capture (samples, 2: ref, ear) with the stimulus, the DUT's reply audio and the truth."""

    capture: np.ndarray
    sample_rate_hz: int
    stimulus: np.ndarray
    speech_end_s: float  # in the stimulus
    reply: np.ndarray  # what the DUT played (before the room), from its first sample
    barge_in_clip: np.ndarray | None
    truth: Truth
    condition: Condition


def _cut(s: Speech, fs: int) -> np.ndarray:
    """The speech of `s` at `fs`, cut at its labels (what a DUT plays, from its first sound)."""
    x = _resample(s.samples, s.sample_rate_hz, fs)
    return x[int(round(s.speech_start_s * fs)) : int(round(s.speech_end_s * fs)) + 1]


@dataclass(frozen=True)
class _Scene:
    """What the mouth played and the DUT output, before the acoustic path."""

    mouth: np.ndarray
    dut_out: np.ndarray
    level_span: tuple[int, int]  # samples of dut_out whose level sets the SNR
    talk_spans: tuple[tuple[int, int], ...]  # where the DUT outputs sound (comfort-noise gate)


def _render(
    condition: Condition,
    scene: _Scene,
    rng: np.random.Generator,
    babble_talkers: list[np.ndarray] | None,
) -> tuple[np.ndarray, float]:
    """(capture (samples, 2), direct-path delay DUT -> ear in samples) of `scene`."""
    fs = condition.sample_rate_hz
    mouth, dut_out = scene.mouth, scene.dut_out
    total = len(mouth)
    if condition.rt60_s:
        rir_dut, rir_mouth, direct = room_rirs(condition.rt60_s, fs, rng)
        ear_reply = ss.oaconvolve(dut_out, rir_dut)[:total]
        ear_mouth = ss.oaconvolve(mouth, rir_mouth)[:total]
        ear_mouth /= np.max(np.abs(rir_mouth)) + 1e-20  # leakage level set by its direct path
        ear_reply /= np.max(np.abs(rir_dut)) + 1e-20
    else:
        direct = float(rng.uniform(0.5, 3.0) / 1000 * fs)  # 17..100 cm, fractional
        mouth_delay = float(rng.uniform(2.0, 6.0) / 1000 * fs)
        if condition.codec:
            # A telephone call has no air path: the far end's samples arrive whole samples
            # late (a fractional delay's band-limited ringing would reach 6 ms ahead of the
            # reply, and G.711 keeps it as sound where a float file keeps it 70 dB down).
            direct, mouth_delay = float(round(direct)), float(round(mouth_delay))
        ear_reply = fractional_delay(dut_out, direct, total)
        ear_mouth = fractional_delay(mouth, mouth_delay, total)

    ear = ear_reply.copy()
    if condition.leakage_db is not None:
        ear += ear_mouth * 10 ** (condition.leakage_db / 20)
    lo, hi = scene.level_span
    reply_level = active_rms(ear_reply[lo:hi], fs)
    if condition.noise:
        noise = noise_of_kind(condition.noise, total, rng, babble_talkers)
        ear += noise * reply_level * 10 ** (-condition.snr_db / 20)
    ear *= 10 ** (condition.ear_gain_db / 20)
    if condition.comfort_noise_dbfs is not None:
        gate = comfort_noise_gate(total, scene.talk_spans, direct, fs)
        ear += rng.standard_normal(total) * 10 ** (condition.comfort_noise_dbfs / 20) * gate
    if condition.ear_drift_ppm:
        ear = stretch(ear, condition.ear_drift_ppm)[:total]
        ear = np.pad(ear, (0, total - len(ear)))

    capture = np.stack([mouth, ear], axis=1)
    peak = float(np.max(np.abs(capture)))
    if peak > 0.98:
        capture *= 0.9 / peak
    if condition.pcm16:
        capture = np.round(capture * 32767) / 32767
    if condition.codec:
        capture = g711(capture, fs, condition.codec)
    return capture, float(direct)


def make_turn(
    condition: Condition,
    user: Speech,
    reply: Speech,
    rng: np.random.Generator,
    *,
    babble_talkers: list[np.ndarray] | None = None,
    **parts: Any,
) -> SyntheticTurn:
    """Build one synthetic turn under `condition` with known truth.

    `ttfa_ms` (a keyword) defaults to a random value in `condition.ttfa_range_ms`. With
    `condition.barge_in`, a `barge_clip` is played 300..1200 ms after the reply's onset at
    the ear and the DUT's output is cut 80..400 ms after the clip's onset (at a moment the
    reply is sounding); `answer` (default: the clip's reply) follows 0.6..1.0 s after the
    clip ended. `context` is the agent's speech for a "greeting" or "prompt" context (any
    corpus speech; an "earcon" is synthesised), `filler` the filler's speech. `parts` are
    those keywords (`_compose_turn`'s): ttfa_ms, barge_clip, answer, context, filler.
    """
    t = _compose_turn(condition, user, reply, rng, **parts)
    scene = _Scene(t.mouth, t.dut_out, t.level_span, t.talk)
    capture, direct = _render(condition, scene, rng, babble_talkers)
    return SyntheticTurn(
        capture=capture.astype(np.float32) if not (condition.pcm16 or condition.codec) else capture,
        sample_rate_hz=t.fs,
        stimulus=t.stimulus,
        speech_end_s=t.speech_end_in_stimulus_s,
        reply=t.reply,
        barge_in_clip=t.clip,
        truth=t.truth(direct),
        condition=condition,
    )


@dataclass(frozen=True)
class _Turn:
    """One turn composed on its own timeline (samples from 0), before the acoustic path."""

    fs: int
    mouth: np.ndarray
    dut_out: np.ndarray
    talk: tuple[tuple[int, int], ...]
    level_span: tuple[int, int]
    stimulus: np.ndarray
    speech_end_in_stimulus_s: float
    reply: np.ndarray
    clip: np.ndarray | None
    speech_end: float
    dut_start: int
    content_at: int | None
    context_end: int | None
    shift: int
    barge_onset: int | None
    stop_at_dut: int | None

    def truth(self, direct: float, offset: int = 0) -> Truth:
        """The truth once the DUT's sound reaches the ear `direct` samples late, with the
        turn placed `offset` samples into a longer capture."""
        fs, r = self.fs, self.reply
        speech_end = self.speech_end + offset
        dut_start = self.dut_start + offset
        onset = dut_start + _first_sound(r) + direct
        truth = Truth(
            speech_end_s=speech_end / fs,
            reply_onset_s=onset / fs,
            ttfa_ms=(onset - speech_end) / fs * 1000,
            ttfa_content_ms=(
                (dut_start + self.content_at + direct - speech_end) / fs * 1000
                if self.content_at is not None
                else None
            ),
            overlap_ms=max(0.0, (min(speech_end, dut_start + len(r) + direct) - onset) / fs * 1000),
            context_end_s=(
                (self.context_end + offset + direct) / fs if self.context_end is not None else None
            ),
            stimulus_warp_ms=self.shift / fs * 1000,
        )
        if self.barge_onset is not None and self.stop_at_dut is not None:
            stop = dut_start + self.stop_at_dut + direct
            barge = self.barge_onset + offset
            truth = replace(
                truth,
                barge_in_onset_s=barge / fs,
                stop_s=stop / fs,
                stop_latency_ms=(stop - barge) / fs * 1000,
            )
        return truth


def _compose_turn(
    condition: Condition,
    user: Speech,
    reply: Speech,
    rng: np.random.Generator,
    *,
    ttfa_ms: float | None = None,
    barge_clip: Speech | None = None,
    answer: Speech | None = None,
    context: Speech | None = None,
    filler: Speech | None = None,
) -> _Turn:
    """One turn's dry signals under `condition` (see make_turn), before the acoustic path:
    a lead of 0.3..0.8 s (with the context in it), the stimulus, the reply, and with a
    barge-in the clip, the cut and the answer.

    The steps follow the signal chain (reply, context, stimulus and its loss, barge-in, the
    mix), each drawing from `rng` in that order, so one seed gives one turn.
    """
    fs = condition.sample_rate_hz
    stim = _resample(user.samples, user.sample_rate_hz, fs)
    if ttfa_ms is None:
        ttfa_ms = float(rng.uniform(*condition.ttfa_range_ms))
    r, content_at = _dut_reply(condition, reply, filler, fs, rng)
    lead = int(rng.uniform(0.3, 0.8) * fs)
    ctx_audio, ctx_at, lead = _context_before(condition, context, r, lead, fs, rng)
    played, shift = _played_stimulus(condition, user, stim, fs, rng)
    speech_end = lead + user.speech_end_s * fs + shift  # exact, in capture samples
    # Integer placement of the reply on the DUT's output; the fractional part of the truth
    # comes from the acoustic path.
    dut_start = int(math.ceil(speech_end + ttfa_ms / 1000 * fs))

    barge = None
    if condition.barge_in:
        if barge_clip is None:
            raise ValueError("a barge-in condition needs a barge_clip")
        barge = _barge_in(reply, barge_clip, answer, r, dut_start, fs, rng)
        r = r[: barge.stop_at_dut]
    mouth, dut_out, talk = _mix(fs, rng, lead, played, dut_start, r, ctx_audio, ctx_at, barge)

    return _Turn(
        fs=fs,
        mouth=mouth,
        dut_out=dut_out,
        talk=tuple(talk),
        level_span=(dut_start, dut_start + len(r) + int(0.1 * fs)),
        stimulus=stim,
        speech_end_in_stimulus_s=user.speech_end_s,
        reply=r,
        clip=None if barge is None else barge.clip,
        speech_end=speech_end,
        dut_start=dut_start,
        content_at=content_at if condition.filler else None,
        context_end=(
            ctx_at + len(ctx_audio) - _first_sound(ctx_audio[::-1])
            if ctx_audio is not None
            else None
        ),
        shift=shift,
        barge_onset=None if barge is None else barge.onset,
        stop_at_dut=None if barge is None else barge.stop_at_dut,
    )


def _dut_reply(
    condition: Condition, reply: Speech, filler: Speech | None, fs: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """(the reply as the DUT plays it, where the answer itself starts in it, samples): cut at
    its labelled start, after the filler and its pause when `condition.filler`, stretched by
    the DUT's clock."""
    r = _cut(reply, fs)
    content_at = 0  # where the answer itself starts in r (after a filler)
    if condition.filler:
        if filler is None:
            raise ValueError("a filler condition needs a filler Speech")
        f = _cut(filler, fs) * (active_rms(r, fs) / (active_rms(_cut(filler, fs), fs) + 1e-20))
        pause = np.zeros(int(rng.uniform(0.35, 0.8) * fs))
        content_at = len(f) + len(pause) + _first_sound(r)
        r = np.concatenate((f, pause, r))
    r = stretch(r, condition.dut_drift_ppm)
    content_at = int(round(content_at * (1 + condition.dut_drift_ppm * 1e-6)))
    return r, content_at


def _context_before(
    condition: Condition,
    context: Speech | None,
    r: np.ndarray,
    lead: int,
    fs: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray | None, int, int]:
    """(the agent's sound before the question or None, where it starts, the stimulus' lead
    after it), all in samples: `lead` itself when `condition` has no context."""
    if not condition.context:
        return None, 0, lead
    ctx_audio = _context_audio(condition, context, fs, active_rms(r, fs))
    gap = condition.context_gap_s
    gap_n = int((float(rng.uniform(0.2, 1.2)) if gap is None else gap) * fs)
    quiet = int(rng.uniform(2.0, 4.0) * fs) if condition.context == "prompt" else 0
    ctx_at = lead + quiet
    return ctx_audio, ctx_at, ctx_at + len(ctx_audio) + gap_n


def _played_stimulus(
    condition: Condition, user: Speech, stim: np.ndarray, fs: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """(the stimulus as it reaches the mouth, how many samples later its speech end comes):
    with `condition.lost_ms`, a stretch lost anywhere in the speech, but never over the
    labelled speech end itself."""
    if not condition.lost_ms > 0:
        return stim, 0
    lo = int(user.speech_start_s * fs) + int(0.05 * fs)
    hi = int(user.speech_end_s * fs) - int(0.15 * fs) - int(condition.lost_ms / 1000 * fs)
    at = int(rng.integers(lo, max(lo + 1, hi)))
    return lossy(stim, fs, condition.lost_ms, condition.loss, at)


@dataclass(frozen=True)
class _BargeIn:
    """A barge-in on one turn: its clip at the mouth from `onset` (turn samples), the reply
    cut after `stop_at_dut` of its samples, then the answer the DUT plays."""

    clip: np.ndarray
    onset: int
    stop_at_dut: int
    answer: np.ndarray


def _barge_in(
    reply: Speech,
    barge_clip: Speech,
    answer: Speech | None,
    r: np.ndarray,
    dut_start: int,
    fs: int,
    rng: np.random.Generator,
) -> _BargeIn:
    """The barge-in on reply audio `r` (the DUT plays it from `dut_start`): the cut falls
    at a moment the reply is sounding (a cut in a pause would stop nothing)."""
    clip = _cut(barge_clip, fs)
    # "Sounding" = the 10 ms envelope stays within 20 dB of the reply's peak for the
    # 50 ms before the cut, so the last audible sample is the cut itself.
    env = np.sqrt(np.convolve(r**2, np.ones(int(0.01 * fs)) / int(0.01 * fs), mode="same"))
    loud_now = env >= 0.1 * env.max()
    w = int(0.05 * fs)
    loud = np.convolve(loud_now.astype(float), np.ones(w), mode="full")[: len(r)] >= w
    for _ in range(200):
        delta = int(rng.uniform(0.3, 1.2) * fs)
        stop_after = int(rng.uniform(0.08, 0.4) * fs)
        if delta + stop_after < len(r) and loud[delta + stop_after - 1]:
            break
    else:
        raise ValueError(f"reply {reply.name!r} is too short for a barge-in")
    return _BargeIn(
        clip=clip,
        onset=dut_start + delta,  # placed at the mouth relative to the DUT's clock start
        stop_at_dut=delta + stop_after,  # samples of reply played before the cut
        answer=_resample((answer or reply).samples, (answer or reply).sample_rate_hz, fs),
    )


def _mix(
    fs: int,
    rng: np.random.Generator,
    lead: int,
    played: np.ndarray,
    dut_start: int,
    r: np.ndarray,
    ctx_audio: np.ndarray | None,
    ctx_at: int,
    barge: _BargeIn | None,
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """(what the mouth plays, what the DUT outputs, where the DUT talks): the turn's sounds
    at their places, long enough for the last of them to ring out."""
    total = dut_start + len(r) + int(1.0 * fs)
    if barge is not None:
        total = max(total, barge.onset + len(barge.clip) + int(2.5 * fs) + len(barge.answer))
    total = max(total, lead + len(played) + int(0.5 * fs))

    mouth = np.zeros(total)
    place(mouth, played, lead)
    if barge is not None:
        place(mouth, barge.clip, barge.onset)
    dut_out = np.zeros(total)
    place(dut_out, r, dut_start)
    talk = [(dut_start, dut_start + len(r))]
    if ctx_audio is not None:
        place(dut_out, ctx_audio, ctx_at)
        talk.append((ctx_at, ctx_at + len(ctx_audio)))
    if barge is not None:
        ans_at = barge.onset + len(barge.clip) + int(rng.uniform(0.6, 1.0) * fs)
        place(dut_out, barge.answer, ans_at)
        talk.append((ans_at, ans_at + len(barge.answer)))
    return mouth, dut_out, talk


def _context_audio(
    condition: Condition, context: Speech | None, fs: int, reply_rms: float
) -> np.ndarray:
    """The agent's sound before the question, at `condition.context_db` re the reply."""
    if condition.context == "earcon":
        x = earcon(fs)
    elif condition.context in ("greeting", "prompt"):
        if context is None:
            raise ValueError(f"a {condition.context!r} context needs the agent's speech")
        x = _cut(context, fs)
    else:
        raise ValueError(f"unknown context {condition.context!r}: greeting, earcon or prompt")
    return x * reply_rms * 10 ** (condition.context_db / 20) / (active_rms(x, fs) + 1e-20)


@dataclass(frozen=True)
class Sources:
    """Corpus speech sorted by role for the generator: users, replies, barge-in clips, babble."""

    questions: tuple[Speech, ...]
    clips: tuple[Speech, ...]
    babble_talkers: tuple[np.ndarray, ...]

    def pick_turn(self, rng: np.random.Generator) -> tuple[Speech, Speech, Speech, Speech]:
        """(user, reply, barge-in clip, answer): reply and answer differ from the user and
        from each other, so a reply reference can only match one place."""
        idx = rng.choice(len(self.questions), size=3, replace=False)
        user, reply, answer = (self.questions[i] for i in idx)
        clip = self.clips[int(rng.integers(len(self.clips)))]
        return user, reply, clip, answer


def corpus_sources(sample_rate_hz: int = 48000) -> Sources:
    """Speech from the committed corpus (harness.corpus), resampled to `sample_rate_hz`."""
    from harness.corpus import Corpus

    corpus = Corpus.load()

    def speech(u) -> Speech:  # noqa: ANN001 - corpus.Utterance
        return Speech(u.load(), u.sample_rate_hz, u.speech_start_s, u.speech_end_s, u.id)

    questions = tuple(
        speech(u)
        for cat in ("short_question", "long_question", "pause")
        for u in corpus.by_category(cat)
    )
    clips = tuple(speech(u) for u in corpus.by_category("barge_in"))
    talkers = tuple(_resample(s.samples, s.sample_rate_hz, sample_rate_hz) for s in questions[::3])
    return Sources(questions, clips, talkers)
