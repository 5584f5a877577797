"""OUT/report.html: latency table, audio players, inline plots, escaping, and a real render
in headless Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from harness.errors import InputError
from harness.report.history import append_history
from harness.report.html import render_all, render_report
from harness.report.results import load_results
from tests.report.helpers import HOSTILE

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _page(run_copy: Path, **kw) -> str:
    path = render_report(run_copy, use_allure=False, **kw)
    assert path == run_copy / "report.html"
    return path.read_text(encoding="utf-8")


def test_page_has_table_turns_audio_and_plots(run_copy):
    page = _page(run_copy)
    assert page.count('id="latency-table"') == 1 and 'id="turns-table"' in page
    res = load_results(run_copy)
    audios = re.findall(r'<audio controls preload="none" src="([^"]+)"', page)
    assert audios == [r.evidence["capture_wav"] for r in res["records"]]
    assert all((run_copy / a).is_file() for a in audios)  # relative links that resolve
    # every turn has a timeline: two saved PNGs, two drawn from the capture by the report
    assert page.count('src="data:image/png;base64,') == len(res["records"])
    table = page[page.index('id="latency-table"') : page.index("</table>")]
    p95 = res["summary"]["ttfa_ms"]["p95"]
    assert f"<td>{p95:.1f}</td>" in table and "p95 ≤ 1500" in table
    assert ">PASS<" in table or ">FAIL<" in table


def test_hostile_strings_are_escaped(run_copy):
    """A transcript, test id or device string with markup shows as text, never as markup."""
    res = json.loads((run_copy / "results.json").read_text())
    res["turns"][0]["turn"] = '"><img src=x onerror=alert(2)>'
    res["turns"][0]["checks"] = [
        {"contract": "budget", "name": "<b>x</b>", "passed": False, "message": "[budget] <i>"}
    ]
    res["run"]["dut"] = "<svg onload=alert(3)>"
    (run_copy / "results.json").write_text(json.dumps(res))
    page = _page(run_copy)
    for bad in ("<script>alert(1)", "<img src=x", "<svg onload", "<b>x</b>", "<i>"):
        assert bad not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert html.escape(HOSTILE) in page  # the transcript, quotes and all
    assert "&lt;svg onload=alert(3)&gt;" in page
    assert page.count("<script") == 0


def test_evidence_outside_out_is_not_read(run_copy, tmp_path):
    """A results.json cannot make the page inline or link files outside OUT."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    res = json.loads((run_copy / "results.json").read_text())
    res["turns"][0]["evidence"] = {"timeline_png": "../../secret.png", "capture_wav": "/etc/passwd"}
    (run_copy / "results.json").write_text(json.dumps(res))
    page = _page(run_copy)
    assert "/etc/passwd" not in page and "secret" not in page
    assert "no capture saved" in page


def test_trend_from_history(run_copy):
    hist = run_copy / "history"
    res = load_results(run_copy)
    for i in range(3):
        res["run"]["started"] = f"2026-01-0{i + 1}T00:00:00+00:00"
        append_history(hist, res)
    page = _page(run_copy)
    assert 'id="trend"' in page


def test_missing_results_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=r"results\.json"):
        render_report(tmp_path)


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}"]
    return subprocess.run(cmd + args, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/setup.sh adds it)")
def test_renders_in_headless_chromium(run_copy, tmp_path):
    """The page as a browser builds it: the latency table and audio elements are in the DOM,
    the hostile transcript is text, and the screenshot is not blank."""
    path, allure = render_all(run_copy, use_allure=False)
    assert allure is None
    url = path.resolve().as_uri()
    dom = _chromium(["--dump-dom", url], tmp_path / "p1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    dom_html = dom.stdout
    assert 'id="latency-table"' in dom_html and "<audio" in dom_html
    assert "<script>alert(1)" not in dom_html and "&lt;script&gt;alert(1)" in dom_html
    assert dom_html.count("<audio") == len(load_results(run_copy)["records"])
    shot = tmp_path / "shot.png"
    done = _chromium([f"--screenshot={shot}", "--window-size=1280,1600", url], tmp_path / "p2")
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    img = mpimg.imread(shot)
    assert img.shape[:2] == (1600, 1280)
    rgb = img[..., :3]
    assert rgb.std() > 0.05  # text, tables and plots, not a blank page
    dark = np.mean(rgb.mean(axis=2) < 0.5)
    assert 0.005 < dark < 0.5, dark


def test_says_why_there_is_no_allure_report(run_copy):
    """Without allure-results the page says why there is no Allure report (the link itself
    is checked in test_allure.py, where there are results)."""
    _, outcome = render_all(run_copy)
    assert outcome is not None and outcome.path is None
    page = (run_copy / "report.html").read_text()
    assert "Allure report:" in page and "no Allure results" in page
