"""Allure evidence from a real allure-pytest run, and the Allure 3 single-file report."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.report.allure_attach import CATEGORIES, write_categories, write_environment
from harness.report.html import allure_report, find_allure_cli, render_all

ROOT = Path(__file__).resolve().parents[2]

TESTS = """
from pathlib import Path
from harness.report import load_results
from harness.report.allure_attach import attach_turn, step

OUT = Path({out!r})
RES = load_results(OUT)

def test_plain():
    with step("play"):
        pass
    with step("analyse"):
        attach_turn(RES["records"][0], OUT)

def test_barge_in_fails():
    rec = next(r for r in RES["records"] if r.barge_in_offset_ms is not None)
    attach_turn(rec, OUT)
    assert False, "[budget] ttfa_ms p95 1800.0 ms > 1500 ms"

def test_xrun():
    attach_turn(RES["records"][3], OUT)  # no timeline saved: drawn by attach_turn
    assert False, "[infrastructure] 3 xruns during capture"
"""


@pytest.fixture(scope="module")
def allure_out(run_dir, tmp_path_factory) -> Path:
    """A copy of the run whose allure-results came from a real pytest --alluredir run."""
    out = tmp_path_factory.mktemp("allure") / "out"
    shutil.copytree(run_dir, out)
    tests = out.parent / "test_turns.py"
    tests.write_text(TESTS.format(out=str(out)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)]
    cmd += ["--alluredir", str(out / "allure-results"), "--rootdir", str(out.parent)]
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env,
        cwd=out.parent,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # two tests fail on purpose
    assert "2 failed, 1 passed" in done.stdout, done.stdout
    write_categories(out / "allure-results")
    write_environment(out / "allure-results", {"rig": "sim", "firmware": "1.2"})
    return out


def _results(out: Path) -> dict[str, dict]:
    res = {}
    for p in (out / "allure-results").glob("*-result.json"):
        d = json.loads(p.read_text())
        res[d["name"]] = d
    return res


def _attachments(node: dict) -> list[dict]:
    """A test's attachments, including those made inside steps."""
    out = list(node.get("attachments", []))
    for step in node.get("steps", []):
        out += _attachments(step)
    return out


def test_each_turn_has_png_wav_json(allure_out):
    res = _results(allure_out)
    assert set(res) == {"test_plain", "test_barge_in_fails", "test_xrun"}
    for name in ("test_plain", "test_barge_in_fails", "test_xrun"):
        atts = {a["type"]: a for a in _attachments(res[name])}
        assert set(atts) >= {"image/png", "audio/wav", "application/json"}, name
        wav = allure_out / "allure-results" / atts["audio/wav"]["source"]
        assert wav.suffix == ".wav" and wav.read_bytes()[:4] == b"RIFF"
        png = allure_out / "allure-results" / atts["image/png"]["source"]
        assert png.read_bytes()[:4] == b"\x89PNG"
        body = json.loads(
            (allure_out / "allure-results" / atts["application/json"]["source"]).read_text()
        )
        assert body["metrics"]["ttfa_ms"] is not None and "checks" in body
    # attach_turn drew the missing timeline next to the capture
    assert any(allure_out.glob("turns/*/timeline.png"))


def test_labels_parameters_steps(allure_out):
    res = _results(allure_out)
    barge = res["test_barge_in_fails"]
    labels = [(x["name"], x["value"]) for x in barge["labels"]]
    assert ("feature", "cancellation") in labels and ("feature", "budget") in labels
    assert ("story", "barge_in") in labels and ("severity", "critical") in labels
    params = {p["name"]: p["value"] for p in barge["parameters"]}
    assert "500 ms" in params["barge-in offset"] and "sim" in params["rig"]
    assert "reference" in params["DUT"] and params["utterance"]
    plain = res["test_plain"]
    assert [s["name"] for s in plain["steps"]] == ["play", "analyse"]
    assert "none" in {p["name"]: p["value"] for p in plain["parameters"]}["barge-in offset"]


def test_categories_match_message_prefixes():
    """Java-style whole-message matching (Allure 2) and JS search (Allure 3) agree."""

    def category(message: str, status: str = "failed") -> str | None:
        for c in CATEGORIES:
            if status in c["matchedStatuses"] and re.fullmatch(c["messageRegex"], message):
                return c["name"]
        return None

    assert category("AssertionError: [budget] ttfa_ms p95 1800 ms > 1500\nassert False") == (
        "Budget exceeded"
    )
    assert category("[cancellation] stale audio 300 ms after stop") == "Cancellation (barge-in)"
    assert category("x\n[chunking] chunk of 1 token") == "Chunking"
    assert category("[turn-taking] reply inside the pause") == "Turn-taking"
    assert category("[infrastructure] 3 xruns", "broken") == "Infrastructure: xrun"
    assert category("[infrastructure] device lost: /dev/ttyUSB0") == "Infrastructure: device lost"
    assert category("[infrastructure] JACK server died") == "Infrastructure: rig error"
    assert category("AssertionError: something else") is None


def test_environment_properties_escaped(tmp_path):
    path = write_environment(tmp_path, {"DUT firmware": "1.2\nrig=evil", "skip": None, "n": 3})
    lines = path.read_text().splitlines()
    assert lines == ["DUT\\ firmware=1.2\\nrig=evil", "n=3"]
    cats = json.loads(write_categories(tmp_path).read_text())
    assert [c["name"] for c in cats] == [c["name"] for c in CATEGORIES]


def _embedded(index: Path) -> dict[str, bytes]:
    """The data files Allure's single-file report embeds as d("path","base64")."""
    text = index.read_text(encoding="utf-8")
    found = re.finditer(r'd\("([^"]+)","([A-Za-z0-9+/=]*)"\)', text)
    return {m.group(1): base64.b64decode(m.group(2)) for m in found}


@pytest.mark.skipif(find_allure_cli() is None, reason="Allure 3 (npm allure in .node/) missing")
def test_allure3_single_file_report(allure_out, tmp_path):
    """allure generate: one self-contained index.html with the categories, the WAV and the
    environment; a second run adds to Allure's history file."""
    history = tmp_path / "history"
    outcome = allure_report(allure_out, history_dir=history)
    assert outcome.path == allure_out / "allure-report" / "index.html", outcome.note
    data = _embedded(outcome.path)
    cats = json.loads(data["widgets/categories.json"])
    names = {n["name"] for n in cats["nodes"].values() if n["type"] == "category"}
    assert names == {"Budget exceeded", "Infrastructure: xrun"}
    assert any(k.endswith(".wav") for k in data), sorted(data)[:20]
    env = data["widgets/allure_environment.json"].decode()
    assert "firmware" in env and "1.2" in env
    page_path, again = render_all(allure_out, history_dir=history)
    assert again is not None and again.path == outcome.path
    assert 'href="allure-report/index.html"' in page_path.read_text()
    first = (history / "allure-history.jsonl").read_text().count("\n")
    assert allure_report(allure_out, history_dir=history).path is not None
    assert (history / "allure-history.jsonl").read_text().count("\n") == first + 1
    assert first == 2  # allure_report, then render_all


def test_allure_missing_is_reported_not_raised(allure_out, tmp_path, monkeypatch):
    monkeypatch.setenv("TYMPAN_ALLURE", str(tmp_path / "nope.js"))
    monkeypatch.setattr("harness.report.html.ROOT", tmp_path)  # no .node/ there
    outcome = allure_report(allure_out)
    assert outcome.path is None and "not available" in outcome.note
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no Allure results" in allure_report(empty).note


def test_attach_outside_an_allure_run_is_harmless(run_copy):
    """In a pytest session without --alluredir the same calls do nothing and do not fail."""
    from harness.report import load_results
    from harness.report.allure_attach import attach_turn, step

    rec = load_results(run_copy)["records"][0]
    with step("play"):
        attach_turn(rec, run_copy)


@pytest.mark.skipif(find_allure_cli() is None, reason="Allure 3 (npm allure in .node/) missing")
def test_allure3_large_runs_get_a_multi_file_report(allure_out, tmp_path, monkeypatch):
    """Past the single-file limit (every WAV inlined), Allure writes index.html + data/."""
    monkeypatch.setattr("harness.report.html.SINGLE_FILE_MAX_BYTES", 0)
    outcome = allure_report(allure_out, history_dir=tmp_path)
    assert outcome.path is not None and "multi-file" in outcome.note
    assert (outcome.path.parent / "data").is_dir()
    assert not _embedded(outcome.path)
