"""`tympan corpus list|validate` and `scripts/label_corpus.py` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import corpus as hc
from harness import corpus_check, corpus_write
from tests import corpus_helpers as helpers

REPO = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "corpus", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_committed_corpus_validates():
    result = run("validate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok: {len(hc.Corpus.load())} entries"


@pytest.mark.parametrize("defect", sorted(helpers.DEFECTS))
def test_defect_exits_2_and_names_file_and_problem(tmp_path, defect):
    manifest, file_name, phrase = helpers.DEFECTS[defect](tmp_path)
    result = run("validate", "--manifest", str(manifest))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    problem_lines = [line for line in result.stderr.splitlines() if ": " in line]
    problem_lines = [line for line in problem_lines if not line.startswith("tympan corpus")]
    assert len(problem_lines) == 1, result.stderr
    assert file_name in problem_lines[0] and phrase in problem_lines[0]
    assert result.stdout == ""


def test_malformed_manifest_exits_2_without_traceback(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("{ not json")
    for command in (["validate"], ["list"]):
        result = run(*command, "--manifest", str(path))
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert "manifest.json" in result.stderr and "line 1 column 3" in result.stderr


def test_list_table_and_category_filter():
    result = run("list", "--category", "barge_in")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["id", "category", "voice", "rate"]
    rows = lines[1:-1]
    barge_in = hc.Corpus.load().by_category("barge_in")
    assert len(rows) == len(barge_in)
    assert all(" barge_in " in row for row in rows)
    assert lines[-1].startswith(f"{len(barge_in)} entries")


def test_list_json():
    result = run("list", "--json", "--category", "pause")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert {e["category"] for e in entries} == {"pause"}
    assert all(Path(e["path"]).is_file() and e["pauses_s"] for e in entries)


def test_label_corpus_check(tmp_path):
    script = str(REPO / "scripts" / "label_corpus.py")
    ok = subprocess.run([sys.executable, script, "--check"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr

    manifest = helpers.good_corpus(tmp_path)
    doc = json.loads(manifest.read_text())
    doc["utterances"][1]["speech_start_s"] += 0.0015  # 1.5 ms off: stale
    manifest.write_text(json.dumps(doc))
    stale = subprocess.run(
        [sys.executable, script, "--check", "--manifest", str(manifest)],
        capture_output=True,
        text=True,
    )
    assert stale.returncode == 1
    assert "b.wav: speech_start_s" in stale.stderr

    fixed = subprocess.run(
        [sys.executable, script, "--manifest", str(manifest)], capture_output=True, text=True
    )
    assert fixed.returncode == 0, fixed.stderr
    assert corpus_write.relabel_manifest(manifest)[1] == []
    assert corpus_check.validate(manifest) == []
