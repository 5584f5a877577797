"""`run_selftest`: known turns through a rig with delays drawn at random, measured as on any
run, and the measured TTFA set against the true one turn by turn.

Each turn: a corpus question as the stimulus, another as the reply, and a reply delay drawn
uniformly (whole samples) from `DELAY_RANGE_MS`, all drawn up front from ``--seed``. The
delay goes to the self-test's DUT only (`harness.selftest.duts`); the turn runs through
`harness.scenario.run_turn` with the options a run uses, so the analysis gets the capture
and the stimulus and nothing else. The DUT's own record then gives the true TTFA.

A turn counts against the rig when it was not measured (a refusal, a timeout: a self-test
turn is built to be measurable, so a refusal is the rig's or the analysis's failure), when
|measured - true| exceeds the tolerance, or when the ref lag it measured is not the rig's
own mouth -> ref figure (the calibration if one is cached, else what the backend knows
exactly) within `REF_LAG_TOLERANCE_MS`. Over the whole run the median error must be within
the median tolerance too (from `MEDIAN_MIN_TURNS` measured turns on): a tolerance wide
enough for a rig's tail (the sim's noise) would otherwise let a systematic shift through.
A turn whose DUT record is not exact (a JACK cycle it missed) or whose audio the rig lost
is played again, up to `MAX_ATTEMPTS` times.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness import __version__
from harness.corpus import Corpus, Utterance
from harness.errors import InputError
from harness.rigs import open_rig
from harness.rigs.profile import RigProfile
from harness.rigs.simduts import ScriptedDut, load_reply
from harness.scenario import AnalysisPool, TurnPlan, run_turn
from harness.scenario.turn import played_audio
from harness.selftest.duts import LoopbackSelfTestDut, SimSelfTestDut, Stimulus, Truth
from harness.signal.resample import first_sound
from harness.turnmetrics import AnalysisOptions

DEFAULT_TOLERANCE_MS: dict[str, float] = {"sim": 15.0, "loopback": 1.0}
"""The largest |measured - true| per turn each rig kind's self-test allows by default, ms
(docs/lab-rig.md, "Self-test": the measured errors and the margin). The sim's is wide: in
its noise the blind onset comes early by up to 12.5 ms (800 turns)."""

MEDIAN_TOLERANCE_MS = 2.0
"""The largest |median error| over a run, ms (at most the per-turn tolerance)."""

MEDIAN_MIN_TURNS = 5
"""The median is judged from this many measured turns on (fewer cannot tell a bias from the
tail: on the sim two turns' median is off by more than 2 ms one run in fourteen)."""

REF_LAG_TOLERANCE_MS = 0.5
"""The largest difference between the mouth -> ref lag a turn measured and the rig's own
figure, ms (the lag is measured to a fraction of a sample by correlation)."""

DELAY_RANGE_MS = (400.0, 1500.0)
"""The reply delays drawn, ms (the low end rises to the DUT's hangover + 100 ms + two
periods, so the reply can always start on time)."""

MAX_ATTEMPTS = 3
"""Plays of one turn whose DUT record was spoiled by a late cycle or whose audio was lost."""

STIMULUS_CATEGORY = "short_question"
"""Stimuli and replies are drawn from this corpus category (no mid-sentence pauses)."""


@dataclass
class SelfTestTurn:
    """One turn of the self-test. Times in ms; None where there is no figure.

    delay_ms: the drawn delay (the DUT's setting; the true TTFA adds where the DUT heard
    the speech end and the reply's first sound). problem: why the turn counts against the
    rig, None when it held. ref_lag_samples: the mouth -> ref lag this turn measured.
    """

    index: int
    stimulus: str
    reply: str
    delay_ms: float
    attempts: int = 0
    xruns: int = 0
    true_ttfa_ms: float | None = None
    measured_ttfa_ms: float | None = None
    error_ms: float | None = None
    confidence: float = 0.0
    discard: str | None = None
    problem: str | None = None
    ref_lag_samples: float | None = None
    evidence: str = ""
    played_again: list[str] = field(default_factory=list)
    dut: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The turn held."""
        return self.problem is None


@dataclass
class SelfTestResult:
    """The whole self-test: the rig, the draws, the tolerance, every turn."""

    rig: str
    kind: str
    profile: str
    sample_rate_hz: int
    seed: int
    turns_requested: int
    tolerance_ms: float
    tolerance_from: str
    median_tolerance_ms: float
    mouth_to_ref_samples: int | None
    mouth_to_ref_from: str
    turns: list[SelfTestTurn] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def problems(self) -> list[str]:
        """Why the run fails beyond its turns: a median error out of bounds."""
        errs = self.errors_ms
        if len(errs) < MEDIAN_MIN_TURNS:
            return []
        med = statistics.median(errs)
        if abs(med) <= self.median_tolerance_ms:
            return []
        return [
            f"median error {med:+.3f} ms is beyond {self.median_tolerance_ms:g} ms: the "
            "measurement is shifted"
        ]

    @property
    def complete(self) -> bool:
        """Every requested turn was played (selftest.json is rewritten after each turn)."""
        return len(self.turns) >= self.turns_requested

    @property
    def ok(self) -> bool:
        """Every requested turn was played and measured within the tolerance, the median
        error too."""
        return (
            self.complete
            and bool(self.turns)
            and all(t.ok for t in self.turns)
            and not self.problems
        )

    @property
    def errors_ms(self) -> list[float]:
        """measured - true of every measured turn."""
        return [t.error_ms for t in self.turns if t.error_ms is not None]

    def summary(self) -> dict[str, Any]:
        """Counts and the error's median and largest magnitude."""
        errs = self.errors_ms
        return {
            "turns": len(self.turns),
            "measured": len(errs),
            "unmeasured": len(self.turns) - len(errs),
            "refused": sum(t.discard is not None for t in self.turns),
            "failed": sum(not t.ok for t in self.turns),
            "median_error_ms": statistics.median(errs) if errs else None,
            "max_abs_error_ms": max(abs(e) for e in errs) if errs else None,
            "median_judged": len(errs) >= MEDIAN_MIN_TURNS,
            "problems": self.problems,
            "ok": self.ok,
        }

    def to_json(self) -> dict[str, Any]:
        """selftest.json: what a nightly checks (``ok``) and the evidence behind it."""
        doc = {k: v for k, v in asdict(self).items() if k != "turns"}
        doc.update(
            ok=self.ok,
            complete=self.complete,
            summary=self.summary(),
            tool=f"tympan {__version__} selftest",
            machine={
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "system": platform.platform(),
            },
            finished_unix_s=round(time.time(), 3),
            turns=[asdict(t) | {"ok": t.ok} for t in self.turns],
        )
        return _finite(doc)


def _finite(v: Any) -> Any:
    """NaN and infinities to None, through dicts and lists (JSON has neither)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    return v


# ------------------------------------------------------------------------------------------
# Per rig kind: the rig and the self-test's DUT on it
# ------------------------------------------------------------------------------------------


class _Bench:
    """An opened rig, the self-test's DUT on it, and the figures the truth and the checks
    need. `hangover_ms`: the DUT's; `worker`: analyse in an `AnalysisPool` (a real-time rig
    whose callbacks need this process's GIL)."""

    def __init__(self, rig: Any, sdut: Any, hangover_ms: float, worker: bool) -> None:
        self.rig = rig
        self.sdut = sdut
        self.hangover_ms = hangover_ms
        self.worker = worker


def _sim_bench(profile: RigProfile, stack: ExitStack) -> _Bench:
    sc = profile.table("sim.scripted")
    fs = profile.sample_rate_hz
    scripted = ScriptedDut(
        np.zeros(1, dtype=np.float32),
        fs,
        delay_ms=DELAY_RANGE_MS[0],
        threshold_dbfs=sc["threshold_dbfs"],
        hangover_ms=sc["hangover_ms"],
        min_speech_ms=sc["min_speech_ms"],
        real_time=sc["real_time"],
    )
    rig = stack.enter_context(open_rig(profile, dut=scripted))
    sdut = SimSelfTestDut(rig, scripted)
    stack.callback(sdut.close)
    return _Bench(rig, sdut, sc["hangover_ms"], worker=False)


def _loopback_bench(profile: RigProfile, stack: ExitStack) -> _Bench:
    rig = stack.enter_context(open_rig(profile, dut=""))  # no other DUT on the ear
    sdut = LoopbackSelfTestDut(rig)
    stack.callback(sdut.close)
    return _Bench(rig, sdut, 300.0, worker=True)


BENCHES: dict[str, Callable[[RigProfile, ExitStack], _Bench]] = {
    "sim": _sim_bench,
    "loopback": _loopback_bench,
}
"""How each rig kind gets its self-test DUT, by profile kind (as `harness.rigs.BACKENDS`)."""


def check_supported(profile: RigProfile) -> None:
    """InputError when the self-test has no DUT for this rig's kind."""
    if profile.kind not in BENCHES:
        raise InputError(
            f"--rig {profile.source}: the self-test has no built-in DUT for a {profile.kind!r} "
            f"rig yet (it runs on {', '.join(sorted(BENCHES))}); docs/lab-rig.md, "
            '"Self-test", says what a sound card rig needs'
        )


# ------------------------------------------------------------------------------------------
# The turns
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Draw:
    stimulus: Utterance
    reply: Utterance
    delay_samples: int


def _draws(corpus: Corpus, n: int, seed: int, fs: int, lo_ms: float) -> list[_Draw]:
    rng = np.random.default_rng(seed)
    pool = sorted(corpus.by_category(STIMULUS_CATEGORY), key=lambda u: u.id)
    lo = int(math.ceil(lo_ms * fs / 1000))
    hi = max(lo, int(DELAY_RANGE_MS[1] * fs / 1000))
    out = []
    for _ in range(n):
        i, j = rng.choice(len(pool), size=2, replace=False)
        out.append(_Draw(pool[int(i)], pool[int(j)], int(rng.integers(lo, hi + 1))))
    return out


def _stated_mouth_to_ref(rig: Any) -> tuple[int | None, str]:
    lat = rig.latency()
    if lat.calibrated_mouth_to_ref is not None:
        return int(lat.calibrated_mouth_to_ref), "calibrated"
    if lat.expected_mouth_to_ref is not None:
        return int(lat.expected_mouth_to_ref), "expected"
    return None, "unknown"


def run_selftest(
    profile: RigProfile,
    *,
    turns: int,
    seed: int,
    out_dir: Path,
    tolerance_ms: float | None = None,
    on_turn: Callable[[SelfTestTurn], None] | None = None,
) -> SelfTestResult:
    """Play `turns` self-test turns on the rig `profile` describes; write
    ``OUT/selftest.json`` and each turn's evidence under ``OUT/turnNN``; return the result.

    tolerance_ms: None for the rig kind's default (`DEFAULT_TOLERANCE_MS`). on_turn: called
    with each turn as it is judged (the command prints it).
    """
    check_supported(profile)
    t_start = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "selftest.json").unlink(missing_ok=True)  # no earlier run's verdict stays
    tol = DEFAULT_TOLERANCE_MS[profile.kind] if tolerance_ms is None else float(tolerance_ms)
    corpus = Corpus.load()
    with ExitStack() as stack:
        bench = BENCHES[profile.kind](profile, stack)
        rig = bench.rig
        fs = int(rig.sample_rate_hz)
        stated, stated_from = _stated_mouth_to_ref(rig)
        result = SelfTestResult(
            rig=profile.name,
            kind=profile.kind,
            profile=profile.source,
            sample_rate_hz=fs,
            seed=seed,
            turns_requested=turns,
            tolerance_ms=tol,
            tolerance_from="--tolerance-ms" if tolerance_ms is not None else "rig kind default",
            median_tolerance_ms=min(MEDIAN_TOLERANCE_MS, tol),
            mouth_to_ref_samples=stated,
            mouth_to_ref_from=stated_from,
        )
        lo_ms = max(DELAY_RANGE_MS[0], bench.hangover_ms + 100.0 + 2000.0 * rig.block_frames / fs)
        _write(result, out_dir)  # ok: false until every turn has been played
        pool = stack.enter_context(AnalysisPool()) if bench.worker else None
        options = AnalysisOptions(dry_path=rig.dry_path)
        for i, draw in enumerate(_draws(corpus, turns, seed, fs, lo_ms), start=1):
            turn = _play(bench, draw, i, options, pool, out_dir, tol, stated, stated_from)
            result.turns.append(turn)
            result.wall_s = round(time.monotonic() - t_start, 3)
            _write(result, out_dir)
            if on_turn is not None:
                on_turn(turn)
    result.wall_s = round(time.monotonic() - t_start, 3)
    _write(result, out_dir)
    return result


def _write(result: SelfTestResult, out_dir: Path) -> None:
    """OUT/selftest.json, replaced whole (a reader never sees half a file)."""
    path = out_dir / "selftest.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    tmp.replace(path)


def _play(
    bench: _Bench,
    draw: _Draw,
    index: int,
    options: AnalysisOptions,
    pool: AnalysisPool | None,
    out_dir: Path,
    tol_ms: float,
    stated: int | None,
    stated_from: str,
) -> SelfTestTurn:
    """Play one drawn turn (again, up to MAX_ATTEMPTS, while its truth or audio is lost)
    and judge it."""
    rig, sdut = bench.rig, bench.sdut
    fs = int(rig.sample_rate_hz)
    reply = load_reply(f"corpus:{draw.reply.id}", fs, "selftest")
    stim_audio = played_audio(draw.stimulus, fs)
    stim = Stimulus(
        first_nonzero=int(np.flatnonzero(stim_audio)[0]),
        speech_end=float(draw.stimulus.speech_end_s) * fs,
        reply_first_sound=first_sound(reply),
    )
    turn = SelfTestTurn(
        index, draw.stimulus.id, draw.reply.id, round(draw.delay_samples / fs * 1000, 4)
    )
    plan = TurnPlan(stimulus=draw.stimulus, analysis=options)
    name = f"turn{index:02d}"
    for attempt in range(1, MAX_ATTEMPTS + 1):
        where = out_dir / (name if attempt == 1 else f"{name}.attempt{attempt}")
        sdut.arm(draw.delay_samples, reply)
        r = run_turn(rig, sdut.dut, plan, out_dir=where, name=name, pool=pool)
        truth: Truth = sdut.truth(r, stim)
        lost = bool(r.xruns) and not rig.timing_only_xruns
        again = truth.transient or lost
        if again and attempt < MAX_ATTEMPTS:
            turn.played_again.append(
                f"attempt {attempt} ({where}): {truth.spoiled or f'{r.xruns} xrun(s) lost audio'}"
            )
            continue
        break
    turn.attempts, turn.xruns, turn.evidence, turn.dut = attempt, r.xruns, str(where), truth.dut
    m = r.metrics
    turn.confidence = round(float(m.confidence), 4)
    turn.discard = m.discard
    if m.ttfa_ms is not None:
        turn.measured_ttfa_ms = round(float(m.ttfa_ms), 4)
    if m.speech_end_s is not None:
        turn.ref_lag_samples = round(
            m.speech_end_s * fs - r.stimulus_at_sample - stim.speech_end, 3
        )
    if truth.ttfa_samples is not None:
        turn.true_ttfa_ms = round(truth.ttfa_samples / fs * 1000, 4)
    if turn.true_ttfa_ms is not None and m.ttfa_ms is not None:
        turn.error_ms = round(float(m.ttfa_ms) - truth.ttfa_samples / fs * 1000, 4)
    turn.problem = _problem(turn, truth, r, lost, tol_ms, fs, stated, stated_from)
    return turn


def _problem(
    turn: SelfTestTurn,
    truth: Truth,
    r: Any,
    lost: bool,
    tol_ms: float,
    fs: int,
    stated: int | None,
    stated_from: str,
) -> str | None:
    """Why `turn` counts against the rig, or None."""
    tries = f" ({turn.attempts} attempts)" if turn.attempts > 1 else ""
    if truth.spoiled is not None:
        return f"no exact truth: {truth.spoiled}{tries}"
    if lost:
        return f"the rig lost audio ({r.xruns} xrun(s)){tries}"
    if r.timeout is not None:
        return f"not measured: {r.timeout}"
    if turn.discard is not None:
        return f"refused: {turn.discard} (a self-test turn is built to be measurable)"
    if turn.error_ms is None:
        return "not measured"
    if abs(turn.error_ms) > tol_ms:
        return f"|error| {abs(turn.error_ms):.3f} ms > tolerance {tol_ms:g} ms"
    if stated is not None and turn.ref_lag_samples is not None:
        off_ms = (turn.ref_lag_samples - stated) / fs * 1000
        if abs(off_ms) > REF_LAG_TOLERANCE_MS:
            return (
                f"mouth -> ref measured {turn.ref_lag_samples:.1f} samples, the rig's "
                f"{stated_from} figure is {stated} ({off_ms:+.3f} ms off): recalibrate"
            )
    return None
