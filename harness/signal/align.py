"""Where a stimulus played, and where its labelled speech end landed, when the copy in the ref
is not intact.

A stimulus that crossed a network before it reached the ref is not always the file: packet
loss drops a stretch (what follows comes early), concealment replaces one (same length,
other samples), a jitter buffer stretches one (what follows comes late). One correlation of
the whole file then peaks where its larger part lines up, which can be tens of ms away from
where the speech end is, or nowhere clear at all. What a TTFA needs is the speech end, so the
part of the stimulus that holds it decides:

1. the whole stimulus, located in the ref (the evidence that this is the right place);
2. its head (the first `window_s` of sound) and its tail (the last `window_s` before the
   speech end), each located near where the whole put them;
3. the speech's last part (0.2 s, else 0.15 or 0.1 s) must line up where that placement
   puts it: then the whole decides, as it always did, when the tail agreed with it, and the
   tail otherwise; a last part clearly elsewhere decides instead (the stretch was lost inside
   the tail); no last part found anywhere near: refused;
4. the warp is how far the speech end landed from where the head alone would have put it
   (0 when the head and the tail agree).

Pure numpy: arrays in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.signal.correlate import Match, locate, refine_lag

MIN_CONFIDENCE = 0.5
"""A location needs this much of `Match.confidence` to be used."""
_AGREE_SAMPLES = 1.0


@dataclass(frozen=True)
class StimulusAlignment:
    """Where the stimulus sits in the ref (samples of the ref).

    onset_lag: position of stimulus sample 0, from its head (or the whole).
    speech_end: where the labelled speech end landed.
    match: the correlation that placed the speech end (its confidence is the alignment's).
    by: "whole" (the stimulus as one piece), "tail" (its last `window_s` of speech) or
        "end" (its last 0.1-0.2 s: the stretch was lost inside the tail).
    warp_samples: speech_end minus where the head alone puts it (negative: audio lost,
        positive: audio stretched or inserted); 0 when they agree; None when the head was
        not found, so how much was lost is not known.
    """

    onset_lag: float
    speech_end: float
    match: Match
    by: str
    warp_samples: float | None = 0.0

    @property
    def confidence(self) -> float:
        return self.match.confidence


def _near(
    ref: np.ndarray, part: np.ndarray, fs: int, expected: float, radius: int
) -> tuple[float, Match] | None:
    """(lag, match) of `part` within `radius` samples of `expected`, if confident. The lag
    is the correlation's parabolic peak (a tenth of a sample for speech): enough to tell
    whether two parts agree; `_refined` pins the one that decides."""
    lo = max(0, int(expected) - radius)
    m = locate(ref, part, fs, search=(lo, int(expected) + radius + 1))
    if m.confidence < MIN_CONFIDENCE:
        return None
    return m.lag_samples, m


def _refined(ref: np.ndarray, part: np.ndarray, lag: float) -> float:
    return refine_lag(ref, part, lag)


def align_stimulus(
    ref: np.ndarray,
    stim: np.ndarray,
    fs: int,
    speech_end: float,
    first_sound: int,
    *,
    search: tuple[int, int] | None = None,
    window_s: float = 0.5,
    max_warp_s: float = 0.25,
) -> StimulusAlignment | Match:
    """Align `stim` in `ref`, deciding the speech end (samples into `stim`) by its own part.

    `first_sound` is the stimulus' first sample of sound; `search` limits where its start may
    be in `ref`. Returns the alignment, or the best `Match` there was when neither the whole
    nor the part holding the speech end was found (the caller refuses with its figures).
    """
    # The parts end at the last sound at or before the labelled end (a label may sit in the
    # silence after the last word; a silent part lines up with nothing).
    se = int(round(speech_end))
    before = np.abs(stim[:se])
    loud = np.flatnonzero(before >= (before.max() if before.size else 0.0) * 10 ** (-50 / 20))
    se = int(loud[-1]) + 1 if loud.size else se
    radius = int(max_warp_s * fs)
    win = int(window_s * fs)
    whole = locate(ref, stim, fs, search=search)
    whole_ok = whole.confidence >= MIN_CONFIDENCE
    lag = refine_lag(ref, stim, whole.lag_samples) if whole_ok else whole.lag_samples
    tail_lo = max(first_sound, se - win)
    if se - tail_lo < int(0.1 * fs):  # too little speech for parts: the whole decides
        return StimulusAlignment(lag, lag + speech_end, whole, "whole") if whole_ok else whole
    if whole_ok:
        tail = _near(ref, stim[tail_lo:se], fs, lag + tail_lo, radius)
    else:
        m = locate(ref, stim[tail_lo:se], fs, search=_shifted(search, tail_lo))
        tail = (m.lag_samples, m) if m.confidence >= MIN_CONFIDENCE else None
    if not whole_ok and tail is None:
        return whole
    head_part = stim[first_sound : first_sound + win]
    agree = whole_ok and tail is not None and abs(tail[0] - (lag + tail_lo)) <= _AGREE_SAMPLES
    base = lag if agree or tail is None else tail[0] - tail_lo
    # The last part of the speech, where the placement above puts it. A stretch lost inside
    # the tail, with more of the tail before it than after, moves the tail's peak with the
    # whole's, so the speech end is only trusted where its own last part lines up.
    end = _speech_end_part(ref, stim, fs, se, first_sound, base, radius)
    if isinstance(end, Match):
        return end
    if end == "here" and agree:
        # The whole lines up with its larger part; if that is not the head, the head
        # says where the stimulus started (and how much went missing after it).
        head = _near(ref, head_part, fs, lag + first_sound, radius)
        if head is not None and abs(head[0] - (lag + first_sound)) > _AGREE_SAMPLES:
            onset = _refined(ref, head_part, head[0]) - first_sound
            return StimulusAlignment(onset, lag + speech_end, whole, "whole", lag - onset)
        return StimulusAlignment(lag, lag + speech_end, whole, "whole")
    if end == "here":
        assert tail is not None
        end_at = _refined(ref, stim[tail_lo:se], tail[0]) - tail_lo + speech_end
        match, by = tail[1], "tail"
    else:
        part_lo, part_lag, match = end
        end_at = _refined(ref, stim[part_lo:se], part_lag) - part_lo + speech_end
        by = "end"
    head = _near(ref, head_part, fs, (lag if whole_ok else base) + first_sound, radius)
    if head is not None:
        head = (_refined(ref, head_part, head[0]), head[1])
    onset = head[0] - first_sound if head is not None else end_at - speech_end
    warp = end_at - (onset + speech_end) if head is not None else None
    return StimulusAlignment(onset, end_at, match, by, warp)


_END_PARTS_S = (0.2, 0.15, 0.1)
_LINES_UP = 0.8


def _speech_end_part(
    ref: np.ndarray,
    stim: np.ndarray,
    fs: int,
    se: int,
    first_sound: int,
    base: float,
    radius: int,
) -> str | tuple[int, float, Match] | Match:
    """Whether the speech's last part lies where the stimulus placed at `base` puts it.

    For the last 0.2, 0.15 and 0.1 s (the shorter ones when a stretch was lost inside the
    longer): "here" when the part's normalised correlation at that place is 0.8 or more;
    (part start in `stim`, its lag in `ref`, match) when it is clearly elsewhere within
    `radius`; when no such part is found, the longest part's best match near `base` (for
    the refusal's figures).
    """
    for part_s in _END_PARTS_S:
        lo = max(first_sound, se - int(part_s * fs))
        if se - lo < int(0.05 * fs):
            break
        part = stim[lo:se]
        at = base + lo
        here = locate(ref, part, fs, search=(max(0, int(at) - 2), int(at) + 3))
        if here.peak >= _LINES_UP:
            return "here"
        found = _near(ref, part, fs, at, radius)
        if found is not None and abs(found[0] - at) > _AGREE_SAMPLES:
            return lo, found[0], found[1]
    lo = max(first_sound, se - int(_END_PARTS_S[0] * fs))
    at = base + lo
    return locate(ref, stim[lo:se], fs, search=(max(0, int(at) - radius), int(at) + radius + 1))


def _shifted(search: tuple[int, int] | None, by: int) -> tuple[int, int] | None:
    """A search range for a stimulus' start, moved to where a part `by` samples in starts."""
    return None if search is None else (search[0] + by, search[1] + by)
