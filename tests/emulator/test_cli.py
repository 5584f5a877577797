"""``python -m device.emulator`` as a process: its output contract, timers, and the agent."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys

import pytest

from device.bridge import DeviceBridge
from tests.emulator.helpers import ROOT, EmulatorProcess, wait_until


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device.emulator", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--pty", "--link-noise", "2"], "--link-noise: '2': expected a number in 0..1"),
        (["--pty", "--rig", "loopback"], "--rig loopback needs --jack-client NAME"),
        (["--pty", "--fault", "lazy"], "unknown fault 'lazy'"),
        (["--pty", "--link", "/no/such/dir/tty"], "folder /no/such/dir does not exist"),
        (["--pty", "--events-rate", "-5"], "--events-rate -5: expected 0..200000 Hz"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, needle):
    proc = run(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert needle in proc.stderr and proc.stderr.count("\n") == 1


def test_agent_that_cannot_start_exits_2_naming_the_server():
    if shutil.which("jackd") is None:
        pytest.skip("jackd missing: apt-get install jackd2")
    proc = run("--pty", "--rig", "loopback", "--jack-client", "x",
               "--jack-server", "tympan-no-such-server")  # fmt: skip
    assert proc.returncode == 2 and proc.stdout.startswith("/dev/pts/")  # path came first
    last = proc.stderr.strip().splitlines()[-1]  # (libjack says its own lines before)
    assert last.startswith("python -m device.emulator: ") and "tympan-no-such-server" in last


def test_path_first_then_ready_then_summary_on_sigterm(tmp_path):
    link = tmp_path / "dev"
    emu = EmulatorProcess("--link", str(link)).start()
    assert emu.path == str(link) and os.path.realpath(link).startswith("/dev/pts/")
    assert emu.ready.startswith(f"ready: {link}") and "protocol only" in emu.ready
    summary = emu.stop()
    assert emu.returncode == 0 and summary["frames_sent"] == 0 and summary["boots"] == 1
    assert not link.exists()  # the symlink goes with the pty


def test_unplug_timer_and_spontaneous_events(tmp_path):
    link = tmp_path / "dev"
    args = ["--link", str(link), "--events-rate", "500", "--unplug-after", "1.0",
            "--unplug-for", "0.3"]  # fmt: skip
    with (
        EmulatorProcess(*args) as emu,
        DeviceBridge(str(link), log_dir=tmp_path, sync_pings=8, sync_interval_s=None) as b,
    ):
        assert wait_until(lambda: b.gaps and b.gaps[0].t_end_host_us is not None, 5.0)
        assert wait_until(lambda: b.gaps[0].frames_missing > 0, 2.0)
        assert b.clock is not None
        before = b.stats.syncs
        assert wait_until(lambda: b.stats.syncs > before, 3.0)  # resynced after reconnecting
        events = b.drain()
        assert len(events) > 200
        i = [e.fields["i"] for e in events]
        # one hole, exactly as wide as the sequence numbers say the gap was
        holes = [(a, c) for a, c in itertools.pairwise(i) if c != a + 1]
        assert len(holes) == 1 and holes[0][1] - holes[0][0] - 1 == b.gaps[0].frames_missing
    assert emu.summary["unplugs"] == 1


@pytest.mark.slow
def test_reference_agent_on_the_loopback_rig_speaks_the_protocol(tmp_path):
    """The agent as a JACK client behind the pty: its telemetry arrives as EVENT frames,
    mapped onto host time within the sync bound; a fault knob restarts it."""
    if shutil.which("jackd") is None:
        pytest.skip("jackd missing: apt-get install jackd2")
    from harness.rigs.jackd import JackServer

    config = tmp_path / "agent.toml"
    config.write_text('[asr]\nengine = "oracle"\n')
    with JackServer(sample_rate_hz=48000, period=1024) as server:
        args = ["--rig", "loopback", "--jack-client", f"emu-{os.getpid()}",
                "--jack-server", server.name, "--config", str(config), "--truth"]  # fmt: skip
        with (
            EmulatorProcess(*args, ready_timeout_s=60) as emu,
            DeviceBridge(emu.path, log_dir=tmp_path, sync_pings=16, sync_interval_s=None) as b,
        ):
            assert "agent" in b.hello.capabilities and f"emu-{os.getpid()}:in" in emu.ready
            start = b.wait_for("session_start", 10.0)
            fit = b.clock_for(start.boot)
            assert (
                abs(start.t_host_us - start.fields["t_true_us"])
                <= fit.uncertainty_at_us(start.t_device_us) + 1
            )
            b.send_command("configure", {"fault": "no-cancel"}, timeout_s=15.0, retries=0)
            assert b.wait_for("session_start", 10.0).t_host_us > start.t_host_us
            with pytest.raises(Exception, match="bad_argument"):
                b.send_command("configure", {"fault": "lazy"})
