"""Allure evidence for a turn test (allure-pytest), and the results folder's side files.

Inside a test run with ``--alluredir``, `attach_turn` adds the turn's timeline PNG, its
capture WAV (attachment type "audio/wav", extension wav: a player in the report), its
metrics JSON and its checks, plus labels (feature = contract, story = utterance category,
severity) and parameters (utterance, rig, DUT, barge-in offset). Outside such a run
allure's calls do nothing, so the same code runs in a plain pytest session.

`write_environment` and `write_categories` write ``environment.properties`` and
``categories.json`` into the allure-results folder. Categories match the failure messages'
prefixes: a failed check's message starts with "[budget]", "[chunking]",
"[cancellation]", "[turn-taking]" or "[infrastructure]" (the last one with "xrun",
"device lost" or anything else: "rig error").
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import allure

from harness.report.results import TurnRecord

WAV = ("audio/wav", "wav")  # allure's AttachmentType enum has no audio; (mime, extension)

# Highest severity wins when a turn's checks span several contracts.
_SEVERITY = {
    "cancellation": "critical",
    "budget": "critical",
    "turn-taking": "normal",
    "chunking": "normal",
    "infrastructure": "minor",
}
_SEVERITY_ORDER = ("blocker", "critical", "normal", "minor", "trivial")


def _any(pattern: str) -> str:
    # Allure 2 (Java) matches the whole message, Allure 3 (JS) searches it, and JS has no
    # (?s): [\s\S]* on both sides works in both.
    return r"[\s\S]*" + pattern + r"[\s\S]*"


CATEGORIES: list[dict] = [
    {
        "name": "Budget exceeded",
        "messageRegex": _any(r"\[budget\]"),
        "matchedStatuses": ["failed"],
    },
    {
        "name": "Cancellation (barge-in)",
        "messageRegex": _any(r"\[cancellation\]"),
        "matchedStatuses": ["failed"],
    },
    {"name": "Chunking", "messageRegex": _any(r"\[chunking\]"), "matchedStatuses": ["failed"]},
    {
        "name": "Turn-taking",
        "messageRegex": _any(r"\[turn-taking\]"),
        "matchedStatuses": ["failed"],
    },
    {
        "name": "Infrastructure: xrun",
        "messageRegex": _any(r"\[infrastructure\][\s\S]*xrun"),
        "matchedStatuses": ["failed", "broken"],
    },
    {
        "name": "Infrastructure: device lost",
        "messageRegex": _any(r"\[infrastructure\][\s\S]*device lost"),
        "matchedStatuses": ["failed", "broken"],
    },
    {
        "name": "Infrastructure: rig error",
        "messageRegex": _any(r"\[infrastructure\]"),
        "matchedStatuses": ["failed", "broken"],
    },
]
"""Allure categories, first match wins (Allure 2 categories.json format; Allure 3 reads the
same rules from its config)."""


def write_categories(allure_dir: str | Path) -> Path:
    """Write `CATEGORIES` as ``categories.json`` into the allure-results folder."""
    d = Path(allure_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / "categories.json"
    path.write_text(json.dumps(CATEGORIES, indent=1) + "\n", encoding="utf-8")
    return path


def _prop_escape(text: str, *, key: bool) -> str:
    """Java .properties escaping: backslash, line breaks; in keys also = : and spaces."""
    out = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    if key:
        for ch in "=: #!":
            out = out.replace(ch, "\\" + ch)
    return out


def write_environment(allure_dir: str | Path, props: Mapping[str, object]) -> Path:
    """Write ``environment.properties`` (rig, calibration, DUT, firmware, engines, versions).

    Values are str()-ed; None values are left out. Keys and values are escaped so a device
    string with "=" or a newline cannot add or break a line.
    """
    d = Path(allure_dir)
    d.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{_prop_escape(str(k), key=True)}={_prop_escape(str(v), key=False)}"
        for k, v in props.items()
        if v is not None
    ]
    path = d / "environment.properties"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """An Allure step ("play", "capture", "analyse", "assert"); a plain block outside Allure."""
    with allure.step(title):
        yield


def label_turn(record: TurnRecord) -> None:
    """Labels and parameters of the running test from the record (call early in a test)."""
    contracts = list(dict.fromkeys(c.contract for c in record.checks)) or ["budget"]
    for c in contracts:
        allure.dynamic.feature(c)
    if record.category:
        allure.dynamic.story(record.category)
    failing = [c.contract for c in record.failed_checks] or contracts
    severities = [_SEVERITY.get(c, "normal") for c in failing]
    allure.dynamic.severity(min(severities, key=_SEVERITY_ORDER.index))
    allure.dynamic.parameter("utterance", record.utterance)
    allure.dynamic.parameter("rig", record.rig)
    allure.dynamic.parameter("DUT", record.dut)
    allure.dynamic.parameter(
        "barge-in offset",
        "none" if record.barge_in_offset_ms is None else f"{record.barge_in_offset_ms:g} ms",
    )
    if record.repeat:
        allure.dynamic.parameter("repeat", record.repeat)


def _inside(out_dir: Path, rel: str | None) -> Path | None:
    """OUT/rel when it exists and stays inside OUT, else None."""
    if not rel:
        return None
    p = (out_dir / rel).resolve()
    if not p.is_file() or not p.is_relative_to(out_dir.resolve()):
        return None
    return p


def attach_turn(record: TurnRecord, out_dir: str | Path) -> None:
    """Attach the turn's evidence to the running Allure test and label it.

    Timeline PNG: `record.evidence["timeline_png"]` when that file exists, else drawn now
    from the capture (and saved next to it as timeline.png, and recorded in the evidence).
    Capture WAV as audio/wav; metrics (+ stages, checks) as JSON. Paths are relative to
    `out_dir`.
    """
    out = Path(out_dir)
    label_turn(record)
    wav = _inside(out, record.evidence.get("capture_wav"))
    png = _inside(out, record.evidence.get("timeline_png"))
    if png is None and wav is not None:
        from harness.report.plots import timeline_png

        png = wav.with_name("timeline.png")
        timeline_png(png, wav, None, record)
        record.evidence["timeline_png"] = str(png.relative_to(out.resolve()))
    if png is not None:
        allure.attach.file(str(png), name="timeline", attachment_type=allure.attachment_type.PNG)
    if wav is not None:
        allure.attach.file(str(wav), name="capture (ref, ear)", attachment_type=WAV[0],
                           extension=WAV[1])  # fmt: skip
    d = record.to_dict()  # NaN-free and rounded
    keys = ("turn", "verdict", "discard", "metrics", "stages_ms", "checks", "evidence")
    body = {k: d[k] for k in keys}
    allure.attach(
        json.dumps(body, indent=1, allow_nan=False),
        name="metrics",
        attachment_type=allure.attachment_type.JSON,
    )
    events = _inside(out, record.evidence.get("events_jsonl"))
    if events is not None:
        allure.attach.file(
            str(events), name="telemetry events", attachment_type=allure.attachment_type.TEXT
        )
