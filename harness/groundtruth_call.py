"""Whole synthetic calls: several turns as `harness.groundtruth` composes them, one after
another in one capture through one acoustic path, each turn's truth on the call's timeline
(`make_conversation`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from harness.groundtruth import Condition, Sources, Truth, _compose_turn, _render, _Scene, _Turn


@dataclass(frozen=True)
class SyntheticConversation:
    """A whole multi-turn call in one capture (samples, 2: ref, ear), with each turn's
    stimulus, its labelled speech end (seconds into the stimulus), the DUT's reply audio,
    the barge-in clip (or None) and the truth (capture seconds)."""

    capture: np.ndarray
    sample_rate_hz: int
    stimuli: list[np.ndarray]
    speech_ends_s: list[float]
    replies: list[np.ndarray]
    clips: list[np.ndarray | None]
    truths: list[Truth]
    condition: Condition
    names: list[str]
    """The corpus id of each turn's stimulus."""


def make_conversation(
    condition: Condition,
    sources: Sources,
    rng: np.random.Generator,
    *,
    turns: int = 5,
) -> SyntheticConversation:
    """`turns` turns of `condition` one after another in one capture, as a lab or a call
    records them: each turn as `make_turn` composes it (its context, a greeting, only in
    the first), 0..0.7 s more quiet between them, one acoustic path for the whole call. No
    stimulus plays twice within three turns (the analysis finds each after the previous)."""
    fs = condition.sample_rate_hz
    composed: list[_Turn] = []
    names: list[str] = []
    recent: list[str] = []
    for k in range(turns):
        while True:
            user, reply, clip, answer = sources.pick_turn(rng)
            if user.name not in recent:
                break
        recent = [*recent[-1:], user.name]
        names.append(user.name)
        cond_k = condition if k == 0 else replace(condition, context=None)
        context = None
        if cond_k.context in ("greeting", "prompt"):
            others = [q for q in sources.questions if q.name not in (user.name, reply.name)]
            context = others[int(rng.integers(len(others)))]
        filler = None
        if cond_k.filler:
            fillers = [c for c in sources.clips if c.speech_end_s - c.speech_start_s <= 0.9]
            filler = fillers[int(rng.integers(len(fillers)))]
        t = _compose_turn(
            cond_k, user, reply, rng, barge_clip=clip, answer=answer, context=context, filler=filler
        )
        composed.append(t)
    offsets, pos = [], 0
    for t in composed:
        offsets.append(pos)
        pos += len(t.mouth) + int(rng.uniform(0.0, 0.7) * fs)
    mouth, dut_out = np.zeros(pos), np.zeros(pos)
    talk: list[tuple[int, int]] = []
    for t, off in zip(composed, offsets, strict=True):
        mouth[off : off + len(t.mouth)] += t.mouth
        dut_out[off : off + len(t.dut_out)] += t.dut_out
        talk += [(a + off, b + off) for a, b in t.talk]
    lo, hi = composed[0].level_span
    scene = _Scene(mouth, dut_out, (lo + offsets[0], hi + offsets[0]), tuple(talk))
    capture, direct = _render(condition, scene, rng, list(sources.babble_talkers))
    return SyntheticConversation(
        capture=capture.astype(np.float32) if not (condition.pcm16 or condition.codec) else capture,
        sample_rate_hz=fs,
        stimuli=[t.stimulus for t in composed],
        speech_ends_s=[t.speech_end_in_stimulus_s for t in composed],
        replies=[t.reply for t in composed],
        clips=[t.clip for t in composed],
        truths=[t.truth(direct, off) for t, off in zip(composed, offsets, strict=True)],
        condition=condition,
        names=names,
    )
