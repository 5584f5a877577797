"""Budget files: latency limits on percentiles, and the rules the pipeline checks use.

A budget file is TOML (the defaults: ``fixtures/budgets.toml``)::

    [latency.ttfa_ms]           # metric name, unit in the name
    p50 = 1000.0                # percentile = limit (p50, p90, p95, p99, max)
    p95 = 1500.0

    [chunking]                  # rules of the chunking checks (see `ChunkingRules`)
    max_gap_ms = 400.0

A user's file holds any subset: what it leaves out keeps the default. Unknown sections, keys
or percentiles, and values that are not positive numbers, raise `InputError` naming the file
and the key.

Map:
    Budget          one limit: metric, percentile, limit
    Budgets         a whole file: latency budgets + chunking / cancellation / turn-taking rules
    load_budgets    read and validate a file (merged over the defaults)
    percentile      the percentile of a sample, numpy's "linear" definition
    evaluate        one budget against a sample of values -> BudgetResult
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.records import PERCENTILES, TURNS_NEEDED, Check, Sample, percentile

DEFAULT_BUDGETS_PATH = Path(__file__).resolve().parent.parent / "fixtures" / "budgets.toml"
"""The shipped defaults (a source checkout's fixtures folder)."""


@dataclass(frozen=True)
class Budget:
    """A limit on one percentile of one metric: ``ttfa_ms`` ``p95`` <= ``limit``."""

    metric: str
    percentile: str
    limit: float

    def __str__(self) -> str:
        return f"{self.metric} {self.percentile} <= {self.limit:g}"


@dataclass(frozen=True)
class ChunkingRules:
    """What the chunking checks hold a reply to.

    min_tokens: no chunk below this many tokens, except a reply's last.
    max_tokens: a chunk of this many tokens may end anywhere (cut at the limit).
    max_gap_ms: a silence inside a reply longer than this is an audible stall.
    max_queue_depth: a reply's queue deeper than this grew without limit, whatever the
        device declares (`assertions._back_pressure`).
    max_loop_stall_ms: event-loop lag (``loop_stall`` events) allowed.
    """

    min_tokens: int = 2
    max_tokens: int = 40
    max_gap_ms: float = 400.0
    max_queue_depth: int = 8
    max_loop_stall_ms: float = 120.0


@dataclass(frozen=True)
class CancellationRules:
    """max_stale_ms: interrupted-reply audio allowed after it stopped (`residual_ms`).
    answer_ttfa_ms: the answer to a barge-in starts within this of the barge-in's end."""

    max_stale_ms: float = 150.0
    answer_ttfa_ms: float = 1500.0


@dataclass(frozen=True)
class TurnTakingRules:
    """Rates (0..1) over a run: questions left unanswered, pause traps the agent spoke in."""

    max_missing_rate: float = 0.0
    max_cut_off_rate: float = 0.0


@dataclass(frozen=True)
class Budgets:
    """A budget file: latency budgets per metric and the rules of the pipeline checks."""

    latency: tuple[Budget, ...] = ()
    chunking: ChunkingRules = field(default_factory=ChunkingRules)
    cancellation: CancellationRules = field(default_factory=CancellationRules)
    turn_taking: TurnTakingRules = field(default_factory=TurnTakingRules)
    source: str = "defaults"

    def for_metric(self, metric: str) -> tuple[Budget, ...]:
        """The budgets on `metric`, in file order."""
        return tuple(b for b in self.latency if b.metric == metric)

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric with a budget, in file order."""
        return tuple(dict.fromkeys(b.metric for b in self.latency))

    def as_mapping(self) -> dict[str, dict[str, float]]:
        """``{metric: {percentile: limit}}`` (what `harness.report` takes)."""
        out: dict[str, dict[str, float]] = {}
        for b in self.latency:
            out.setdefault(b.metric, {})[b.percentile] = b.limit
        return out

    def with_limit(self, metric: str, percentile: str, limit: float) -> Budgets:
        """A copy with one limit set or replaced (a test's ``tympan_budget`` marker)."""
        _check_percentile(percentile, f"tympan_budget({metric})")
        kept = [b for b in self.latency if (b.metric, b.percentile) != (metric, percentile)]
        kept.append(Budget(metric, percentile, float(limit)))
        return dataclasses.replace(self, latency=tuple(kept))


@dataclass(frozen=True)
class BudgetResult:
    """One budget evaluated: the percentile's value over `n` values (None when n == 0)."""

    budget: Budget
    value: float | None
    n: int

    @property
    def passed(self) -> bool:
        """True when the value is within the limit; no values is not a pass."""
        return self.value is not None and self.value <= self.budget.limit

    @property
    def needed(self) -> int:
        """Turns the budget's percentile needs to be judged (`records.TURNS_NEEDED`)."""
        return TURNS_NEEDED[self.budget.percentile]

    @property
    def judged(self) -> bool:
        """False when the budget held on fewer turns than its percentile needs: it was not
        shown to hold (a budget the turns already break is judged: it failed)."""
        return not self.passed or self.n >= self.needed


def evaluate(budget: Budget, values: Iterable[float | None]) -> BudgetResult:
    """`budget` against a sample (None entries, e.g. discarded turns, are left out)."""
    xs = [float(v) for v in values if v is not None]
    return BudgetResult(budget, percentile(xs, budget.percentile), len(xs))


def _check_percentile(name: str, where: str) -> None:
    if name not in PERCENTILES:
        raise InputError(
            f"{where}: unknown percentile {name!r}; expected one of {', '.join(PERCENTILES)}"
        )


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise InputError(f"{where}: expected a number >= 0, got {value!r}")
    return float(value)


def _rules(cls: type, base: Any, table: Any, where: str) -> Any:
    if not isinstance(table, Mapping):
        raise InputError(f"{where}: expected a table of keys, got {table!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise InputError(
                f"{where}.{key}: unknown key; expected one of {', '.join(sorted(known))}"
            )
        number = _positive(value, f"{where}.{key}")
        values[key] = int(number) if known[key].type == "int" else number
    return dataclasses.replace(base, **values)


def parse_budgets(data: Mapping[str, Any], source: str, base: Budgets | None = None) -> Budgets:
    """Budgets from a parsed TOML document, merged over `base` (default: no budgets)."""
    base = base or Budgets()
    sections = {"latency", "chunking", "cancellation", "turn_taking"}
    for key in data:
        if key not in sections:
            raise InputError(
                f"{source}: unknown section [{key}]; expected {', '.join(sorted(sections))}"
            )
    latency = {(b.metric, b.percentile): b for b in base.latency}
    table = data.get("latency", {})
    if not isinstance(table, Mapping):
        raise InputError(f"{source}: [latency] must be a table of [latency.METRIC] tables")
    for metric, limits in table.items():
        where = f"{source}: latency.{metric}"
        if not isinstance(limits, Mapping) or not limits:
            raise InputError(f"{where}: expected a table like {{p95 = 1500.0}}, got {limits!r}")
        for name, limit in limits.items():
            _check_percentile(name, f"{where}.{name}")
            latency[(metric, name)] = Budget(metric, name, _positive(limit, f"{where}.{name}"))
    return Budgets(
        latency=tuple(latency.values()),
        chunking=_rules(
            ChunkingRules, base.chunking, data.get("chunking", {}), f"{source}: chunking"
        ),
        cancellation=_rules(
            CancellationRules,
            base.cancellation,
            data.get("cancellation", {}),
            f"{source}: cancellation",
        ),
        turn_taking=_rules(
            TurnTakingRules, base.turn_taking, data.get("turn_taking", {}), f"{source}: turn_taking"
        ),
        source=source,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: budget file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the budget file: {exc.strerror}") from None


def default_budgets() -> Budgets:
    """The shipped defaults (fixtures/budgets.toml), or the built-in rules if it is missing."""
    if DEFAULT_BUDGETS_PATH.is_file():
        return parse_budgets(_read_toml(DEFAULT_BUDGETS_PATH), str(DEFAULT_BUDGETS_PATH))
    return Budgets()


def load_budgets(path: Path | str | None = None) -> Budgets:
    """The budgets of `path` merged over the defaults (None: the defaults alone)."""
    defaults = default_budgets()
    if path is None:
        return defaults
    p = Path(path)
    return parse_budgets(_read_toml(p), str(p), base=defaults)


def check_budget(budget: Budget, samples: Sequence[Sample], worst: int = 3) -> Check:
    """`budget` over `samples` (None values, i.e. discarded turns, are counted but left out).
    A budget that holds on fewer turns than its percentile needs (`records.TURNS_NEEDED`)
    is not judged: the check passes, `applicable` False, its message starts "not judged:"."""
    result = evaluate(budget, [s.value for s in samples])
    kept = sorted((s for s in samples if s.value is not None), key=lambda s: -float(s.value or 0))
    skipped = len(samples) - result.n
    if result.value is None:
        return Check(
            "budget",
            str(budget),
            False,
            f"no measured values out of {len(samples)} turn(s) (all discarded or missing)",
        )
    values = sorted(float(s.value) for s in kept if s.value is not None)
    p50, p95 = percentile(values, "p50"), percentile(values, "p95")
    dist = f"n={result.n} min {values[0]:.0f} p50 {p50:.0f} p95 {p95:.0f} max {values[-1]:.0f}"
    msg = (
        f"{budget.metric} {budget.percentile} = {result.value:.0f} "
        f"(budget {budget.limit:g}); {dist}"
    )
    if skipped:
        msg += f"; {skipped} turn(s) discarded"
    if not result.judged:
        return Check(
            "budget",
            str(budget),
            True,
            f"not judged: {budget.metric} {budget.percentile} from {result.n} turn(s), "
            f"{result.needed} needed to judge a {budget.percentile} (use --repeat); {msg}",
            applicable=False,
        )
    if not result.passed:
        msg += "; worst: " + ", ".join(
            f"{s.turn} {float(s.value or 0):.0f}" + (f" ({s.evidence})" if s.evidence else "")
            for s in kept[:worst]
        )
    return Check("budget", str(budget), result.passed, msg)
