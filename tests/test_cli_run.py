"""`tympan run`'s verdict on what it could not judge: a budget that held on fewer turns than
its percentile needs is "not judged" and the run exits 3; with enough turns it is judged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def tympan_run(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "harness.cli", "run", "--rig", "sim", "--dut", "scripted"]
    cmd += ["--out", str(out), *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, check=False, env=dict(os.environ)
    )


def test_a_budget_on_too_few_turns_is_not_judged_and_says_so(tmp_path):
    done = tympan_run(tmp_path / "few", "--limit", "1", "--", "-k", "test_03_questions")
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-2000:]
    assert "budget(s) held on too few turns to be judged (use --repeat)" in done.stdout
    assert "ttfa_ms p95: 1 turn(s), 20 needed" in done.stdout
    assert "budgets NOT JUDGED on too few turns (exit 3)" in done.stdout
    assert "not judged (p50: 1 turn(s), 2 needed; p95: 1 turn(s), 20 needed)" in done.stdout
    row = json.loads((tmp_path / "few" / "results.json").read_text())["summary"]["ttfa_ms"]
    assert row["passed"] is None and row["not_judged"]


def test_enough_turns_are_judged(tmp_path):
    done = tympan_run(
        tmp_path / "many", "--limit", "1", "--repeat", "20", "--", "-k", "test_03_questions"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    row = json.loads((tmp_path / "many" / "results.json").read_text())["summary"]["ttfa_ms"]
    assert row["n"] == 20 and row["passed"] is True and "not_judged" not in row


def test_a_rig_that_fails_its_self_test_judges_no_agent(tmp_path, monkeypatch):
    """`--selftest N` plays the rig's self-test first; a rig whose calibration is 5 ms off
    fails it, and the run judges nothing (exit 3) instead of trusting the rig."""
    from harness.rigs import load_profile
    from harness.rigs.calibrate import cache_path

    monkeypatch.setenv("TYMPAN_CACHE_DIR", str(tmp_path / "cache"))
    good = tympan_run(tmp_path / "good", "--selftest", "2", "--limit", "1", "--", "-k", "sq01")
    assert "the rig's self-test first (2 turns)" in good.stdout, good.stdout[-2000:]
    assert "tympan selftest: PASS" in good.stdout and "results in" in good.stdout
    profile = load_profile("sim")
    path = cache_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"latency_samples": 128 + 240, "confidence": 1.0, "ear": None}
    path.write_text(json.dumps(doc | {"profile_sha256": profile.sha256}))
    bad = tympan_run(tmp_path / "bad", "--selftest", "2", "--limit", "1", "--", "-k", "sq01")
    assert bad.returncode == 3, bad.stdout[-3000:] + bad.stderr[-2000:]
    assert "failed its self-test" in bad.stdout and "no agent is judged on it" in bad.stdout
    assert not (tmp_path / "bad" / "results.json").exists()
    assert (tmp_path / "bad" / "selftest" / "selftest.json").is_file()
