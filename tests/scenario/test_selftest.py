"""`tympan selftest`: known turns with hidden random delays pass on the sim and on the JACK
loopback (a real jackd started and stopped by the rig); a measurement off by 5 ms and a
calibration off by 5 ms fail it; bad input exits 2 with one line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from harness.cli import main
from harness.rigs.calibrate import cache_path
from harness.rigs.profile import load_profile
from harness.rigs.simduts import load_reply
from harness.signal.resample import first_sound
from tests.scenario.conftest import needs_jackd


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """No calibration of the machine's own cache leaks into these runs."""
    monkeypatch.setenv("TYMPAN_CACHE_DIR", str(tmp_path / "cache"))


def selftest(tmp_path, *args):
    out = tmp_path / "out"
    code = main(["selftest", *args, "--out", str(out)])
    doc = (
        json.loads((out / "selftest.json").read_text())
        if (out / "selftest.json").exists()
        else None
    )
    return code, doc


def test_sim_passes_and_the_truth_is_not_the_drawn_delay(tmp_path, capsys):
    code, doc = selftest(tmp_path, "--rig", "sim", "--turns", "3", "--seed", "7")
    text = capsys.readouterr().out
    assert code == 0, text
    assert doc["ok"] and doc["complete"] and doc["kind"] == "sim" and doc["tolerance_ms"] == 15.0
    assert doc["summary"]["measured"] == 3 and doc["summary"]["max_abs_error_ms"] <= 15.0
    assert doc["median_tolerance_ms"] == 2.0 and not doc["summary"]["median_judged"]
    turns = doc["turns"]
    assert len({t["delay_ms"] for t in turns}) == 3  # drawn per turn
    for t in turns:
        assert t["error_ms"] == pytest.approx(t["measured_ttfa_ms"] - t["true_ttfa_ms"], abs=1e-3)
        # The truth adds where the DUT heard the end, the reply's first sound and the room
        # to the drawn delay: a measurement that echoed the delay would fail.
        assert abs(t["true_ttfa_ms"] - t["delay_ms"]) > 1.0
        assert abs(t["ref_lag_samples"] - 128) < 0.01  # DAC + ADC, as the rig says
    assert text.count(" ok\n") == 3 and "PASS on rig sim (exit 0)" in text
    # The same seed draws the same turns (the first of them here).
    code2, doc2 = selftest(tmp_path / "again", "--rig", "sim", "--turns", "1", "--seed", "7")
    assert code2 == 0 and doc2["turns"][0]["true_ttfa_ms"] == turns[0]["true_ttfa_ms"]


def test_a_measurement_5_ms_late_fails(tmp_path, capsys, monkeypatch):
    """The self-test can fail: an analysis whose onset is 5 ms late. On the sim each turn
    may be 15 ms off (the tail its noise gives the blind onset), but the median may not be
    more than 2 ms off, and it is 5 ms off here."""
    import harness.scenario.turn as turn_mod

    real = turn_mod.analyze_capture

    def late(*args, **kwargs):
        m = real(*args, **kwargs)
        return dataclasses.replace(
            m, ttfa_ms=m.ttfa_ms + 5.0, reply_onset_s=m.reply_onset_s + 0.005
        )

    monkeypatch.setattr(turn_mod, "analyze_capture", late)
    code, doc = selftest(tmp_path, "--rig", "sim", "--turns", "5", "--seed", "3")
    text = capsys.readouterr().out
    assert code == 1 and not doc["ok"]
    assert 4.5 < doc["summary"]["median_error_ms"] < 5.5  # 5 ms + the honest error
    assert doc["summary"]["problems"][0].startswith("median error +5.")
    assert "FAIL: median error +5." in text and "FAIL on rig sim (exit 1)" in text
    # With a tolerance of 1 ms a turn, every turn fails on its own too.
    code, doc = selftest(
        tmp_path / "tight", "--rig", "sim", "--turns", "2", "--seed", "3", "--tolerance-ms", "1"
    )
    assert code == 1 and all(t["problem"].startswith("|error| ") for t in doc["turns"])


def test_a_calibration_5_ms_off_fails(tmp_path, capsys):
    """A cached calibration that says mouth -> ref is 240 samples (5 ms) longer than it is:
    the TTFA is still right (ref and ear share the clock), but the rig's own figure is wrong,
    and a nightly must not trust that rig's description of itself."""
    profile = load_profile("sim")
    path = cache_path(profile)
    path.parent.mkdir(parents=True)
    doc = {"latency_samples": 128 + 240, "confidence": 1.0, "ear": None}
    path.write_text(json.dumps(doc | {"profile_sha256": profile.sha256}))
    code, doc = selftest(tmp_path, "--rig", "sim", "--turns", "2", "--seed", "3")
    text = capsys.readouterr().out
    assert code == 1 and doc["mouth_to_ref_samples"] == 368
    assert doc["mouth_to_ref_from"] == "calibrated"
    assert all("the rig's calibrated figure is 368" in t["problem"] for t in doc["turns"])
    assert "recalibrate" in text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--turns", "0"], "--turns 0: expected a number of turns 1..1000"),
        (["--tolerance-ms", "nan"], "--tolerance-ms nan: expected a finite number of ms"),
        (["--rig", "nosuch"], "no such rig profile"),
        (["--rig", "lab-example"], "no built-in DUT for a 'soundcard' rig yet"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, says):
    code, doc = selftest(tmp_path, *args)
    err = capsys.readouterr().err
    assert code == 2 and doc is None
    assert err.startswith("tympan: error: ") and says in err and err.count("\n") == 1


@needs_jackd
def test_loopback_passes_and_the_truth_is_where_the_reply_is(tmp_path, capsys, corpus):
    """A real jackd started and stopped by the rig (the autouse guard checks it is gone),
    the self-test's JACK delay client in this process. Independently of the analysis, the
    truth puts the reply's first sample exactly where the capture's ear has it: stimulus
    start + one period (the ref) + label end + true TTFA - the reply's first sound."""
    code, doc = selftest(tmp_path, "--rig", "loopback", "--turns", "2", "--seed", "11")
    text = capsys.readouterr().out
    assert code == 0, text
    assert doc["kind"] == "loopback" and doc["summary"]["measured"] == 2
    for t in doc["turns"]:
        assert abs(t["error_ms"]) <= 1.0 and abs(t["ref_lag_samples"] - 1024) < 0.01
        x, fs = sf.read(f"{t['evidence']}/capture.wav", dtype="float32")
        meta = json.loads(Path(t["evidence"], "metrics.json").read_text())
        reply = load_reply(f"corpus:{t['reply']}", fs)
        label = corpus.by_id(t["stimulus"]).speech_end_s * fs
        row = meta["stimulus_at_sample"] + 1024 + label + t["true_ttfa_ms"] * fs / 1000
        row = int(round(row - first_sound(reply)))
        np.testing.assert_array_equal(x[row : row + 4800, 1], reply[:4800])
        assert not np.any(x[row - 1024 : row, 1])  # nothing before it


def _drive(logic, x, block=1024, skip_at=None):
    """Feed `x` block by block from frame 5000 (skipping one block's frames at block index
    `skip_at`, as a JACK cycle the client missed); returns the output stream."""
    out = np.zeros(len(x), dtype=np.float32)
    frame, i = 5000, 0
    while i + block <= len(x):
        if i // block == skip_at:
            frame += block
            i += block
            continue
        logic.process(frame, x[i : i + block], out[i : i + block])
        frame += block
        i += block
    return out


def test_the_delay_logic_replies_on_the_armed_sample_and_notes_a_missed_cycle():
    """The loopback DUT's logic without JACK: speech ends at the last sample above the
    threshold, the reply starts exactly the armed delay later on the frame clock, and a
    block that does not follow the last one spoils the record where it matters."""
    from harness.selftest.duts import ReplyAfterSpeech

    fs = 48000
    x = np.zeros(3 * fs, dtype=np.float32)
    x[12345] = 1e-6  # the first non-zero sample (below the threshold)
    x[20000:40000] = 0.1 * np.sin(np.arange(20000) / 7.0)
    x[39999] = 0.1  # the last loud sample
    reply = np.linspace(0.5, 0.1, 4800, dtype=np.float32)
    logic = ReplyAfterSpeech(fs)
    logic.arm(30000, reply)
    out = _drive(logic, x)
    t = logic.last
    assert (t.first_in, t.speech_end, t.reply_at, t.started) == (
        5000 + 12345,
        5000 + 40000,
        5000 + 70000,
        5000 + 70000,
    )
    assert t.missed == 0 and t.done
    np.testing.assert_array_equal(out[70000:74800], reply)
    assert not np.any(out[:70000]) and not np.any(out[74800:])
    # A cycle missed before the first sound (it may have held it) or during the reply
    # spoils the record; one missed in between moves nothing the truth uses.
    for skip_at, missed in ((5, 1), (30, 0), (69, 1)):
        logic.arm(30000, reply)
        out = _drive(logic, x, skip_at=skip_at)
        assert logic.last.missed == missed, skip_at
    logic.arm(30000, reply)
    out = _drive(logic, x, skip_at=30)
    assert logic.last.reply_at == logic.last.started
    np.testing.assert_array_equal(out[70000:74800], reply)
