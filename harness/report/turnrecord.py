"""A played turn as the record results.json keeps (`TurnRecord`), and its timeline drawn
next to its capture."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Any

from harness.records import TurnRecord


def turn_record(
    outcome: Any, *, test: str, rig: str, dut: str, out_dir: Path, discard: str | None
) -> TurnRecord:
    """The record of `outcome` (a `harness.outcome.TurnOutcome`) played by `test` on `rig`
    against `dut`; evidence paths relative to `out_dir`; `discard` why its figures stay
    out of the percentiles (None: they count). Its timeline PNG is drawn and named in
    its evidence."""
    r = outcome.result
    plan = r.plan
    evidence = {key: str(_relative(Path(path), out_dir)) for key, path in (r.paths or {}).items()}
    record = TurnRecord(
        test=test,
        turn=outcome.name,
        utterance=plan.stimulus.id,
        category=plan.stimulus.category,
        transcript=plan.stimulus.transcript or "",
        rig=rig,
        dut=dut,
        repeat=int(outcome.key[3]),
        barge_in_offset_ms=plan.barge_in_offset_ms,
        metrics=r.metrics.to_json(),
        stages_ms=dict(outcome.stages.stages_ms),
        stage_spans=list(outcome.stages.spans),
        events=[dict(e) for e in r.events],
        checks=[
            c if c.passed else dataclasses.replace(c, message=f"[{c.contract}] {c.message}")
            for c in outcome.checks
        ],
        verdict=outcome.verdict,
        discard=discard,
        xruns=int(r.xruns),
        wall_s=float(r.wall_s),
        audio_s=float(r.audio_s),
        evidence=evidence,
    )
    draw_timeline(outcome, record, out_dir)
    return record


def draw_timeline(outcome: Any, record: TurnRecord, out_dir: Path) -> None:
    """Draw the turn's timeline next to its capture (never fails a turn)."""
    try:
        from harness.report.plots import timeline_png

        wav = outcome.result.paths.get("capture_wav")
        if wav is None:
            return
        png = Path(wav).with_name("timeline.png")
        cap = outcome.result.capture
        timeline_png(png, (cap.ref, cap.ear), cap.sample_rate_hz, record)
        record.evidence["timeline_png"] = str(_relative(png, out_dir))
    except Exception as exc:  # a plot is evidence, not a verdict
        print(f"tympan: timeline plot for {record.turn} failed: {exc}", file=sys.stderr)


def _relative(path: Path, out_dir: Path) -> Path:
    with contextlib.suppress(ValueError):
        return path.resolve().relative_to(out_dir.resolve())
    return path
