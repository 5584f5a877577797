"""Helpers for the rig tests: the delay DUT from examples/, the soundcard's bench wiring."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

DUT_DELAY = 480
"""The pass-through DUTs' delay, samples (10 ms)."""

needs_jackd = pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd (jackd2) missing")


def load_delay_dut():
    """examples/jack_delay_dut.py as a module."""
    spec = importlib.util.spec_from_file_location("jack_delay_dut", EXAMPLES / "jack_delay_dut.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wire_soundcard(server: str, pa_client: str, dut: str) -> None:
    """The bench's cables, in the JACK graph: out 1 -> in 1 (ref), out 1 -> DUT -> in 2.
    PortAudio numbers its JACK ports from 0: out_0 is output channel 1."""
    from harness.rigs.jackd import jack_module

    jack = jack_module()
    c = jack.Client("tympan-wiring", servername=server, no_start_server=True)
    try:
        c.connect(f"{pa_client}:out_0", f"{pa_client}:in_0")
        c.connect(f"{pa_client}:out_0", f"{dut}:in")
        c.connect(f"{dut}:out", f"{pa_client}:in_1")
    finally:
        c.close()


def sim_profile(**tables):
    """A sim profile: the shipped one with some tables' keys replaced."""
    import tomllib

    from harness.rigs.profile import FIXTURES_DIR

    data = tomllib.loads((FIXTURES_DIR / "sim.toml").read_text())
    for name, keys in tables.items():
        t = data
        for part in name.split("__"):
            t = t.setdefault(part, {})
        t.update(keys)
    from harness.rigs.profile import validate

    return validate(data, "<test>")
