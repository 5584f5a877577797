"""`tympan analyze` end to end: WAV files in, one JSON object (or a summary) out.

Captures are synthetic turns (harness.groundtruth.make_turn) written with soundfile, run
through `python -m harness.cli analyze` in a subprocess. Bad input must end with exit
status 2 and one line on stderr, "tympan: error: ...", naming the file, never a traceback.

Every command runs once, all of them concurrently, in a module fixture (each process pays
~1 s of imports); the tests then read the results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.corpus import Corpus
from harness.groundtruth import Condition, corpus_sources, make_turn
from harness.groundtruth_call import make_conversation

REPO_ROOT = Path(__file__).resolve().parents[1]
BARGE_IN_KEYS = {"barge_in_onset_s", "stop_latency_ms", "residual_ms"}


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        lines = self.stdout.strip().splitlines()
        assert len(lines) == 1, self.stdout
        return json.loads(lines[0])


def _write(path: Path, x: np.ndarray, rate: int, subtype: str = "FLOAT") -> str:
    sf.write(str(path), x, rate, subtype=subtype, format="WAV")
    return str(path)


def _speech(sources, name: str):
    return next(s for s in sources.questions if s.name == name)


@pytest.fixture(scope="module")
def files(tmp_path_factory, sources) -> dict:
    """Every input file the commands below need, and the truths to check against."""
    d = tmp_path_factory.mktemp("analyze")
    f: dict = {"dir": d}

    rng = np.random.default_rng(1)
    user, reply, _, _ = sources.pick_turn(rng)
    a = make_turn(Condition("clean"), user, reply, rng)
    f["float"] = _write(d / "capture_float.wav", a.capture, 48000, "FLOAT")
    f["stim"] = _write(d / "stimulus.wav", a.stimulus, 48000)
    f["reply"] = _write(d / "reply.wav", a.reply, 48000)
    f["speech_end"] = a.speech_end_s
    f["truth"] = a.truth
    f["mono"] = _write(d / "mono.wav", a.capture[:, 0], 48000)
    f["zeros"] = _write(d / "zeros.wav", np.zeros((48000, 2)), 48000, "PCM_16")
    nan = a.capture.astype(np.float32).copy()
    nan[1234, 1] = np.nan
    f["nan"] = _write(d / "nan.wav", nan, 48000, "FLOAT")
    text = d / "x.wav"
    text.write_text("this is not audio\n")
    f["text"] = str(text)

    rng = np.random.default_rng(2)
    user, reply, _, _ = sources.pick_turn(rng)
    b = make_turn(Condition("pcm16", pcm16=True), user, reply, rng)
    f["pcm16"] = _write(d / "capture_pcm16.wav", b.capture, 48000, "PCM_16")
    f["pcm16_stim"] = _write(d / "stimulus_b.wav", b.stimulus, 48000)
    f["pcm16_speech_end"] = b.speech_end_s
    f["pcm16_truth"] = b.truth

    rng = np.random.default_rng(3)
    user, reply, _, answer = sources.pick_turn(rng)
    clip = next(c for c in sources.clips if c.name == "bi02_wait_actually")
    c = make_turn(
        Condition("barge", sample_rate_hz=16000, barge_in=True),
        user,
        reply,
        rng,
        barge_clip=clip,
        answer=answer,
    )
    f["barge"] = _write(d / "capture_barge.wav", c.capture, 16000)
    f["barge_stim"] = _write(d / "stimulus_c.wav", c.stimulus, 16000)
    f["barge_clip"] = _write(d / "clip.wav", c.barge_in_clip, 16000)
    f["barge_speech_end"] = c.speech_end_s

    # A corpus file as the stimulus, no --speech-end: the corpus label is used.
    corpus = Corpus.load()
    rng = np.random.default_rng(4)
    user = _speech(sources, "sq01_time")
    e = make_turn(Condition("corpus"), user, _speech(sources, "sq10_paris"), rng)
    f["corpus_capture"] = _write(d / "capture_corpus.wav", e.capture, 48000)
    f["corpus_stim"] = str(corpus.by_id("sq01_time").path)
    f["corpus_truth"] = e.truth

    # A 16 kHz stimulus (not a corpus file) for a 48 kHz capture.
    user = _speech(sources, "sq03_timer")
    assert user.sample_rate_hz == 16000
    g = make_turn(Condition("rates"), user, _speech(sources, "sq13_everest"), rng)
    f["rates_capture"] = _write(d / "capture_48k.wav", g.capture, 48000)
    f["rates_stim"] = _write(d / "stimulus_16k.wav", user.samples, 16000)
    f["rates_speech_end"] = user.speech_end_s
    f["rates_truth"] = g.truth

    # A five-turn call at 16 kHz with a greeting, its stimuli and a manifest of them.
    src16 = corpus_sources(16000)
    call = make_conversation(
        Condition("call", sample_rate_hz=16000, context="greeting"), src16, np.random.default_rng(5)
    )
    f["call"] = _write(d / "call.wav", call.capture, 16000, "PCM_16")
    f["call_truths"] = call.truths
    f["call_stims"] = []
    turns = []
    for i, (stim, end_s) in enumerate(zip(call.stimuli, call.speech_ends_s, strict=True)):
        name = f"turn{i + 1}.wav"
        f["call_stims"].append(_write(d / name, stim, 16000))
        turns.append({"stimulus": name, "speech_end_s": end_s, "name": f"q{i + 1}"})
    (d / "turns.json").write_text(json.dumps({"turns": turns}))
    f["manifest"] = str(d / "turns.json")
    (d / "bad_key.json").write_text(json.dumps({"turns": [{"stimulus": "turn1.wav", "x": 1}]}))
    f["bad_key"] = str(d / "bad_key.json")
    (d / "missing_stim.json").write_text(json.dumps({"turns": [{"stimulus": "gone.wav"}]}))
    f["missing_stim"] = str(d / "missing_stim.json")
    (d / "not_json.json").write_text("{turns: nope")
    f["not_json"] = str(d / "not_json.json")
    (d / "bool_end.json").write_text(
        json.dumps({"turns": [{"stimulus": "turn1.wav", "speech_end_s": True}]})
    )
    f["bool_end"] = str(d / "bool_end.json")
    (d / "number_stim.json").write_text(json.dumps({"turns": [{"stimulus": 5}]}))
    f["number_stim"] = str(d / "number_stim.json")
    silent_ref = call.capture.copy()
    silent_ref[:, 0] = 0.0
    f["silent_ref"] = _write(d / "silent_ref.wav", silent_ref, 16000)
    noise_ref = call.capture.copy()
    noise_ref[:, 0] = 1e-3 * np.random.default_rng(3).standard_normal(len(noise_ref))
    f["noise_ref"] = _write(d / "noise_ref.wav", noise_ref, 16000)
    # a recording cut short: less than the stimulus itself (it used to read "stimulus not
    # found", which sends one looking in the wrong place)
    f["short"] = _write(d / "short.wav", a.capture[: len(a.stimulus) // 2], 48000, "FLOAT")
    sf.write(d / "lossy.ogg", a.capture, 48000, format="OGG", subtype="VORBIS")
    f["lossy"] = str(d / "lossy.ogg")
    return f


def _commands(f: dict) -> dict[str, list[str]]:
    d = f["dir"]
    good = [f["float"], "--stimulus", f["stim"], "--speech-end", str(f["speech_end"])]
    return {
        "json": [*good, "--json"],
        "summary": good,
        "reply_reference": [*good, "--reply-reference", f["reply"], "--json"],
        "pcm16": [
            f["pcm16"],
            "--stimulus",
            f["pcm16_stim"],
            "--speech-end",
            str(f["pcm16_speech_end"]),
            "--json",
        ],
        "barge_in": [
            f["barge"],
            "--stimulus",
            f["barge_stim"],
            "--speech-end",
            str(f["barge_speech_end"]),
            "--barge-in",
            f["barge_clip"],
            "--json",
        ],
        "corpus_label": [f["corpus_capture"], "--stimulus", f["corpus_stim"], "--json"],
        "resampled": [
            f["rates_capture"],
            "--stimulus",
            f["rates_stim"],
            "--speech-end",
            str(f["rates_speech_end"]),
            "--json",
        ],
        "stimuli": [
            f["call"],
            *[x for stim in f["call_stims"] for x in ("--stimulus", stim)],
            "--json",
        ],
        "manifest": [f["call"], "--conversation", f["manifest"], "--json"],
        "caller": [f["call"], "--json"],
        # Bad input, each with the file the message must name.
        "manifest_unknown_key": [f["call"], "--conversation", f["bad_key"]],
        "manifest_missing_stimulus": [f["call"], "--conversation", f["missing_stim"]],
        "manifest_not_json": [f["call"], "--conversation", f["not_json"]],
        "manifest_bool_speech_end": [f["call"], "--conversation", f["bool_end"]],
        "manifest_number_stimulus": [f["call"], "--conversation", f["number_stim"]],
        "silent_ref": [f["silent_ref"], "--stimulus", f["call_stims"][0]],
        "caller_without_speech": [f["noise_ref"]],
        "capture_shorter_than_stimulus": [f["short"], "--stimulus", f["stim"]],
        "lossy": [f["lossy"], *good[1:], "--json"],
        "speech_end_with_two": [
            f["call"],
            "--stimulus",
            f["call_stims"][0],
            "--stimulus",
            f["call_stims"][1],
            "--speech-end",
            "1.0",
        ],
        "missing_capture": [str(d / "nope.wav"), "--stimulus", f["stim"]],
        "missing_stimulus": [f["float"], "--stimulus", str(d / "nostim.wav")],
        "one_channel": [f["mono"], "--stimulus", f["stim"]],
        "ear_channel_5": [f["float"], "--stimulus", f["stim"], "--ear-channel", "5"],
        "all_zero": [f["zeros"], "--stimulus", f["stim"]],
        "nan": [f["nan"], "--stimulus", f["stim"]],
        "speech_end_past_end": [f["float"], "--stimulus", f["stim"], "--speech-end", "99"],
        "not_audio": [f["text"], "--stimulus", f["stim"]],
    }


BAD_INPUT = {
    # case -> key in `files` of the file the message must name
    "missing_capture": None,  # the path itself, below
    "missing_stimulus": None,
    "one_channel": "mono",
    "ear_channel_5": "float",
    "all_zero": "zeros",
    "nan": "nan",
    "speech_end_past_end": "stim",
    "not_audio": "text",
    "manifest_unknown_key": "bad_key",
    "manifest_missing_stimulus": None,
    "manifest_not_json": "not_json",
    "speech_end_with_two": None,
    "manifest_bool_speech_end": "bool_end",
    "manifest_number_stimulus": "number_stim",
    "silent_ref": "silent_ref",
    "caller_without_speech": "noise_ref",
    "capture_shorter_than_stimulus": "short",
}


@pytest.fixture(scope="module")
def runs(files, tmp_path_factory) -> dict[str, Run]:
    """Run every command once (three at a time) with HOME in a temporary folder."""
    home = tmp_path_factory.mktemp("home")
    env = {**os.environ, "HOME": str(home)}

    def run(argv: list[str]) -> Run:
        cmd = [sys.executable, "-m", "harness.cli", "analyze", *argv]
        p = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
        return Run(tuple(argv), p.returncode, p.stdout, p.stderr)

    commands = _commands(files)
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = dict(zip(commands, pool.map(run, commands.values()), strict=True))
    return done


def _ok(r: Run) -> None:
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


# ---- measurements ----------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "truth_key"), [("json", "truth"), ("pcm16", "pcm16_truth")])
def test_json_ttfa_within_2ms(runs, files, case, truth_key):
    """--json prints one JSON object whose ttfa_ms is within 2 ms of the truth (float32 and
    16-bit PCM captures), with every contract key and no barge-in keys."""
    r = runs[case]
    _ok(r)
    d = r.json()
    assert d["discard"] is None
    assert abs(d["ttfa_ms"] - files[truth_key].ttfa_ms) < 2.0, d
    assert {"ttfa_ms", "confidence", "speech_end_s", "reply_onset_s", "reply_end_s"} <= set(d)
    assert {"segments", "gaps_ms", "discard"} <= set(d)
    assert not BARGE_IN_KEYS & set(d)
    assert d["speech_end_s"] == pytest.approx(files[truth_key].speech_end_s, abs=1e-4)


def test_reply_reference_within_0_1ms(runs, files):
    """--reply-reference: ttfa_ms within 0.1 ms of the truth."""
    r = runs["reply_reference"]
    _ok(r)
    d = r.json()
    assert d["discard"] is None
    assert abs(d["ttfa_ms"] - files["truth"].ttfa_ms) < 0.1, d


def test_barge_in_adds_its_keys(runs):
    """--barge-in adds barge_in_onset_s, stop_latency_ms and residual_ms (numbers here)."""
    r = runs["barge_in"]
    _ok(r)
    d = r.json()
    assert set(d) >= BARGE_IN_KEYS
    assert all(isinstance(d[k], float) for k in BARGE_IN_KEYS), d


def test_human_summary_without_json(runs):
    """Without --json: a human summary that says TTFA, not JSON."""
    r = runs["summary"]
    _ok(r)
    assert "TTFA" in r.stdout
    assert not r.stdout.lstrip().startswith("{")


def test_corpus_stimulus_uses_the_corpus_label(runs, files):
    """A corpus file as --stimulus without --speech-end: the corpus label is used (noted)."""
    r = runs["corpus_label"]
    _ok(r)
    assert "corpus" in r.stderr, r.stderr
    d = r.json()
    assert abs(d["ttfa_ms"] - files["corpus_truth"].ttfa_ms) < 2.0, d


def test_stimulus_at_another_rate_is_resampled(runs, files):
    """A 16 kHz stimulus for a 48 kHz capture works; stderr says it was resampled."""
    r = runs["resampled"]
    _ok(r)
    assert "resampled" in r.stderr, r.stderr
    d = r.json()
    assert abs(d["ttfa_ms"] - files["rates_truth"].ttfa_ms) < 2.0, d


@pytest.mark.parametrize("case", ["stimuli", "manifest"])
def test_every_turn_of_a_call_one_json_line_each(runs, files, case):
    """Several --stimulus files (or a manifest): one JSON object per turn, in order, times on
    the whole call's timeline. With the labels (the manifest's speech_end_s) each TTFA is
    within 1 ms of the truth after the agent's greeting; files without labels have their
    speech end detected (noted), which moves it by the soft last sound."""
    r = runs[case]
    _ok(r)
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["turn"] for row in rows] == [1, 2, 3, 4, 5]
    labelled = case == "manifest"
    if labelled:
        assert [row["stimulus"] for row in rows] == ["q1", "q2", "q3", "q4", "q5"]
    else:
        assert "speech end detected" in r.stderr, r.stderr
    for row, truth in zip(rows, files["call_truths"], strict=True):
        assert row["discard"] is None, row
        assert abs(row["ttfa_ms"] - truth.ttfa_ms) < (1.0 if labelled else 30.0), row
        if labelled:
            assert row["speech_end_s"] == pytest.approx(truth.speech_end_s, abs=1e-3)
    assert rows[0]["context_segments"], rows[0]  # the greeting


def test_a_call_without_stimulus_files_uses_the_ref_as_the_caller(runs, files):
    r = runs["caller"]
    _ok(r)
    assert "the ref channel is the caller" in r.stderr, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 5
    for row, truth in zip(rows, files["call_truths"], strict=True):
        assert abs(row["speech_end_s"] - truth.speech_end_s) < 0.03, row
        assert abs(row["ttfa_ms"] - truth.ttfa_ms) < 30.0, row


# ---- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(runs, files, case):
    """Bad input: exit status 2, one stderr line 'tympan: error: ...' naming the file."""
    r = runs[case]
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("tympan: error:"), r.stderr
    key = BAD_INPUT[case]
    named = {
        "missing_capture": str(files["dir"] / "nope.wav"),
        "missing_stimulus": str(files["dir"] / "nostim.wav"),
        "manifest_missing_stimulus": str(files["dir"] / "gone.wav"),
        "speech_end_with_two": "--speech-end",
    }.get(case) or files[key]
    assert named in lines[0], (named, lines[0])
    assert r.stdout == ""


def test_a_capture_shorter_than_its_stimulus_says_so(runs):
    r = runs["capture_shorter_than_stimulus"]
    assert r.returncode == 2 and "shorter than the stimulus" in r.stderr, r.stderr
    assert "not found" not in r.stderr


def test_a_lossy_capture_is_measured_with_a_note_that_it_is_lossy(runs, files):
    """An Ogg Vorbis capture of a clean turn: measured, but the codec moves the onset (19.9
    ms early on this turn, seen), so the note says the format is lossy and what to record."""
    r = runs["lossy"]
    _ok(r)
    assert "the capture is lossy (OGG/VORBIS)" in r.stderr and "WAV or FLAC" in r.stderr
