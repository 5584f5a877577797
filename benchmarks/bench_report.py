"""Speed and size of the report side: timeline plot, results writing, HTML, Allure 3.

Builds real turns (harness.groundtruth + harness.analysis, as tests/report does), then times
timeline_png per turn (and its PNG size), ResultsWriter.add at a given run length, tympan's
own report.html, and `allure generate` (when Allure 3 is installed). Prints medians.

Usage: python benchmarks/bench_report.py [--turns N] [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.groundtruth import corpus_sources  # noqa: E402
from harness.report.html import allure_report, find_allure_cli, render_all  # noqa: E402
from harness.report.plots import timeline_png  # noqa: E402
from harness.report.results import ResultsWriter  # noqa: E402
from tests.report.helpers import real_turn  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=12)
    ap.add_argument("--out", default=None, help="keep the run here (default: a temp folder)")
    args = ap.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-report-"))
    sources = corpus_sources(48000)
    timeline_png(None, __import__("numpy").zeros((4800, 2)), 48000, _dummy())  # warm import
    plot_s, sizes, add_s, audio_s = [], [], [], []
    w = ResultsWriter(out, run_info={"rig": "sim", "dut": "bench"})
    for i in range(args.turns):
        r = real_turn(sources, out, seed=1 + i, barge_in=i % 4 == 3)
        rel = str(Path(r.evidence["capture_wav"]).with_name("timeline.png"))
        t0 = time.perf_counter()
        png = timeline_png(out / rel, out / r.evidence["capture_wav"], None, r)
        plot_s.append(time.perf_counter() - t0)
        sizes.append(len(png))
        audio_s.append(r.audio_s)
        r.evidence["timeline_png"] = rel
        t0 = time.perf_counter()
        w.add(r)
        add_s.append(time.perf_counter() - t0)
    w.finish({"ttfa_ms": {"p95": 1500.0}})
    t0 = time.perf_counter()
    render_all(out, use_allure=False)
    html_s = time.perf_counter() - t0
    med = statistics.median
    print(f"turns: {args.turns}, capture length median {med(audio_s):.1f} s (48 kHz stereo)")
    print(f"timeline_png: median {med(plot_s) * 1000:.0f} ms, max {max(plot_s) * 1000:.0f} ms")
    print(f"timeline PNG size: median {med(sizes) / 1000:.0f} KB, max {max(sizes) / 1000:.0f} KB")
    print(f"ResultsWriter.add: median {med(add_s) * 1000:.1f} ms, last {add_s[-1] * 1000:.1f} ms")
    print(f"report.html (tympan's own, {args.turns} turns): {html_s * 1000:.0f} ms, "
          f"{(out / 'report.html').stat().st_size / 1e6:.2f} MB")  # fmt: skip
    if find_allure_cli() is not None:
        # allure-pytest results for the same turns, as the plugin leaves them
        import subprocess

        tests = out / "test_bench_turns.py"
        tests.write_text(
            "from pathlib import Path\nimport pytest\n"
            "from harness.report import load_results\n"
            "from harness.report.allure_attach import attach_turn\n"
            f"OUT = Path({str(out)!r})\nRECS = load_results(OUT)['records']\n"
            "@pytest.mark.parametrize('i', range(len(RECS)))\n"
            "def test_turn(i):\n    attach_turn(RECS[i], OUT)\n"
        )
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)]
        cmd += ["--alluredir", str(out / "allure-results"), "--rootdir", str(out)]
        subprocess.run(
            cmd,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        t0 = time.perf_counter()
        outcome = allure_report(out)
        gen_s = time.perf_counter() - t0
        size = outcome.path.stat().st_size / 1e6 if outcome.path else 0.0
        print(f"allure generate (single file): {gen_s:.2f} s, {size:.1f} MB ({outcome.note})")
    if not args.out:
        shutil.rmtree(out)
    return 0


def _dummy():
    from harness.report.results import TurnRecord

    return TurnRecord(test="t", turn="warm-up")


if __name__ == "__main__":
    sys.exit(main())
