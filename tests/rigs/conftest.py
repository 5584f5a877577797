"""Fixtures for the rig tests: JACK servers started and stopped by PID, an orphan check,
the delay DUT, and the three rigs under one parametrised fixture."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import pytest

from harness.rigs.jackd import JackServer
from tests.jack_guard import (  # noqa: F401 (autouse fixtures, shared)
    no_orphan_jackd,
    no_orphan_jackd_at_end,
)
from tests.rigs.helpers import DUT_DELAY, load_delay_dut, wire_soundcard


@pytest.fixture
def jack_server():
    """A fresh jackd (dummy driver, 48 kHz, period 1024), stopped by PID afterwards."""
    if shutil.which("jackd") is None:
        pytest.skip("jackd missing: apt-get install jackd2")
    with JackServer(sample_rate_hz=48000, period=1024) as server:
        yield server


@dataclass
class RigUnderTest:
    """A rig with a pass-through DUT delaying by DUT_DELAY, and what its paths should be."""

    kind: str
    rig: object
    mouth_to_ref: float
    mouth_to_ear: float


def _sim_rig():
    from harness.rigs import open_rig
    from harness.rigs.profile import validate

    data = {
        "rig": {"kind": "sim"},
        "sim": {
            "dut": "passthrough",
            "ref_noise_dbfs": -120.0,
            "ear_noise_dbfs": -120.0,
            "room": {"rt60_s": 0.0},
            "paths": {"mouth_to_ear_db": -120.0},
            "scripted": {"passthrough_delay_samples": DUT_DELAY},
        },
    }
    return open_rig(validate(data, "<sim-passthrough>"), use_cache=False)


@pytest.fixture(params=["sim", "loopback", "soundcard"])
def any_rig(request, tmp_path):
    """Each backend, opened, with a pass-through DUT; the shared suite runs on all three."""
    kind = request.param
    if kind == "sim":
        rig = _sim_rig()
        with rig:
            ear = (
                rig.path_delay_samples("mouth_to_dut")
                + DUT_DELAY
                + rig.path_delay_samples("dut_to_ear")
            )
            yield RigUnderTest(kind, rig, rig.mouth_to_ref_samples, ear)
        return
    if shutil.which("jackd") is None:
        pytest.skip("jackd missing: apt-get install jackd2")
    delay_dut = load_delay_dut()
    from harness.rigs import open_rig

    if kind == "loopback":
        with JackServer() as server:
            profile = tmp_path / "loopback.toml"
            profile.write_text(
                f'[rig]\nkind = "loopback"\n[loopback]\nserver = "{server.name}"\n'
                'dut = "delay-dut"\n'
            )
            with (
                delay_dut.DelayDut("delay-dut", DUT_DELAY, servername=server.name),
                open_rig(profile, use_cache=False) as rig,
            ):
                yield RigUnderTest(kind, rig, 1024, 1024 + DUT_DELAY)
        return
    pytest.importorskip("sounddevice", exc_type=OSError)
    with JackServer() as server:
        profile = tmp_path / "soundcard-jack.toml"
        profile.write_text(
            '[rig]\nkind = "soundcard"\nblock_frames = 1024\n[soundcard]\ndevice = "system"\n'
            f'host_api = "JACK"\njack_server = "{server.name}"\njack_client_name = "tympan-sc"\n'
        )
        with (
            delay_dut.DelayDut("delay-dut", DUT_DELAY, servername=server.name),
            open_rig(profile, use_cache=False) as rig,
        ):
            wire_soundcard(server.name, "tympan-sc", "delay-dut")
            expected = rig.latency().expected_mouth_to_ref
            yield RigUnderTest(kind, rig, expected, expected + DUT_DELAY)
