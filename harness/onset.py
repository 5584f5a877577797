"""Step 4 of the analysis (`harness.analysis`): the reply's onset, blind or by reference.

`onset_blind` takes the reply's first sound in the leakage-free ear, refined in the noise,
with the confidence its SNR allows; `onset_by_reference` finds the DUT's own audio in it by
correlation. Each works on the `TurnState` the earlier steps filled, records what it finds
in it, and returns ``(onset, confidence)`` (onset in capture samples) or raises `Refused`.
The pieces they use are `harness.reply`'s and `harness.bargein`'s.
"""

from __future__ import annotations

__all__ = ["onset_blind", "onset_by_reference"]

import itertools
import math

import numpy as np

from harness.bargein import reference_stop, residual_after
from harness.reasons import Discard
from harness.reply import ReplyAt, blind_onset, hears_mouth, locate_reply, rings_before
from harness.signal.resample import first_sound, mono, resample
from harness.turnstate import Refused, TurnState


def onset_by_reference(
    t: TurnState, reply_reference: np.ndarray, reply_reference_rate_hz: int | None
) -> tuple[float, float]:
    """Step 4, reply-reference mode: the DUT's own audio, found by correlation, decides.

    Its evidence is the correlation peak, which holds up far below the SNR at which an
    energy detector gives up, so the blind checks do not apply. The stop is where that
    audio stops in the ear, when it can be pinned."""
    fs, found, notes = t.fs, t.found, t.notes
    assert t.residual is not None and t.act is not None
    rr = mono(reply_reference)
    rr_rate = reply_reference_rate_hz or fs
    if rr_rate != fs:
        rr = resample(rr, rr_rate, fs)
        notes.append(f"reply reference resampled from {rr_rate} Hz to {fs} Hz")
    # From the stimulus' start on: an agent that talks over the user starts before its end.
    at = locate_reply(t.residual, rr, fs, t.fit_lo)
    if not isinstance(at, ReplyAt):
        raise Refused(Discard.LOW_CONFIDENCE, at)
    if at.drift_ppm is not None:
        found["reply_drift_ppm"] = at.drift_ppm
    onset = at.onset
    found["mode"] = "reply-reference"
    if t.clip_at is not None:
        body = rr[first_sound(rr) :]
        stop, note = reference_stop(
            t.residual, body, onset, found.get("reply_drift_ppm"), t.clip_at, fs
        )
        if note:
            # The ear's segments (with their own refusals) stand instead.
            notes.append(f"{note}; the stop latency is the ear's segments'")
        if stop is not None:
            found["stop_latency_ms"] = (stop - t.clip_at.onset) / fs * 1000
            found["residual_ms"] = residual_after(
                t.act.segments, stop, t.clip_at, t.opt.min_response_s, fs
            )
            found["stop_refused"] = None
    # Every blind segment still sounding at the located onset or after it is the reply's
    # (the first one starts at the onset).
    segs = [[s.start / fs, s.end / fs] for s in t.act.segments if s.end > onset]
    if segs:
        segs[0][0] = onset / fs
    else:
        segs.append([onset / fs, (onset + len(rr) - first_sound(rr)) / fs])
    found["segments"] = segs
    found["gaps_ms"] = [(b[0] - a[1]) * 1000 for a, b in itertools.pairwise(segs)]
    found["reply_end_s"] = segs[-1][1]
    return onset, at.confidence


def onset_blind(t: TurnState) -> tuple[float, float]:
    """Step 4, blind: the reply's first sound in the ear, refined in the noise, with the
    confidence its SNR allows; refused when it is not clearly the agent's reply."""
    fs, opt, found = t.fs, t.opt, t.found
    assert t.act is not None and t.residual is not None
    speech_end, early, reply_segs = t.speech_end, t.early, t.reply_segs
    if early and (not opt.dry_path or hears_mouth(t.ear, t.ref, t.fit_lo, int(early[0].start), fs)):
        # The ear's sound began before the user's speech ended. Where the ear hears only
        # the DUT (dry_path: a loopback, a line) that sound is the agent talking over the
        # user, timed below. Elsewhere it may be anything (a burst of noise, another
        # talker, a fan coming on: a -500 ms "TTFA" at confidence 1 was seen), or the
        # agent under what the leakage fit left of the user's voice: its overlap is
        # measured, its onset is not reported as a TTFA.
        s = early[0]
        why = (
            "the ear also hears the mouth, so its onset is not timed blind"
            if opt.dry_path
            else "whether it is the agent is not known from the ear alone (the ear may "
            "hold other sound)"
        )
        raise Refused(
            Discard.EARLY_REPLY,
            f"sound at the ear from {t.at(s.start)}, before "
            f"the user's speech ended at {t.at(speech_end)}, lasting "
            f"{(s.end - speech_end) / fs * 1000:.0f} ms past it (the agent talking over the "
            f"user?); {why}: give the reply reference, or --dry-path when the ear is the "
            "agent's output alone",
            segments=[[s.start / fs, s.end / fs]],
            overlap_ms=(speech_end - s.start) / fs * 1000,
        )
    floor = t.act.floor
    if not reply_segs:
        raise Refused(
            Discard.NO_REPLY,
            f"no sound at the ear after the user's speech ended at "
            f"{t.at(speech_end)} (noise floor {floor.level_db:.1f} dBFS)",
        )
    if t.level_dbfs < opt.too_quiet_dbfs:
        raise Refused(
            Discard.TOO_QUIET,
            f"reply level {t.level_dbfs:.1f} dBFS is below {opt.too_quiet_dbfs:.0f} dBFS",
        )
    snr_db = found["snr_db"]
    if snr_db < opt.min_snr_db:
        raise Refused(
            Discard.TOO_NOISY,
            f"reply only {snr_db:.1f} dB above the noise floor (need {opt.min_snr_db:.0f} dB)",
        )
    onset_snr_db = snr_db
    if t.profile is not None:
        # Where the mouth's leakage has not rung down yet, its residue is noise too.
        residue = float(t.profile(np.array([int(reply_segs[0].start)]))[0])
        if residue > 0:
            onset_snr_db = min(snr_db, 10 * math.log10(t.seg_power / residue))
    y = t.act.band
    ringing = rings_before(y, int(reply_segs[0].start), t.noise_spans, fs, floor.power)
    onset, confidence = blind_onset(
        t.residual, reply_segs, t.noise_spans, fs, onset_snr_db, y, ringing=ringing
    )
    found["segments"][0][0] = onset / fs  # one onset: the refined one
    if confidence < opt.min_confidence:
        raise Refused(
            Discard.LOW_CONFIDENCE,
            f"reply onset at {t.at(onset)} is not sharp "
            f"enough to time (confidence {confidence:.2f} < {opt.min_confidence:.2f}, "
            f"SNR {snr_db:.1f} dB)",
        )
    return onset, confidence
