"""One harness run: a rig, a DUT, budgets, the turns played so far and their evidence.

This is what the pytest plugin's fixtures are thin wrappers of, and what a user's own script
can drive without pytest::

    with HarnessSession(RunSettings(rig="sim", dut="reference", out_dir=Path("out/x"))) as s:
        outcome = s.turn(s.corpus.by_id("sq01_time"))
        assert_checks(outcome.checks, outcome)

Each turn is played by `harness.scenario.run_turn`, its telemetry split into stages
(`harness.fusion`), checked against every contract that applies (`harness.assertions`), and
written at once as a record to ``OUT/results.jsonl`` / ``results.json`` / ``results.csv``
with its evidence (capture WAV, metrics JSON, events, timeline PNG) under ``OUT/turns/``:
a crash later loses nothing already played. The same turn asked for twice (same stimulus,
barge-in, offset and repeat) is played once: several tests can judge one turn from
different angles.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.analysis import AnalysisOptions
from harness.budgets import Budgets, load_budgets
from harness.corpus import Corpus, Utterance
from harness.errors import HarnessError
from harness.fusion import stage_breakdown
from harness.hostprobe import HostProbe
from harness.judge import attempt_checks, host_stall_discard, judge_turn
from harness.outcome import TurnOutcome
from harness.records import CheckRate, Sample, check_rates, discard_reasons, samples
from harness.replay import Played, play_turn
from harness.report.turnrecord import turn_record
from harness.runqueue import RunQueueSampler


@dataclass(frozen=True)
class RunSettings:
    """What a run is pointed at.

    rig: "sim", "loopback" or a profile path. dut: a DUT spec (`harness.scenario.parse_dut_spec`).
    budgets: a budget file (None: fixtures/budgets.toml). repeat: trials per utterance.
    out_dir: where results and evidence go. corpus: a manifest path (None: audio_corpus/).
    limit: at most this many utterances per corpus category in a parametrised test (0: all).
    baseline: an earlier results.json (or its folder) to compare the percentiles with.
    """

    rig: str = "sim"
    dut: str = "reference"
    budgets: str | None = None
    repeat: int = 1
    out_dir: Path = Path("out/tympan")
    corpus: str | None = None
    limit: int = 0
    baseline: str | None = None


def slug(text: str) -> str:
    """A file-name-safe version of a turn name."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")[:120] or "turn"


@dataclass
class HarnessSession:
    """A run's state (see the module docstring). Open lazily: the rig and DUT start on the
    first turn, so a test session that plays no turn starts nothing."""

    settings: RunSettings
    progress: Callable[[str], None] | None = None
    outcomes: list[TurnOutcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.budgets: Budgets = load_budgets(self.settings.budgets)
        self.corpus: Corpus = Corpus.load(
            Path(self.settings.corpus) if self.settings.corpus else None
        )
        self.out_dir = Path(self.settings.out_dir)
        self._stack = contextlib.ExitStack()
        self._rig: Any = None
        self._dut: Any = None
        self._bridge: Any = None
        self._writer: Any = None
        self._cache: dict[tuple[Any, ...], TurnOutcome] = {}
        self.started = time.time()
        self.finished: Any = None
        self.infrastructure: list[str] = []
        self.host_probe = HostProbe().start()
        self._stack.callback(self.host_probe.stop)
        self.own_queue = RunQueueSampler(os.getpid()).start()
        self._stack.callback(self.own_queue.stop)
        self._dut_queue: RunQueueSampler | None = None
        from harness.scenario import parse_dut_spec

        self.dut_spec = parse_dut_spec(self.settings.dut)

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def rig(self) -> Any:
        """The opened rig (opened on first use)."""
        if self._rig is None:
            from harness.rigs import open_rig

            self._rig = self._stack.enter_context(open_rig(self.settings.rig))
        return self._rig

    @property
    def dut(self) -> Any:
        """The opened DUT (opened on first use, after the rig)."""
        if self._dut is None:
            from harness.scenario import open_dut

            rig = self.rig
            self._dut = self._stack.enter_context(
                open_dut(self.dut_spec, rig, log_dir=self.out_dir / "dut")
            )
            # the kernel's count of how long the DUT's threads waited for a CPU: in this
            # process on the sim, in the process group of a DUT the harness started
            pid = getattr(self._dut, "pid", None)
            if rig.dut_shares_process:
                self._dut_queue = self.own_queue
            elif pid:
                self._dut_queue = RunQueueSampler(pid, group=True).start()
                self._stack.callback(self._dut_queue.stop)
        return self._dut

    @property
    def writer(self) -> Any:
        """The incremental results writer (created with the first record)."""
        if self._writer is None:
            from harness.report.results import ResultsWriter

            self._writer = ResultsWriter(self.out_dir, run_info=self.run_info())
        return self._writer

    def run_info(self) -> dict[str, Any]:
        """What the run was: rig, DUT, budgets, settings (for results.json and reports)."""
        info: dict[str, Any] = {
            "rig": self.settings.rig,
            "dut": self.settings.dut,
            "budgets": self.budgets.source,
            "repeat": self.settings.repeat,
        }
        if self._rig is not None:
            info["sample_rate_hz"] = self._rig.sample_rate_hz
            info["block_frames"] = self._rig.block_frames
            lat = self._rig.latency()
            info["rig_latency_samples"] = lat.calibrated_mouth_to_ref or lat.expected_mouth_to_ref
        if self._dut is not None:
            info.update({f"dut_{k}": v for k, v in (self._dut.info or {}).items()})
        return info

    def environment(self) -> dict[str, str]:
        """What the report's environment panel shows: rig and its calibration, DUT (and its
        firmware, from HELLO when a bridge is up), tympan version and git commit."""
        from harness import __version__
        from harness.report.results import git_commit

        env = {k: str(v) for k, v in self.run_info().items()}
        env["tympan version"] = __version__
        env["git commit"] = git_commit() or "unknown"
        hello = getattr(self._bridge, "hello", None)
        if hello is not None:
            env["DUT firmware"] = f"{hello.firmware} {hello.firmware_version}"
        return env

    def close(self) -> None:
        """Finish the results (summary, baseline, history, report), stop the DUT and the rig
        (by PID). The results files are complete before any report is drawn."""
        self.finished = None
        try:
            if self._writer is not None:
                from harness.report.run import finish_run

                env = self.environment()
                self.finished = finish_run(
                    self._writer,
                    self.budgets.as_mapping(),
                    history_dir=self.out_dir / "history",
                    baseline=self.settings.baseline,
                    environment=env,
                )
        finally:
            self._stack.close()
            self._rig = self._dut = self._bridge = None

    def __enter__(self) -> HarnessSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- turns ------------------------------------------------------------------------------

    def call(self, stimuli: Sequence[Utterance | str], *, test: str = "") -> Any:
        """Play `stimuli` back to back in one session of the rig: one capture, a whole call,
        measured as a recorded call is (`harness.scenario.call.run_call`). Not judged by the
        contracts nor written to results.json: the test asserts what it needs."""
        from harness.scenario import TurnPlan, run_call

        options = AnalysisOptions(dry_path=self.rig.dry_path)
        plans = [
            TurnPlan(stimulus=self.corpus.by_id(s) if isinstance(s, str) else s, analysis=options)
            for s in stimuli
        ]
        name = test or "+".join(p.stimulus.id for p in plans)
        return run_call(self.rig, self.dut, plans, out_dir=self.out_dir / "calls" / slug(name))

    def turn(
        self,
        stimulus: Utterance | str,
        *,
        barge_in: Utterance | str | None = None,
        barge_in_offset_ms: float | None = None,
        repeat: int = 0,
        test: str = "",
        budgets: Budgets | None = None,
        cache: bool = True,
    ) -> TurnOutcome:
        """Play one turn (or, with `cache`, return the same turn played earlier in this run:
        same stimulus, barge-in clip, offset and trial)."""
        from harness.scenario import TurnPlan

        stim = self.corpus.by_id(stimulus) if isinstance(stimulus, str) else stimulus
        clip = self.corpus.by_id(barge_in) if isinstance(barge_in, str) else barge_in
        if clip is not None and barge_in_offset_ms is None:
            barge_in_offset_ms = 500.0
        key = (stim.id, clip.id if clip else None, barge_in_offset_ms, repeat)
        if key in self._cache:
            if cache:
                return self._cache[key]
            repeat = max(k[3] for k in self._cache if k[:3] == key[:3]) + 1
            key = (*key[:3], repeat)
        name = stim.id
        if clip is not None:
            name += f"[{clip.id}@{barge_in_offset_ms:g}ms]"
        if repeat:
            name += f"#{repeat + 1}"
        rig, dut = self.rig, self.dut
        plan = TurnPlan(
            stimulus=stim,
            barge_in=clip,
            barge_in_offset_ms=barge_in_offset_ms,
            analysis=AnalysisOptions(dry_path=rig.dry_path),
        )
        played = play_turn(
            rig,
            dut,
            plan,
            out=self.out_dir / "turns" / slug(name),
            name=name,
            probe=self.host_probe,
            bridge=self.bridge if self._has_bridge else None,
            own_queue=self.own_queue,
            dut_queue=self._dut_queue,
        )
        outcome = self._judge(key, played, budgets or self.budgets)
        self._cache[key] = outcome
        self.outcomes.append(outcome)
        outcome.record = turn_record(
            outcome,
            test=test,
            rig=self.settings.rig,
            dut=self.settings.dut,
            out_dir=self.out_dir,
            discard=outcome.metrics.discard or host_stall_discard(outcome.checks),
        )
        self.writer.add(outcome.record)
        if self.progress is not None:
            from harness.report.text import format_progress_line

            self.progress(format_progress_line(outcome.record))
        return outcome

    def _judge(self, key: tuple[Any, ...], played: Played, budgets: Budgets) -> TurnOutcome:
        """Every check of the played turn: the contracts, the rig's and the host's."""
        result, m = played.result, played.result.metrics
        stages = stage_breakdown(
            result.events,
            speech_end_s=m.speech_end_s,
            reply_onset_s=m.reply_onset_s,
            ttfa_ms=m.ttfa_ms,
        )
        outcome = TurnOutcome(key, result, stages, [], played.stalls)
        checks = judge_turn(outcome, budgets, self.rig, played.glitched)
        outcome.checks = attempt_checks(
            checks,
            outcome,
            attempts=played.attempts,
            glitched=played.glitched,
            lost_audio=played.lost_audio,
        )
        return outcome

    @property
    def _has_bridge(self) -> bool:
        """The DUT's telemetry comes over a device bridge (``,serial=URL``, or a framework
        observer's socket the DUT opened)."""
        return bool(self.dut_spec.serial_url) or getattr(self.dut, "bridge", None) is not None

    @property
    def bridge(self) -> Any:
        """The DUT's serial link (`device.bridge.DeviceBridge`), opened on first use."""
        if self._bridge is None:
            dut = self.dut
            shared = getattr(dut, "bridge", None)
            if shared is not None:
                self._bridge = shared
            else:
                from device.bridge import DeviceBridge

                url = self.dut_spec.serial_url
                if not url:
                    raise HarnessError(f"--dut {self.settings.dut}: no serial=URL for a bridge")
                self._bridge = self._stack.enter_context(
                    DeviceBridge(url, log_dir=self.out_dir / "serial")
                )
        return self._bridge

    def summary(self) -> dict[str, Any]:
        """Per-metric percentiles of the turns so far against the budgets."""
        from harness.report.results import summarize

        records = [o.record for o in self.outcomes if o.record is not None]
        return summarize(records, self.budgets.as_mapping())

    # --- over the run -----------------------------------------------------------------------

    def samples(self) -> dict[str, list[Sample]]:
        """Every metric's values over the turns so far, from their records
        (`harness.records.samples`: the values results.json's summary is made of, so the
        budget verdicts of the pytest run and of results.json agree)."""
        return samples([o.record for o in self.outcomes if o.record is not None])

    def check_rates(self) -> dict[str, CheckRate]:
        """Every check's failures over the turns so far (`records.check_rates`)."""
        return check_rates(o.checks for o in self.outcomes)

    def discard_reasons(self) -> dict[str, int]:
        """How many turns were discarded, by reason (`records.discard_reasons`)."""
        return discard_reasons(o.metrics for o in self.outcomes)
