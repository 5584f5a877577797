"""`tympan device sync|events|send` against the emulator on a pty."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from tests.emulator.helpers import EmulatorProcess


@pytest.fixture
def emu():
    with EmulatorProcess("--clock-drift-ppm", "25", "--events-rate", "200") as emu:
        yield emu


def test_sync_json(emu, tmp_path, capsys):
    rc = main(["device", "sync", "--port", emu.path, "--pings", "32", "--seconds", "0.3",
               "--json", "--log-dir", str(tmp_path)])  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    for key in ("offset_us", "drift_ppm", "uncertainty_us", "rtt_us_p50", "drift_uncertainty_ppm"):
        assert isinstance(doc[key], float | int), key
    assert doc["pings"] == 32 and doc["pongs"] == 32 and doc["firmware"] == "tympan-emulator"
    assert 0 < doc["rtt_us_min"] <= doc["rtt_us_p50"] and doc["uncertainty_us"] > 0
    assert doc["log"].startswith(str(tmp_path))


def test_events_and_send(emu, tmp_path, capsys):
    rc = main(["device", "events", "--port", emu.path, "--count", "5", "--json",
               "--log-dir", str(tmp_path)])  # fmt: skip
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and len(lines) == 5
    assert all(e["event"] == "llm_token" and e["t_host_us"] > 0 for e in lines)
    assert "5 event(s); 0 bad frame(s)" in err

    assert main(["device", "send", "--port", emu.path, "set_volume", "level=0.5"]) == 0
    assert capsys.readouterr().out.startswith("ACK set_volume")
    assert main(["device", "send", "--port", emu.path, "set_volume", "level=9", "--json"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["nack"] == "bad_argument" and "level='9'" in err
    assert main(["device", "send", "--port", emu.path, "set_volume", "level"]) == 2
    assert "'level': expected KEY=VALUE" in capsys.readouterr().err


def test_bad_port_is_one_line_and_exit_2(capsys):
    rc = main(["device", "sync", "--port", "/dev/ttyTYMPAN404", "--json"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "/dev/ttyTYMPAN404" in err and "Traceback" not in err
