"""Terminal tables and the timeline/trend plots, on real measured turns."""

from __future__ import annotations

import io

import matplotlib.image as mpimg
import numpy as np
import pytest

from harness.audiofile import read_audio
from harness.report.plots import timeline_png, trend_png
from harness.report.results import TurnRecord, load_results, summarize
from harness.report.text import format_progress_line, format_summary_table, format_worst_turns


def _rec(i, ttfa, **kw):
    return TurnRecord(test="t", turn=f"turn{i}", utterance=f"u{i}", metrics={"ttfa_ms": ttfa}, **kw)


def test_summary_table_rows_and_verdicts():
    recs = [_rec(i, v) for i, v in enumerate([400.0, 500.0, 1900.0])]
    s = summarize(recs, {"ttfa_ms": {"p95": 1500.0}, "stop_latency_ms": {"p95": 200.0}})
    table = format_summary_table(s)
    lines = table.splitlines()
    assert lines[0].split()[:7] == ["metric", "n", "disc", "p50", "p95", "p99", "max"]
    ttfa = next(x for x in lines if x.startswith("ttfa_ms"))
    assert ttfa.split()[1:7] == ["3", "0", "500.0", "1760.0", "1872.0", "1900.0"]
    assert "p95<=1500" in ttfa and ttfa.endswith("FAIL")
    stop = next(x for x in lines if x.startswith("stop_latency_ms"))
    assert "n/a" in stop  # budgeted but nothing measured: not a silent PASS
    s = summarize(recs, {"ttfa_ms": {"max": 2000.0}})
    assert format_summary_table(s).splitlines()[2].endswith("PASS")
    assert "no turns" in format_summary_table({})


def test_worst_turns_are_the_slowest_with_evidence():
    recs = [
        _rec(i, v, evidence={"capture_wav": f"turns/{i}/capture.wav"})
        for i, v in enumerate([400.0, 900.0, 300.0, 700.0])
    ]
    recs.append(_rec(9, 9000.0, verdict="discarded", discard="too noisy"))
    text = format_worst_turns(recs, "ttfa_ms", k=2).splitlines()
    assert text[0] == "worst ttfa_ms:"
    assert "turn1" in text[1] and "900.0" in text[1] and "turns/1/capture.wav" in text[1]
    assert "turn3" in text[2] and len(text) == 3
    assert "no values" in format_worst_turns(recs, "stop_latency_ms")


def test_progress_line():
    line = format_progress_line(_rec(0, 512.34, verdict="passed"))
    assert "turn0" in line and "512.3 ms" in line and line.endswith("PASSED")
    r = _rec(1, None, verdict="discarded", discard="no reply found")
    assert format_progress_line(r).endswith("DISCARDED (no reply found)")


def _pixels(png: bytes) -> np.ndarray:
    return mpimg.imread(io.BytesIO(png), format="png")


def _has_red(img: np.ndarray) -> bool:
    """Pure-ish red pixels: the 'reply stopped' marker."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return bool(np.any((r > 0.9) & (g < 0.15) & (b < 0.15)))


def test_timeline_png_of_real_turns(run_dir, tmp_path):
    """A small PNG per turn; the barge-in turn's plot carries the stop marker, the plain
    turn's does not; array input gives the same picture as the file."""
    res = load_results(run_dir)
    plain = res["records"][0]
    barge = next(r for r in res["records"] if r.barge_in_offset_ms is not None)
    assert barge.metrics["stop_latency_ms"] is not None
    png_plain = timeline_png(
        tmp_path / "a.png", run_dir / plain.evidence["capture_wav"], None, plain
    )
    png_barge = timeline_png(None, run_dir / barge.evidence["capture_wav"], None, barge)
    assert (tmp_path / "a.png").read_bytes() == png_plain
    for png in (png_plain, png_barge):
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert 20_000 < len(png) < 200_000
        img = _pixels(png)
        assert img.shape[1] == 900 and img.shape[0] > 300
        assert img[..., :3].std() > 0.05  # not blank
    assert _has_red(_pixels(png_barge)) and not _has_red(_pixels(png_plain))
    data, fs = read_audio(run_dir / plain.evidence["capture_wav"], role="capture")
    assert timeline_png(None, data, fs, plain) == png_plain
    assert timeline_png(None, (data[:, 0], data[:, 1]), fs, plain) == png_plain
    with pytest.raises(ValueError, match="channels, samples"):
        timeline_png(None, data.T, fs, plain)
    with pytest.raises(ValueError, match="sample_rate_hz"):
        timeline_png(None, data, None, plain)


def test_trend_png():
    hist = [
        {"summary": {"ttfa_ms": {"p50": 500 + i, "p95": 600 + i}, "stop_latency_ms": {"p95": 90}}}
        for i in range(5)
    ]
    png = trend_png(None, hist)
    assert png is not None and png[:4] == b"\x89PNG"
    assert _pixels(png)[..., :3].std() > 0.05
    assert trend_png(None, []) is None
    assert trend_png(None, [{"summary": {}}]) is None
