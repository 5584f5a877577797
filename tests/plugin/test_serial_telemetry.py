"""Telemetry over the serial link, fused with the acoustic truth: the device emulator runs
the reference agent on the JACK loopback and speaks the protocol on a pty; the harness reads
its events through the bridge (clock-synchronised) and puts them on the capture timeline."""

from __future__ import annotations

import sys

import pytest

from harness.session import HarnessSession, RunSettings

pytestmark = pytest.mark.slow


def test_serial_events_line_up_with_what_the_ear_heard(tmp_path):
    link = tmp_path / "tty-emulator"
    command = (
        f"{sys.executable} -m device.emulator --pty --link {link} --rig loopback "
        "--jack-client emu --clock-drift-ppm 40"
    )
    settings = RunSettings(
        rig="loopback", dut=f'cmd:"{command}",serial={link}', out_dir=tmp_path / "out"
    )
    with HarnessSession(settings) as session:
        outcome = session.turn("sq01_time")
        env = session.environment()
    serial = [e for e in outcome.events if e.get("source") == "serial"]
    names = {e["event"] for e in serial}
    assert {"vad_speech_end", "llm_request", "tts_chunk", "playback_start"} <= names
    assert all(e["t_s"] is not None for e in serial)
    m = outcome.metrics
    assert m.ttfa_ms is not None, m
    stages = outcome.stages.stages_ms
    # the device's own playback start comes before the first sound at the ear: by the JACK
    # period the agent's output waits for and the rig's ear input (2 x 1024 samples = 43 ms),
    # give or take the clock sync's uncertainty (< 0.2 ms) and the agent's 20 ms frames
    assert 0.0 < stages["output_path_ms"] < 120.0, stages
    assert 0.0 < stages["eou_delay_ms"] < 1500.0, stages
    assert stages["self_reported_ttfa_ms"] < m.ttfa_ms  # frameworks' own numbers are rosier
    assert env["DUT firmware"].startswith("tympan-emulator")
    assert (tmp_path / "out" / "results.json").is_file()
