"""The fault-knob matrix: each classic pipeline mistake of the reference agent makes the
conformance suite fail, naming the broken contract, with a non-zero exit; the clean agent
passes the same selection.

Each run is a real `tympan run` on the sim rig with the reference agent's real engines,
limited to the suite module that detects the fault (one turn each) to keep CI fast; the
full suite runs clean on the loopback rig elsewhere in `make test`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

STREAMING = "test_01_streaming"
BARGE_IN = "test_02_barge_in and 500ms"

FAULTS = {
    "serialized-llm": (STREAMING, "[chunking] first chunk reaches TTS before the LLM is done"),
    "token-tts": (STREAMING, "[chunking] no chunk below the minimum"),
    "unbounded-queue": (STREAMING, "[chunking] TTS queue bounded (back-pressure)"),
    "blocking-call": (STREAMING, "[chunking] no event-loop stall"),
    "partial-to-llm": (STREAMING, "[turn-taking] LLM waits for the end of utterance"),
    "no-cancel": (BARGE_IN, "[cancellation] device cancels LLM and TTS"),
    "stale-audio": (BARGE_IN, "[cancellation] reply stops on barge-in"),
}


def tympan_run(out: Path, dut: str, selection: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness.cli", "run", "--rig", "sim", "--dut", dut]
    cmd += ["--out", str(out), "--limit", "1", "--", "-k", selection]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, check=False, env=dict(os.environ)
    )


def failed_checks(out: Path) -> list[str]:
    turns = json.loads((out / "results.json").read_text())["turns"]
    return [c["message"] for t in turns for c in t["checks"] if not c["passed"]]


def test_the_clean_agent_passes(tmp_path):
    done = tympan_run(tmp_path, "reference", f"{STREAMING} or {BARGE_IN}")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "every check held" in done.stdout


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_breaks_its_contract(tmp_path, fault):
    selection, contract = FAULTS[fault]
    done = tympan_run(tmp_path, f"reference:fault={fault}", selection)
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-2000:]
    # pytest's failure names the contract and the rule; the turn's record keeps it too
    assert contract in done.stdout, done.stdout[-4000:]
    tag = contract.split(" ", 1)[0]
    assert any(m.startswith(tag) for m in failed_checks(tmp_path))
    assert "FAILED (exit 1)" in done.stdout
