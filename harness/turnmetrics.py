"""What one turn measured (`TurnMetrics`) and the knobs of measuring it (`AnalysisOptions`):
the values `harness.analysis` returns, `tympan analyze --json` prints, and a turn's record
holds. docs/measurement.md says what each field means.

Pure: the standard library only.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field

from harness.reasons import Discard


@dataclass(frozen=True)
class AnalysisOptions:
    """Knobs of the analysis; the defaults are what `tympan analyze` uses.

    min_gap_s: silences shorter than this inside a reply do not split it into segments.
    stop_silence_s: after a barge-in, the interrupted reply has stopped once the ear stays
        quiet this long.
    min_response_s: no agent answers a barge-in sooner than this after the user stopped;
        audio before then is residual from the interrupted reply.
    early_reply_s: sound at the ear that starts before the user's speech ended and lasts
        this long past it is the agent talking over the user (discard), not leakage.
    min_snr_db: replies less than this far above the noise floor are discarded (too noisy).
    min_confidence: below this, discard rather than answer.
    too_quiet_dbfs: a reply whose active level is below this is discarded (too quiet).
    leakage_response_s: length of the fitted mouth->ear response.
    max_drift_ppm: clock drift estimates beyond this are taken for a failed fit, not a clock.
    dry_path: the ear hears the DUT with no room between them (a virtual loopback, a
        free-field sim): a decay just before a barge-in stop is the reply's own sound (a word
        ending), not the room ringing, so the stop is where the sound ends.
    filler_max_s / filler_gap_s: a reply's first stretch of at most filler_max_s followed by
        at least filler_gap_s of quiet is a filler ("Mm-hm.", "Let me check."): the answer
        itself (`ttfa_content_ms`) starts with the next stretch.
    """

    min_gap_s: float = 0.15
    stop_silence_s: float = 0.3
    min_response_s: float = 0.2
    early_reply_s: float = 0.15
    min_snr_db: float = 8.0
    min_confidence: float = 0.3
    too_quiet_dbfs: float = -70.0
    max_drift_ppm: float = 1000.0
    leakage_response_s: float = 0.08
    dry_path: bool = False
    filler_max_s: float = 1.0
    filler_gap_s: float = 0.3


BARGE_IN_FIELDS = (
    "barge_in_onset_s",
    "stop_latency_ms",
    "residual_ms",
    "ring_down_ms",
    "stop_refused",
)
"""The fields that only mean something with a barge-in clip (left out of the JSON without)."""


@dataclass(frozen=True)
class TurnMetrics:
    """What one turn measured. Times are seconds in the capture's timeline (ref clock).

    ttfa_ms: labelled end of user speech at the mouth -> first acoustic event of the reply at
        the ear; None when discarded.
    confidence: 0..1, how much to trust ttfa_ms (see docs/measurement.md).
    segments: spoken stretches of the reply [[start_s, end_s], ...]; gaps_ms between them.
    discard: None, or a reason starting with one of the module's discard words.
    barge_in_onset_s / stop_latency_ms / residual_ms: present when a barge-in clip was given.
    context_segments: sound at the ear that started before the user's speech ended and is
        not the reply (a greeting, an earcon, an earlier reply): context, neither noise nor
        the reply.
    overlap_ms: the agent talked over the user: its reply sounded this long before the
        user's speech ended (ttfa_ms is then negative); None when it did not.
    ttfa_content_ms: speech end -> the first sound of the answer itself, after a filler
        (the rule: AnalysisOptions.filler_max_s); equal to ttfa_ms without a filler.
    content_onset_s: where the answer after a filler starts; None without a filler.
    ring_down_ms: the room's ring-down found before the end of the interrupted reply's sound
        (a barge-in's blind stop is then refused); None without one.
    stop_refused: why a barge-in's stop latency was not measured (for people); None when it
        was, or without a barge-in.
    stimulus_warp_ms: the ref's copy of the stimulus is this much shorter (-) or longer (+)
        than the file before its speech end (audio lost or stretched on the way); 0 intact
        (or concealed: same length); None when it is not the file's but its start was not
        found, so how much went missing is not known.
    """

    ttfa_ms: float | None
    confidence: float
    speech_end_s: float | None
    reply_onset_s: float | None
    reply_end_s: float | None
    segments: list[list[float]]
    gaps_ms: list[float]
    discard: str | None
    mode: str = "blind"
    sample_rate_hz: int = 0
    stimulus_onset_s: float | None = None
    stimulus_confidence: float = 0.0
    snr_db: float | None = None
    leakage_reduction_db: float = 0.0
    ear_drift_ppm: float | None = None
    reply_drift_ppm: float | None = None
    barge_in_onset_s: float | None = None
    stop_latency_ms: float | None = None
    residual_ms: float | None = None
    context_segments: list[list[float]] = field(default_factory=list)
    overlap_ms: float | None = None
    ttfa_content_ms: float | None = None
    content_onset_s: float | None = None
    stimulus_warp_ms: float | None = 0.0
    ring_down_ms: float | None = None
    stop_refused: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def discard_reason(self) -> Discard | None:
        """The typed reason of `discard` (None when measured)."""
        return Discard.of(self.discard)

    @classmethod
    def refused(cls, discard: str, sample_rate_hz: int) -> TurnMetrics:
        """A turn with nothing measured: only the reason (`discard`)."""
        return cls(
            ttfa_ms=None,
            confidence=0.0,
            speech_end_s=None,
            reply_onset_s=None,
            reply_end_s=None,
            segments=[],
            gaps_ms=[],
            discard=discard,
            sample_rate_hz=sample_rate_hz,
        )

    def to_json(self, *, barge_in: bool | None = None) -> dict:
        """The JSON object `tympan analyze --json` prints (barge-in keys only with a clip)."""
        d = asdict(self)
        if barge_in is False or (barge_in is None and self.barge_in_onset_s is None):
            for k in BARGE_IN_FIELDS:
                d.pop(k)
        return {k: _round(v) for k, v in d.items()}


def _round(v: object) -> object:
    """Floats to 6 decimals (1 µs in seconds), NaN/inf to None, through lists."""
    if isinstance(v, list):
        return [_round(x) for x in v]
    if isinstance(v, float):
        return round(v, 6) if math.isfinite(v) else None
    return v


_TIME_FIELDS = (
    "speech_end_s",
    "reply_onset_s",
    "reply_end_s",
    "stimulus_onset_s",
    "barge_in_onset_s",
    "content_onset_s",
)


def shift_metrics(m: TurnMetrics, offset_s: float) -> TurnMetrics:
    """`m` with every capture-timeline time moved by `offset_s` (a window's start)."""
    if offset_s == 0:
        return m
    changes: dict = {k: getattr(m, k) + offset_s for k in _TIME_FIELDS if getattr(m, k) is not None}
    changes["segments"] = [[a + offset_s, b + offset_s] for a, b in m.segments]
    changes["context_segments"] = [[a + offset_s, b + offset_s] for a, b in m.context_segments]
    changes["notes"] = list(m.notes)
    return dataclasses.replace(m, **changes)
