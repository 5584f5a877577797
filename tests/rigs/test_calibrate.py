"""Calibration: recovers the sim's configured delay down to 10 dB SNR, refuses poor signals,
caches per profile; `tympan calibrate` and `tympan devices`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.cli import main
from harness.rigs import CalibrationRefused, open_rig
from harness.rigs.calibrate import analyse_path, cache_path, calibrate, load_cached, save_cached
from harness.rigs.profile import load_profile
from tests.rigs.helpers import needs_jackd

FS = 48000


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TYMPAN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def sim_toml(tmp_path, *, out=64, inp=64, ref_noise=-120.0, name="s"):
    path = tmp_path / f"{name}.toml"
    path.write_text(
        '[rig]\nkind = "sim"\n[sim]\n'
        f"output_latency_samples = {out}\ninput_latency_samples = {inp}\n"
        f"ref_noise_dbfs = {ref_noise}\n"
    )
    return path


@pytest.mark.parametrize(("out", "inp", "snr_db"), [(64, 64, 10.0), (300, 77, 10.0), (5, 0, 20.0)])
def test_sim_calibration_recovers_the_configured_delay(tmp_path, out, inp, snr_db):
    # The sweep is -6 dBFS peak, -9 dBFS RMS: noise at -9 - snr_db gives that SNR.
    path = sim_toml(tmp_path, out=out, inp=inp, ref_noise=-9.0 - snr_db)
    with open_rig(path) as rig:
        cal = calibrate(rig, repeats=4)
    assert abs(cal.ref.latency_samples - (out + inp)) <= 1
    assert cal.ref.snr_db == pytest.approx(snr_db, abs=1.0)
    assert cal.ref.confidence >= 0.5
    assert "noisy" in cal.ref.advice


def test_buried_signal_is_refused_with_the_reason(tmp_path):
    path = sim_toml(tmp_path, ref_noise=-6.0)
    with open_rig(path) as rig, pytest.raises(CalibrationRefused, match=r"buried in noise: SNR"):
        calibrate(rig, repeats=3)


def test_silent_ref_is_refused():
    from harness.rigs.calibrate import measurement_signal

    _, sweep, starts = measurement_signal(FS, 3)
    reason = analyse_path(np.zeros(starts[-1] + FS), sweep, starts, FS, 4800)
    assert isinstance(reason, str) and "no signal" in reason


def test_clipping_is_advised(tmp_path):
    path = sim_toml(tmp_path)
    with open_rig(path) as rig:
        cal = calibrate(rig, repeats=2, level_dbfs=0.0)
    assert cal.ref.advice.startswith("clipping")


def test_cache_round_trip_and_invalidation(tmp_path, cache_dir):
    path = sim_toml(tmp_path)
    profile = load_profile(path)
    with open_rig(profile) as rig:
        cal = calibrate(rig, repeats=2)
    saved = save_cached(profile, cal)
    assert saved == cache_path(profile) and saved.parent == cache_dir
    assert load_cached(profile)["latency_samples"] == 128
    assert open_rig(path).latency().calibrated_mouth_to_ref == 128
    path.write_text(
        path.read_text().replace("input_latency_samples = 64", "input_latency_samples = 1")
    )
    assert load_cached(load_profile(path)) is None  # the profile changed: stale


def test_cli_calibrate_json(tmp_path, capsys, cache_dir):
    path = sim_toml(tmp_path)
    assert main(["calibrate", "--rig", str(path), "--json", "--repeats", "3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for key in ("latency_samples", "latency_ms", "latency_spread_samples", "snr_db"):
        assert key in doc
    assert doc["latency_samples"] == 128 and doc["drift_ppm"] == 0.0
    assert doc["confidence"] >= 0.9
    assert doc["cache"].startswith(str(cache_dir))


def test_cli_calibrate_refuses_with_exit_1(tmp_path, capsys):
    path = sim_toml(tmp_path, ref_noise=-3.0)
    assert main(["calibrate", "--rig", str(path), "--repeats", "2"]) == 1
    assert "calibration refused" in capsys.readouterr().err


def test_cli_calibrate_bad_profile_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[rig]\nkind = "sim"\nblock_frames = 3\n')
    assert main(["calibrate", "--rig", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "rig.block_frames = 3" in err and "Traceback" not in err


@needs_jackd
def test_cli_calibrate_loopback_text(capsys):
    assert main(["calibrate", "--rig", "loopback", "--repeats", "3"]) == 0
    out = capsys.readouterr().out
    assert "mouth -> ref  1024 samples = 21.333 ms  (spread 0, expected 1024)" in out


def test_cli_devices(capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "audio devices (by host API):" in out and "serial ports:" in out
    assert main(["devices", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "serial" in doc and "jack_servers" in doc
    if doc["serial"] is None:
        assert "pyserial" in doc["serial_note"]


@pytest.mark.parametrize("level", ["nan", "inf", "-inf", "3", "-200"])
def test_cli_calibrate_bad_level_exit_2_and_nothing_cached(tmp_path, capsys, cache_dir, level):
    """A NaN level once made a silent sweep that 'calibrated' to 0 samples at confidence
    NaN, printed "ok" and was cached for every later run on the rig."""
    path = sim_toml(tmp_path)
    assert main(["calibrate", "--rig", str(path), f"--level-dbfs={level}", "--repeats", "2"]) == 2
    err = capsys.readouterr().err
    assert "--level-dbfs" in err and "dBFS" in err and "Traceback" not in err
    assert not cache_path(load_profile(path)).exists()


def test_a_calibration_that_must_not_be_used_is_neither_saved_nor_loaded(tmp_path, cache_dir):
    import dataclasses

    from harness.rigs.calibrate import CachedCalibrationError

    path = sim_toml(tmp_path)
    profile = load_profile(path)
    with open_rig(profile) as rig:
        cal = calibrate(rig, repeats=2)
    bad = dataclasses.replace(cal, ref=dataclasses.replace(cal.ref, confidence=float("nan")))
    with pytest.raises(CalibrationRefused, match="confidence nan is not a finite number"):
        save_cached(profile, bad)
    assert not cache_path(profile).exists()
    # A cache file written by an older tympan (or edited) with such figures is refused by
    # name, with what to do, instead of being taken as the rig's latency.
    saved = save_cached(profile, cal)
    doc = json.loads(saved.read_text())
    saved.write_text(json.dumps(doc | {"latency_samples": 0, "confidence": None}))
    with pytest.raises(CachedCalibrationError) as err:
        open_rig(path)
    assert str(saved) in str(err.value) and "tympan calibrate --rig" in str(err.value)
    assert main(["run", "--rig", str(path), "--dut", "scripted", "--out", str(tmp_path / "o")]) == 2
