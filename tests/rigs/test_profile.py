"""Rig profiles: the shipped ones load; bad ones are refused with a message naming file,
key, value and what is allowed."""

from __future__ import annotations

import pytest

from harness.rigs import ProfileError, load_profile, open_rig
from harness.rigs.profile import FIXTURES_DIR


@pytest.mark.parametrize("name", ["sim", "loopback", "lab-example"])
def test_shipped_profiles_load(name):
    p = load_profile(FIXTURES_DIR / f"{name}.toml")
    assert p.kind in ("sim", "loopback", "soundcard")
    assert p.sample_rate_hz == 48000


def test_short_names_resolve():
    assert load_profile("sim").kind == "sim"
    assert load_profile("loopback").kind == "loopback"


def test_lab_example_channel_map_is_zero_based():
    ch = load_profile("lab-example").channels()
    assert ch.mouth == (0,) and ch.ref == 0 and ch.ear == 1
    assert ch.inputs == 2 and ch.outputs == 1


def _write(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ('[rig]\nkind = "tape"\n', ["p.toml", "rig.kind", "'tape'", "'sim'", "'loopback'"]),
        (
            '[rig]\nkind = "sim"\nsample_rate_hz = "fast"\n',
            ["rig.sample_rate_hz", "'fast'", "an integer"],
        ),
        ('[rig]\nkind = "sim"\n[sim]\nwobble = 1\n', ["unknown key sim.wobble", "seed"]),
        ('[rig]\nkind = "sim"\n[sim.attic]\n', ["unknown table [sim.attic]", "[sim.room]"]),
        (
            '[rig]\nkind = "sim"\n[sim.room]\nrt60_s = 9\n',
            ["sim.room.rt60_s", "9", "0..2"],
        ),
        (
            '[rig]\nkind = "sim"\n[sim.room]\near_m = [9.0, 1.0, 1.0]\n',
            ["sim.room.ear_m", "inside the room"],
        ),
        (
            '[rig]\nkind = "loopback"\n[loopback]\nperiod = 1000\n',
            ["loopback.period", "1000", "1024"],
        ),
        ('[rig]\nkind = "soundcard"\n', ["soundcard.device", "missing"]),
        (
            '[rig]\nkind = "soundcard"\n[soundcard]\ndevice = "x"\nref_in = 2\near_in = 2\n',
            ["soundcard.ear_in", "other than ref_in"],
        ),
        ('[rig]\nkind = "sim"\n[loopback]\n', ["[loopback]", "kind = 'sim'"]),
        ("[rig\n", ["not valid TOML"]),
        ("[sim]\nseed = 1\n", ["missing table [rig]"]),
    ],
)
def test_bad_profiles_name_the_problem(tmp_path, text, needles):
    path = _write(tmp_path, text)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    for needle in needles:
        assert needle in str(err.value)


def test_missing_profile_lists_short_names(tmp_path):
    with pytest.raises(ProfileError, match=r"no such rig profile.*loopback.*sim"):
        load_profile(tmp_path / "nope.toml")


def test_unknown_noise_bed_is_named(tmp_path):
    path = _write(tmp_path, '[rig]\nkind = "sim"\n[sim.noise]\nbed = "sq01_time"\n')
    with pytest.raises(ProfileError, match=r"sim.noise.bed = 'sq01_time'.*nz01_babble"):
        open_rig(path)


def test_profile_error_is_an_input_error():
    from harness.errors import InputError

    assert issubclass(ProfileError, InputError)


def test_an_unknown_short_name_lists_the_rig_profiles_only():
    with pytest.raises(ProfileError) as err:
        load_profile("nope")
    listed = str(err.value).split("short name (")[1].split(")")[0].split(", ")
    assert "sim" in listed and "loopback" in listed
    assert "budgets" not in listed  # fixtures/budgets.toml is no rig
