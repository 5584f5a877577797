"""One played turn with everything derived from it: what the session hands to tests, the
judge and the report (`TurnOutcome`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.fusion import StageBreakdown
from harness.reasons import Timeout
from harness.records import Check
from harness.stalls import TurnStalls


@dataclass
class TurnOutcome:
    """A played turn with everything derived from it.

    result: the scenario's `TurnResult` (capture, metrics, events, evidence paths).
    stages: the telemetry breakdown. checks: every contract check that applies to the turn.
    stalls: where the host stalled the harness during the (last) attempt
    (`harness.stalls`). record: the results record as written.
    """

    key: tuple[Any, ...]
    result: Any
    stages: StageBreakdown
    checks: list[Check]
    stalls: TurnStalls = field(default_factory=TurnStalls)
    record: Any = None

    @property
    def name(self) -> str:
        return str(self.result.name)

    @property
    def metrics(self) -> Any:
        return self.result.metrics

    @property
    def events(self) -> list[dict]:
        return list(self.result.events)

    @property
    def plan(self) -> Any:
        return self.result.plan

    @property
    def paths(self) -> dict[str, Any]:
        return {k: str(v) for k, v in (self.result.paths or {}).items()}

    @property
    def timeout(self) -> str | None:
        return getattr(self.result, "timeout", None)

    @property
    def timeout_kind(self) -> Timeout | None:
        return getattr(self.result, "timeout_kind", None)

    def checks_of(self, *contracts: str) -> list[Check]:
        """The checks of the given contracts (all when none given)."""
        return [c for c in self.checks if not contracts or c.contract in contracts]

    @property
    def verdict(self) -> str:
        """ "failed" if a check failed, "discarded" if the measurement was refused, else
        "passed"."""
        if any(not c.passed for c in self.checks):
            return "failed"
        if self.metrics.discard is not None:
            return "discarded"
        return "passed"
