"""The soundcard rig's device handling, through PortAudio's JACK host API on a dummy jackd
(the code path a lab uses; the shared suite covers streaming and calibration)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from harness.rigs import RigUnavailable, open_rig
from harness.rigs.base import StreamBuffers
from harness.rigs.profile import load_profile
from harness.rigs.soundcard import SoundcardRig
from tests.rigs.helpers import load_delay_dut, needs_jackd

sd = pytest.importorskip("sounddevice", exc_type=OSError)


def _profile(tmp_path, server, extra="", rig=""):
    path = tmp_path / "sc.toml"
    path.write_text(
        f'[rig]\nkind = "soundcard"\n{rig}[soundcard]\nhost_api = "JACK"\n'
        f'jack_server = "{server}"\njack_client_name = "tympan-sc"\n{extra}'
    )
    return path


@needs_jackd
def test_ambiguous_device_lists_the_candidates(jack_server, tmp_path):
    dut = load_delay_dut()
    with dut.DelayDut("delay-dut", 10, servername=jack_server.name):
        path = _profile(tmp_path, jack_server.name, 'device = "t"\n')
        with pytest.raises(RigUnavailable) as err:
            open_rig(path).open()
    msg = str(err.value)
    assert "ambiguous" in msg and "system, JACK Audio Connection Kit" in msg
    assert "delay-dut" in msg and str(path) in msg


@needs_jackd
def test_unknown_device_lists_every_device(jack_server, tmp_path):
    path = _profile(tmp_path, jack_server.name, 'device = "Scarlett"\n')
    with pytest.raises(
        RigUnavailable, match=r"(?s)no audio device matching 'Scarlett'.*\[0\] system"
    ):
        open_rig(path).open()


@needs_jackd
def test_rate_the_device_refuses_is_named(jack_server, tmp_path):
    path = _profile(tmp_path, jack_server.name, 'device = "system"\n', "sample_rate_hz = 44100\n")
    with pytest.raises(
        RigUnavailable, match=r"(?s)system refuses .* at 44100 Hz.*default rate is 48000"
    ):
        open_rig(path).open()


@needs_jackd
def test_device_by_index_and_pa_client_name(jack_server, tmp_path):
    from harness.rigs.jackd import jack_module

    path = _profile(tmp_path, jack_server.name, "device = 0\n")
    with open_rig(path, use_cache=False) as rig:
        jack = jack_module()
        c = jack.Client("probe", servername=jack_server.name, no_start_server=True)
        names = {p.name for p in c.get_ports("tympan-sc:")}
        c.close()
        assert {"tympan-sc:in_0", "tympan-sc:in_1", "tympan-sc:out_0"} <= names
        assert rig.devices == (0, 0)


def test_callback_records_xrun_flags_with_the_sample_index():
    rig = SoundcardRig(load_profile("lab-example"))
    rig._buffers = StreamBuffers(4096)
    indata = np.ones((256, 2), dtype=np.float32)
    outdata = np.zeros((256, 1), dtype=np.float32)
    ok = SimpleNamespace(input_overflow=False, input_underflow=False)
    ok.output_underflow = ok.output_overflow = False
    bad = SimpleNamespace(**vars(ok) | {"input_overflow": True})
    rig._callback(indata, outdata, 256, None, None)
    rig._callback(indata, outdata, 256, None, bad)
    (x,) = rig._buffers.xruns
    assert (x.kind, x.sample_index) == ("input_overflow", 256)
    assert rig._buffers.position == 512
