"""Synthetic turns with exactly known timing, for tests, the accuracy benchmark and the demo.

A turn is built the way a real rig would record it: the stimulus (user speech) is played at
the mouth and looped back into the ref channel; the DUT's reply, placed a known time after
the labelled end of the user's speech, reaches the ear mic through a room (direct path
delay, optional reverberation from pyroomacoustics); the ear also hears the mouth (leakage),
noise, and may run on its own clock (drift). An optional barge-in clip is played at the
mouth at a known time after the reply started, and the DUT's output is cut a known time
after that, then it answers.

The truth is defined on the DUT's output: the reply audio starts at its labelled speech start
(it is cut there), and its first sound is its first sample within 50 dB of its peak; the
first acoustic event at the ear is that sample arriving over the direct path.
docs/measurement.md states the same definition from the analysis side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import scipy.signal as ss

SPEED_OF_SOUND_M_S = 343.0


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


@dataclass(frozen=True)
class Truth:
    """What really happened, in seconds of the capture timeline (ref clock)."""

    speech_end_s: float
    reply_onset_s: float
    ttfa_ms: float
    barge_in_onset_s: float | None = None
    stop_s: float | None = None
    stop_latency_ms: float | None = None


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


def _resample(x: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    if from_hz == to_hz:
        return np.asarray(x, dtype=np.float64)
    g = math.gcd(from_hz, to_hz)
    return ss.resample_poly(np.asarray(x, dtype=np.float64), to_hz // g, from_hz // g)


def _stretch(x: np.ndarray, ppm: float) -> np.ndarray:
    """x played/recorded by a clock `ppm` fast relative to the reference: longer by (1+ppm)."""
    if ppm == 0:
        return x
    new_len = int(round(len(x) * (1 + ppm * 1e-6)))
    return ss.resample(x, new_len)


def _place(out: np.ndarray, x: np.ndarray, at: int) -> None:
    end = min(len(out), at + len(x))
    if end > at:
        out[at:end] += x[: end - at]


def _fractional_delay(x: np.ndarray, delay_samples: float, length: int) -> np.ndarray:
    """x delayed by a (fractional) number of samples, band-limited, output `length` long."""
    n = 1 << int(math.ceil(math.log2(max(len(x) + int(delay_samples) + 64, length))))
    spec = np.fft.rfft(x, n)
    k = np.arange(len(spec))
    spec *= np.exp(-2j * np.pi * k * delay_samples / n)
    return np.fft.irfft(spec, n)[:length]


def _active_rms(x: np.ndarray, fs: int) -> float:
    """RMS over the frames within 30 dB of the loudest (an 'active speech level')."""
    frame = max(1, int(0.02 * fs))
    n = len(x) // frame
    if n == 0:
        return float(np.sqrt(np.mean(x**2))) if x.size else 0.0
    p = np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1)
    active = p[p >= p.max() * 1e-3]
    return float(np.sqrt(np.mean(active)))


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS 1/f noise of n samples (white noise shaped in the frequency domain)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    y = np.fft.irfft(spec / np.sqrt(f), n)
    return y / (np.sqrt(np.mean(y**2)) + 1e-20)


def babble_noise(n: int, talkers: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS babble: several talkers (at the output rate) looped with random offsets, summed."""
    out = np.zeros(n)
    for t in talkers:
        if len(t) == 0:
            continue
        reps = int(math.ceil((n + len(t)) / len(t))) + 1
        looped = np.tile(t, reps)
        off = int(rng.integers(0, len(t)))
        out += looped[off : off + n] / (_active_rms(t, 16000) + 1e-20)
    return out / (np.sqrt(np.mean(out**2)) + 1e-20)


def _room_rirs(
    rt60_s: float, fs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, float]:
    """(DUT speaker -> ear RIR, mouth speaker -> ear RIR, direct-path delay DUT->ear in samples).

    The delay includes pyroomacoustics's constant offset of frac_delay_length // 2 samples.
    """
    import pyroomacoustics as pra

    # pyroomacoustics high-passes each RIR with a zero-phase filter, which puts a faint
    # echo of the direct sound *before* it; a real room is causal.
    pra.constants.set("rir_hpf_enable", False)
    room_dim = [float(rng.uniform(4.0, 7.0)), float(rng.uniform(3.5, 5.5)), 2.8]
    e_absorption, max_order = pra.inverse_sabine(rt60_s, room_dim)
    room = pra.ShoeBox(
        room_dim,
        fs=fs,
        materials=pra.Material(e_absorption),
        max_order=min(max_order, 40),
        use_rand_ism=False,
    )
    ear = np.array([room_dim[0] / 2, room_dim[1] / 2, 1.2])
    # DUT speaker close to the measurement mic, the mouth speaker further away.
    dut_dist = float(rng.uniform(0.3, 1.0))
    dut = ear + np.array([dut_dist, 0.0, 0.0])
    mouth = ear + np.array([-1.0, float(rng.uniform(0.5, 1.5)), 0.0])
    room.add_source(list(dut))
    room.add_source(list(mouth))
    room.add_microphone(ear)
    room.compute_rir()
    global_delay = pra.constants.get("frac_delay_length") // 2
    direct = global_delay + dut_dist / SPEED_OF_SOUND_M_S * fs
    return np.asarray(room.rir[0][0]), np.asarray(room.rir[0][1]), float(direct)


def make_turn(
    condition: Condition,
    user: Speech,
    reply: Speech,
    rng: np.random.Generator,
    *,
    ttfa_ms: float | None = None,
    barge_clip: Speech | None = None,
    answer: Speech | None = None,
    babble_talkers: list[np.ndarray] | None = None,
) -> SyntheticTurn:
    """Build one synthetic turn under `condition` with known truth.

    `ttfa_ms` defaults to a random value in 200..1500 ms. With `condition.barge_in`, a
    `barge_clip` is played 300..1200 ms after the reply's onset at the ear and the DUT's
    output is cut 80..400 ms after the clip's onset (at a moment the reply is sounding);
    `answer` (default: the clip's reply) follows 0.6..1.0 s after the clip ended.
    """
    fs = condition.sample_rate_hz
    stim = _resample(user.samples, user.sample_rate_hz, fs)
    if ttfa_ms is None:
        ttfa_ms = float(rng.uniform(200, 1500))

    # The reply as the DUT plays it: cut at its labelled start, stretched by the DUT's clock.
    r = _resample(reply.samples, reply.sample_rate_hz, fs)
    r = r[int(round(reply.speech_start_s * fs)) : int(round(reply.speech_end_s * fs)) + 1]
    r = _stretch(r, condition.dut_drift_ppm)

    lead = int(rng.uniform(0.3, 0.8) * fs)
    speech_end = lead + user.speech_end_s * fs  # exact, in capture samples
    # Integer placement of the reply on the DUT's output; the fractional part of the truth
    # comes from the acoustic path.
    dut_start = int(math.ceil(speech_end + ttfa_ms / 1000 * fs))

    clip = None
    barge_onset = stop_at_dut = None
    answer_audio = None
    if condition.barge_in:
        if barge_clip is None:
            raise ValueError("a barge-in condition needs a barge_clip")
        clip = _resample(barge_clip.samples, barge_clip.sample_rate_hz, fs)
        clip = clip[
            int(round(barge_clip.speech_start_s * fs)) : int(round(barge_clip.speech_end_s * fs))
            + 1
        ]
        # Cut at a moment the reply is sounding (a cut in a pause would stop nothing).
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
        barge_onset = dut_start + delta  # placed at the mouth relative to the DUT's clock start
        stop_at_dut = delta + stop_after  # samples of reply played before the cut
        r = r[:stop_at_dut]
        answer_audio = _resample((answer or reply).samples, (answer or reply).sample_rate_hz, fs)

    total = dut_start + len(r) + int(1.0 * fs)
    if clip is not None:
        total = max(total, barge_onset + len(clip) + int(2.5 * fs) + len(answer_audio))
    total = max(total, lead + len(stim) + int(0.5 * fs))

    mouth = np.zeros(total)
    _place(mouth, stim, lead)
    if clip is not None:
        _place(mouth, clip, barge_onset)
    dut_out = np.zeros(total)
    _place(dut_out, r, dut_start)
    if clip is not None:
        ans_at = barge_onset + len(clip) + int(rng.uniform(0.6, 1.0) * fs)
        _place(dut_out, answer_audio, ans_at)

    if condition.rt60_s:
        rir_dut, rir_mouth, direct = _room_rirs(condition.rt60_s, fs, rng)
        ear_reply = ss.oaconvolve(dut_out, rir_dut)[:total]
        ear_mouth = ss.oaconvolve(mouth, rir_mouth)[:total]
        ear_mouth /= np.max(np.abs(rir_mouth)) + 1e-20  # leakage level set by its direct path
        ear_reply /= np.max(np.abs(rir_dut)) + 1e-20
    else:
        direct = float(rng.uniform(0.5, 3.0) / 1000 * fs)  # 17..100 cm, fractional
        ear_reply = _fractional_delay(dut_out, direct, total)
        ear_mouth = _fractional_delay(mouth, float(rng.uniform(2.0, 6.0) / 1000 * fs), total)

    ear = ear_reply.copy()
    if condition.leakage_db is not None:
        ear += ear_mouth * 10 ** (condition.leakage_db / 20)
    if condition.noise:
        reply_level = _active_rms(ear_reply[dut_start : dut_start + len(r) + int(0.1 * fs)], fs)
        if condition.noise == "white":
            noise = rng.standard_normal(total)
        elif condition.noise == "pink":
            noise = pink_noise(total, rng)
        elif condition.noise == "babble":
            if not babble_talkers:
                raise ValueError("babble noise needs babble_talkers")
            noise = babble_noise(total, babble_talkers, rng)
        else:
            raise ValueError(f"unknown noise {condition.noise!r}: white, pink or babble")
        ear += noise * reply_level * 10 ** (-condition.snr_db / 20)
    ear *= 10 ** (condition.ear_gain_db / 20)
    if condition.ear_drift_ppm:
        ear = _stretch(ear, condition.ear_drift_ppm)[:total]
        ear = np.pad(ear, (0, total - len(ear)))

    capture = np.stack([mouth, ear], axis=1)
    peak = float(np.max(np.abs(capture)))
    if peak > 0.98:
        capture *= 0.9 / peak
    if condition.pcm16:
        capture = np.round(capture * 32767) / 32767

    # The reply's first sound is its first sample within 50 dB of its peak (the rule the
    # analysis uses for a reply reference; the cut at the label leaves it within a sample
    # or two of the cut).
    mag = np.abs(r)
    first = int(np.argmax(mag >= mag.max() * 10 ** (-50 / 20))) if mag.size else 0
    onset = dut_start + first + direct
    truth = Truth(
        speech_end_s=speech_end / fs,
        reply_onset_s=onset / fs,
        ttfa_ms=(onset - speech_end) / fs * 1000,
    )
    if clip is not None:
        stop = dut_start + stop_at_dut + direct
        truth = replace(
            truth,
            barge_in_onset_s=barge_onset / fs,
            stop_s=stop / fs,
            stop_latency_ms=(stop - barge_onset) / fs * 1000,
        )
    return SyntheticTurn(
        capture=capture.astype(np.float32) if not condition.pcm16 else capture,
        sample_rate_hz=fs,
        stimulus=stim,
        speech_end_s=user.speech_end_s,
        reply=r,
        barge_in_clip=clip,
        truth=truth,
        condition=condition,
    )


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
