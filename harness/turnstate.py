"""One turn on its way through the analysis' steps (`harness.analysis`, `harness.onset`).

`TurnState` holds a turn's inputs, the `TurnMetrics` fields each step found (by the same
names) and the arrays the next steps work on; it turns into the result (`measured`, or
`refused`). A step that will not give a trustworthy answer raises `Refused` with its reason.
"""

from __future__ import annotations

__all__ = ["Refused", "TurnState"]

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.bargein import ClipAt
from harness.reasons import Discard
from harness.signal.activity import Activity, Segment
from harness.signal.leakage import LeakageFit
from harness.turnmetrics import AnalysisOptions, TurnMetrics


class Refused(Exception):
    """A step's refusal: the turn is discarded for `reason` (with `detail` for people);
    `fields` are what the refusing step still measured (its segments, an overlap)."""

    def __init__(self, reason: Discard, detail: str, **fields: Any) -> None:
        super().__init__(f"{reason}: {detail}")
        self.message = f"{reason}: {detail}"
        self.fields = fields


@dataclass
class TurnState:
    """One turn on its way through the steps: the inputs, what each step found (the fields
    of TurnMetrics it fills, by the same names), and the arrays the next steps work on."""

    opt: AnalysisOptions
    fs: int
    offset_s: float
    ref: np.ndarray
    ear: np.ndarray
    stim: np.ndarray
    speech_end_in_stim_s: float
    ref_channel: int
    notes: list[str]
    found: dict[str, Any] = field(default_factory=dict)
    """TurnMetrics fields found so far, by name."""
    # Set by the steps, in order:
    stim_lag: float = 0.0
    stim_first: int = 0
    speech_end: float = 0.0
    fit_lo: int = 0
    fit_hi: int = 0
    residual: np.ndarray | None = None
    leak: LeakageFit | None = None
    clip_at: ClipAt | None = None
    profile: Callable[[np.ndarray], np.ndarray] | None = None
    act: Activity | None = None
    noise_spans: list[tuple[int, int]] = field(default_factory=list)
    early: list[Segment] = field(default_factory=list)
    reply_segs: list[Segment] = field(default_factory=list)
    seg_power: float = 0.0
    level_dbfs: float = 0.0

    def at(self, sample: float) -> str:
        """A capture sample as seconds on the caller's timeline (for messages)."""
        return f"{sample / self.fs + self.offset_s:.3f} s"

    def refused(self, message: str, fields: dict[str, Any]) -> TurnMetrics:
        got = {"mode": "blind", "sample_rate_hz": self.fs, "notes": self.notes}
        got.update(self.found)
        got.update(fields)
        return TurnMetrics(
            ttfa_ms=None,
            confidence=0.0,
            speech_end_s=got.pop("speech_end_s", None),
            reply_onset_s=got.pop("reply_onset_s", None),
            reply_end_s=got.pop("reply_end_s", None),
            segments=got.pop("segments", []),
            gaps_ms=got.pop("gaps_ms", []),
            discard=message,
            **got,
        )

    def measured(self, onset: float, confidence: float) -> TurnMetrics:
        got = {"mode": "blind", "sample_rate_hz": self.fs, "notes": self.notes}
        got.update(self.found)
        return TurnMetrics(
            ttfa_ms=(onset - self.speech_end) / self.fs * 1000,
            confidence=confidence,
            speech_end_s=got.pop("speech_end_s"),
            reply_onset_s=onset / self.fs,
            reply_end_s=got.pop("reply_end_s", None),
            segments=got.pop("segments", []),
            gaps_ms=got.pop("gaps_ms", []),
            discard=None,
            **got,
        )
