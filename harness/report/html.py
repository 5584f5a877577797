"""The run's HTML report: OUT/report.html (tympan's own page) and OUT/allure-report/ (Allure 3).

`render_report(OUT)` always writes ``OUT/report.html``: one self-contained page built from
OUT/results.json — the latency table (``id="latency-table"``), the trend over earlier runs,
a table of turns (``id="turns-table"``) and, per turn, its timeline plot (inline PNG),
an ``<audio controls>`` player of its capture (linked relatively, so keep report.html in
OUT), its checks and metrics. When Node and the npm package ``allure`` (Allure 3, installed
by scripts/setup.sh into .node/) are there and OUT/allure-results holds results, it also
renders Allure's single-file report into ``OUT/allure-report/index.html``, which report.html
links to (Allure's page cannot link back; it is named after the run's rig and DUT).
Every string that came from a device, a transcript, a test id or a file name goes through
`html.escape`.
"""

from __future__ import annotations

import base64
import html
import json
import os
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.report.history import ALLURE_HISTORY_FILE, load_history
from harness.report.results import PERCENTILES, TurnRecord, load_results, metric_values

ROOT = Path(__file__).resolve().parents[2]
ALLURE_CLI_ENV = "TYMPAN_ALLURE"  # path to Allure 3's cli.js (or an `allure` executable)
SINGLE_FILE_MAX_BYTES = 150_000_000


def _e(v: object) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _fmt_ms(v: object) -> str:
    return "–" if v is None else f"{float(v):.1f}"  # type: ignore[arg-type]


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _href(rel: str) -> str:
    """A relative path as an href: URL-quoted per segment, then HTML-escaped."""
    return _e(urllib.parse.quote(rel.replace(os.sep, "/"), safe="/"))


def _inside(out_dir: Path, rel: str | None) -> Path | None:
    """OUT/rel when it is a file inside OUT (a results.json cannot point the page elsewhere)."""
    if not rel:
        return None
    p = (out_dir / rel).resolve()
    if not p.is_relative_to(out_dir.resolve()) or not p.is_file():
        return None
    return p


# ---- Allure 3 ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllureOutcome:
    """What became of the Allure side: the report's path, or why there is none."""

    path: Path | None
    note: str


def find_allure_cli() -> list[str] | None:
    """The command that runs Allure 3: $TYMPAN_ALLURE, else the project's .node/ install."""
    node = shutil.which("node")
    env = os.environ.get(ALLURE_CLI_ENV)
    candidates = [Path(env)] if env else []
    candidates.append(ROOT / ".node" / "node_modules" / "allure" / "cli.js")
    for c in candidates:
        if c.is_file():
            if c.suffix == ".js":
                return [node, str(c)] if node else None
            return [str(c)]
    return None


def allure_report(
    out_dir: str | Path, *, history_dir: str | Path | None = None, timeout_s: float = 180.0
) -> AllureOutcome:
    """Render OUT/allure-results with Allure 3 into OUT/allure-report/index.html.

    One self-contained file while the attachments total at most SINGLE_FILE_MAX_BYTES,
    else index.html with a data/ folder beside it.

    Offline: the CLI comes from the local npm install. History goes to
    HISTORY/allure-history.jsonl. Never raises for a missing tool or a failed render: the
    outcome says why, and tympan's own page stands alone.
    """
    out = Path(out_dir).resolve()
    results_dir = out / "allure-results"
    if not results_dir.is_dir() or not any(results_dir.glob("*-result.json")):
        return AllureOutcome(None, f"no Allure results in {results_dir}")
    cli = find_allure_cli()
    if cli is None:
        why = "node not found" if shutil.which("node") is None else "npm package allure missing"
        return AllureOutcome(None, f"Allure 3 not available ({why}; run make setup)")
    from harness.report.allure_attach import CATEGORIES

    report_dir = out / "allure-report"
    # One self-contained file is the easiest thing to hand around, but it inlines every WAV
    # (base64): past SINGLE_FILE_MAX_BYTES of attachments, write index.html + data/ instead.
    attached = sum(p.stat().st_size for p in results_dir.iterdir() if p.is_file())
    single = attached <= SINGLE_FILE_MAX_BYTES
    history = Path(history_dir) if history_dir else out / "history"
    history.mkdir(parents=True, exist_ok=True)
    run = _run_info(out)
    config = {
        "name": f"tympan: {run.get('rig', '?')} / {run.get('dut', '?')}",
        "output": str(report_dir),
        "historyPath": str((history / ALLURE_HISTORY_FILE).resolve()),
        "categories": CATEGORIES,
        "plugins": {"awesome": {"options": {"singleFile": single, "reportLanguage": "en"}}},
    }
    with tempfile.TemporaryDirectory(prefix="tympan-allure-") as tmp:
        cfg = Path(tmp) / "allurerc.json"
        cfg.write_text(json.dumps(config), encoding="utf-8")
        if report_dir.exists():
            shutil.rmtree(report_dir)
        cmd = [
            *cli,
            "generate",
            str(results_dir),
            "--config",
            str(cfg),
            "--output",
            str(report_dir),
        ]
        env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
        try:
            done = subprocess.run(
                cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout_s, env=env
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            return AllureOutcome(None, f"allure generate failed: {err}")
    index = report_dir / "index.html"
    if done.returncode != 0 or not index.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return AllureOutcome(
            None, f"allure generate exited {done.returncode}: {' | '.join(tail) or 'no output'}"
        )
    return AllureOutcome(index, "rendered with Allure 3" + ("" if single else " (multi-file)"))


def _run_info(out: Path) -> dict:
    try:
        return dict(json.loads((out / "results.json").read_text(encoding="utf-8"))["run"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


# ---- tympan's own page -------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;
color:#222}
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}
td,th{padding:.25em .6em;border-bottom:1px solid #e3e3e3;
text-align:right;vertical-align:top}th{background:#f3f3f3}td.l,th.l{text-align:left}
.pass{color:#0a7a2f;font-weight:600}.fail{color:#b3131b;font-weight:600}.na{color:#777}
.passed{background:#eef8f0}.failed,.error{background:#fbecec}.discarded{background:#f4f4f4}
img{max-width:100%;border:1px solid #ddd}dl.run{display:grid;grid-template-columns:max-content auto;
gap:.1em 1em}dl.run dt{color:#555}dl.run dd{margin:0}.turn{border:1px solid #ddd;padding:.6em 1em;
margin:1em 0;border-radius:4px}.turn h3{margin:.2em 0 .4em;font-size:1.05em}
pre{background:#f7f7f7;padding:.5em;overflow:auto;font-size:12px}code{font-size:12px}
.note{color:#555;font-size:.9em}
"""


def _summary_table(summary: Mapping[str, Mapping]) -> str:
    cols = [p for p in PERCENTILES if p != "p90"]
    head = "".join(f"<th>{c} ms</th>" for c in cols)
    rows = []
    for metric, row in summary.items():
        limits = row.get("budget") or {}
        budget = ", ".join(f"{_e(p)} ≤ {float(v):g}" for p, v in limits.items()) or "–"
        passed = row.get("passed")
        if passed is True:
            verdict = '<span class="pass">PASS</span>'
        elif passed is False:
            verdict = '<span class="fail">FAIL</span>'
        elif row.get("not_judged"):
            thin = "; ".join(row["not_judged"])
            verdict = f'<span class="na" title="{_e(thin)}">not judged</span>'
        else:
            verdict = '<span class="na">n/a</span>' if limits else ""
        cells = "".join(f"<td>{_fmt_ms(row.get(c))}</td>" for c in cols)
        rows.append(
            f'<tr><td class="l"><code>{_e(metric)}</code></td><td>{_e(row.get("n", 0))}</td>'
            f"<td>{_e(row.get('discarded', 0))}</td>{cells}"
            f'<td class="l">{budget}</td><td class="l">{verdict}</td></tr>'
        )
    if not rows:
        rows.append('<tr><td class="l" colspan="9">no turns measured</td></tr>')
    return (
        '<table id="latency-table"><thead><tr><th class="l">metric</th><th>n</th>'
        f'<th>discarded</th>{head}<th class="l">budget</th><th class="l">result</th></tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _turns_table(records: Sequence[TurnRecord]) -> str:
    rows = []
    for i, r in enumerate(records):
        v = metric_values(r)
        why = r.discard or "; ".join(c.message for c in r.failed_checks)
        rows.append(
            f'<tr class="{_e(r.verdict)}"><td class="l"><a href="#turn-{i}">{_e(r.turn)}</a></td>'
            f'<td class="l">{_e(r.category)}</td><td>{_fmt_ms(v.get("ttfa_ms"))}</td>'
            f"<td>{_fmt_ms(v.get('stop_latency_ms'))}</td><td>{_fmt_ms(v.get('max_gap_ms'))}</td>"
            f'<td class="l">{_e(r.verdict)}</td><td class="l">{_e(why)}</td></tr>'
        )
    return (
        '<table id="turns-table"><thead><tr><th class="l">turn</th><th class="l">category</th>'
        '<th>TTFA ms</th><th>stop ms</th><th>max gap ms</th><th class="l">verdict</th>'
        f'<th class="l">why</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _turn_section(i: int, r: TurnRecord, out: Path) -> str:
    parts = [f'<section class="turn {_e(r.verdict)}" id="turn-{i}">']
    parts.append(f"<h3>{_e(r.turn)} — {_e(r.verdict)}</h3>")
    facts = [
        ("test", r.test),
        ("utterance", r.utterance),
        ("transcript", r.transcript),
        ("rig / DUT", f"{r.rig} / {r.dut}"),
        (
            "barge-in offset",
            "–" if r.barge_in_offset_ms is None else f"{r.barge_in_offset_ms:g} ms",
        ),
        ("discard", r.discard),
        ("xruns", r.xruns),
    ]
    parts.append(
        '<dl class="run">'
        + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts if v not in (None, ""))
        + "</dl>"
    )
    png = _inside(out, r.evidence.get("timeline_png"))
    wav = _inside(out, r.evidence.get("capture_wav"))
    image = None
    if png is not None:
        image = png.read_bytes()
    elif wav is not None:
        from harness.errors import InputError
        from harness.report.plots import timeline_png

        try:
            image = timeline_png(None, wav, None, r)
        except (InputError, ValueError) as err:
            parts.append(f'<p class="note">no timeline: {_e(err)}</p>')
    if image is not None:
        parts.append(f'<img alt="timeline of {_e(r.turn)}" src="{_data_uri(image)}">')
    if wav is not None:
        rel = str(wav.relative_to(out.resolve()))
        parts.append(
            f'<p><audio controls preload="none" src="{_href(rel)}"></audio> '
            f'<a href="{_href(rel)}">{_e(rel)}</a> '
            '<span class="note">(left: ref = what the mouth played; right: ear)</span></p>'
        )
    else:
        parts.append('<p class="note">no capture saved for this turn</p>')
    if r.checks:
        items = "".join(
            f'<li><span class="{"pass" if c.passed else "fail"}">'
            f"{'ok' if c.passed else 'FAILED'}</span> [{_e(c.contract)}] {_e(c.name)}"
            + (f": {_e(c.message)}" if c.message else "")
            + "</li>"
            for c in r.checks
        )
        parts.append(f"<ul>{items}</ul>")
    stages = {k: v for k, v in r.stages_ms.items() if v is not None}
    if stages:
        parts.append(
            "<table><tr>"
            + "".join(f"<th>{_e(k)}</th>" for k in stages)
            + "</tr><tr>"
            + "".join(f"<td>{_fmt_ms(v)}</td>" for v in stages.values())
            + "</tr></table>"
        )
    metrics_json = json.dumps(r.to_dict()["metrics"], indent=1, allow_nan=False)
    parts.append(f"<details><summary>metrics</summary><pre>{_e(metrics_json)}</pre></details>")
    parts.append("</section>")
    return "\n".join(parts)


def render_html(
    results: Mapping[str, Any],
    out_dir: str | Path,
    *,
    history: Sequence[Mapping] = (),
    allure: AllureOutcome | None = None,
) -> str:
    """tympan's own page for `results` (a `load_results` dict) whose evidence is in OUT."""
    out = Path(out_dir)
    run = results.get("run") or {}
    records: list[TurnRecord] = list(results.get("records") or [])
    counts: dict[str, int] = {}
    for r in records:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    title = f"tympan report: {run.get('rig', '?')} / {run.get('dut', '?')}"
    body = [f"<h1>{_e(title)}</h1>"]
    body.append(
        '<dl class="run">'
        + "".join(
            f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>"
            for k, v in run.items()
            if v is not None and not isinstance(v, dict | list)
        )
        + f"<dt>turns</dt><dd>{len(records)} ("
        + ", ".join(f"{_e(n)} {_e(k)}" for k, n in sorted(counts.items()))
        + ")</dd></dl>"
    )
    if allure is not None:
        if allure.path is not None:
            rel = os.path.relpath(allure.path, out.resolve())
            body.append(f'<p>Allure report: <a href="{_href(rel)}">{_e(rel)}</a></p>')
        else:
            body.append(f'<p class="note">Allure report: {_e(allure.note)}</p>')
    regressions = results.get("regressions") or []
    if regressions:
        items = "".join(f"<li>{_e(x)}</li>" for x in regressions)
        body.append(f'<h2>Regressions against the baseline</h2><ul class="fail">{items}</ul>')
    unjudged = results.get("not_compared") or []
    if unjudged:
        items = "".join(f"<li>{_e(x)}</li>" for x in unjudged)
        body.append(f'<h2>Not compared with the baseline</h2><ul class="note">{items}</ul>')
    body.append("<h2>Latency</h2>")
    body.append(_summary_table(results.get("summary") or {}))
    if history:
        from harness.report.plots import trend_png

        png = trend_png(None, history)
        if png is not None:
            body.append("<h2>Trend</h2>")
            body.append(f'<img id="trend" alt="latency trend over runs" src="{_data_uri(png)}">')
    body.append("<h2>Turns</h2>")
    body.append(_turns_table(records))
    body.extend(_turn_section(i, r, out) for i, r in enumerate(records))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def render_report(
    out_dir: str | Path,
    *,
    history_dir: str | Path | None = None,
    use_allure: bool = True,
    results: Mapping[str, Any] | None = None,
) -> Path:
    """Write OUT/report.html from OUT/results.json (+ OUT/allure-results); return its path.

    `history_dir` (default OUT/history) feeds the trend plot and Allure's history. With
    `use_allure`, also renders OUT/allure-report/index.html when Allure 3 is available (see
    `allure_report`); the page says which happened. Raises InputError when results.json is
    missing or malformed.
    """
    return render_all(out_dir, history_dir=history_dir, use_allure=use_allure, results=results)[0]


def render_all(
    out_dir: str | Path,
    *,
    history_dir: str | Path | None = None,
    use_allure: bool = True,
    results: Mapping[str, Any] | None = None,
) -> tuple[Path, AllureOutcome | None]:
    """`render_report`, also returning what became of the Allure report (None: not tried)."""
    out = Path(out_dir)
    if results is None:
        results = load_results(out)
    elif "records" not in results:
        results = {**results, "records": [TurnRecord.from_dict(t) for t in results["turns"]]}
    hist_dir = Path(history_dir) if history_dir else out / "history"
    outcome = allure_report(out, history_dir=hist_dir) if use_allure else None
    page = render_html(results, out, history=load_history(hist_dir, limit=50), allure=outcome)
    path = out / "report.html"
    tmp = path.with_name(".report.html.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path, outcome
