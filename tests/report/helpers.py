"""Real turns for the report tests: synthetic captures (harness.groundtruth) measured by
harness.analysis, saved as WAV + metrics JSON like the plugin saves them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from harness.analysis import analyze_capture
from harness.groundtruth import Condition, Sources, make_turn
from harness.report.results import Check, TurnRecord

HOSTILE = "<script>alert(1)</script> & \"quotes\" 'too'"


def real_turn(
    sources: Sources,
    out_dir: Path,
    seed: int,
    *,
    barge_in: bool = False,
    transcript: str = "what is the weather today",
    ttfa_ms: float | None = None,
) -> TurnRecord:
    """One synthetic turn, measured, with its capture and metrics saved under OUT/turns/."""
    rng = np.random.default_rng(seed)
    user, reply, clip, answer = sources.pick_turn(rng)
    cond = Condition("report-test", leakage_db=-20.0, barge_in=barge_in)
    turn = make_turn(cond, user, reply, rng, ttfa_ms=ttfa_ms, barge_clip=clip, answer=answer)
    fs = turn.sample_rate_hz
    m = analyze_capture(
        turn.capture,
        fs,
        turn.stimulus,
        fs,
        speech_end_s=turn.speech_end_s,
        barge_in=turn.barge_in_clip if barge_in else None,
        barge_in_rate_hz=fs if barge_in else None,
    )
    name = f"{user.name}-{seed}{'-barge' if barge_in else ''}"
    rel = Path("turns") / name
    (out_dir / rel).mkdir(parents=True, exist_ok=True)
    sf.write(out_dir / rel / "capture.wav", turn.capture, fs, subtype="PCM_16")
    metrics = m.to_json()
    (out_dir / rel / "metrics.json").write_text(json.dumps(metrics))
    se = metrics["speech_end_s"]
    spans = [("eou", se, se + 0.2), ("llm", se + 0.2, se + 0.45), ("tts", se + 0.45, se + 0.6)]
    ttfa = metrics["ttfa_ms"]
    checks = [Check("budget", "ttfa_ms", ttfa is not None and ttfa < 1500, "")]
    if barge_in:
        stop = metrics.get("stop_latency_ms")
        ok = stop is not None and stop < 200
        msg = "" if ok else f"[cancellation] stop latency {stop} ms > 200 ms"
        checks.append(Check("cancellation", "stop_latency", ok, msg))
    verdict = "discarded" if m.discard else "passed" if all(c.passed for c in checks) else "failed"
    return TurnRecord(
        test=f"tests/test_suite.py::test_turn[{name}]",
        turn=f"{user.name}#{seed}" + ("[barge]" if barge_in else ""),
        utterance=user.name,
        category="barge_in" if barge_in else "short_question",
        transcript=transcript,
        rig="sim",
        dut="reference",
        repeat=0,
        barge_in_offset_ms=500.0 if barge_in else None,
        metrics=metrics,
        stages_ms={"eou_delay_ms": 200.0, "llm_ttft_ms": 250.0, "tts_first_audio_ms": None},
        stage_spans=spans,
        events=[{"event": "vad_speech_end", "t_s": se + 0.2}],
        checks=checks,
        verdict=verdict,
        discard=m.discard,
        wall_s=turn.capture.shape[0] / fs + 0.1,
        audio_s=turn.capture.shape[0] / fs,
        evidence={
            "capture_wav": str(rel / "capture.wav"),
            "metrics_json": str(rel / "metrics.json"),
        },
    )
