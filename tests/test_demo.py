"""scripts/demo_turn.py: one simulated turn, measured by the real CLI, within tolerance."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_measures_the_simulated_turn_within_tolerance(tmp_path):
    """scripts/demo_turn.py writes the capture and prints both modes next to the truth."""
    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "scripts/demo_turn.py", "--out", str(out), "--seed", "7"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "capture.wav").is_file() and (out / "reply.wav").is_file()
    lines = done.stdout.splitlines()
    assert any(line.startswith("truth") for line in lines)
    assert any(line.startswith("blind") for line in lines)
    assert any(line.startswith("reply-reference") for line in lines)
    assert "within tolerance" in done.stdout
