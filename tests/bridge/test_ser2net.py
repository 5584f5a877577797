"""The bridge over the network: ser2net (RFC 2217 and raw TCP) in front of the emulator's pty.

ser2net runs in the foreground with this test's own config on free loopback ports and is
stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from device.bridge import DeviceBridge, PortError
from device.emulator.device import check_synthetic
from tests.emulator.helpers import EmulatorProcess

pytestmark = [
    pytest.mark.skipif(
        shutil.which("ser2net") is None, reason="ser2net is not installed (make setup installs it)"
    ),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:serial.rfc2217"),  # pyserial 3.5
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"ser2net exited: {proc.stdout.read() if proc.stdout else ''}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"ser2net did not listen on {port} within {timeout_s} s")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(rfc2217 URL, socket URL, emulator) with ser2net in front of the emulator's pty."""
    tmp = tmp_path_factory.mktemp("ser2net")
    with EmulatorProcess("--clock-drift-ppm", "20") as emu:
        rfc, raw = free_port(), free_port()
        config = tmp / "ser2net.yaml"
        config.write_text(
            f"connection: &rfc\n"
            f"  accepter: telnet(rfc2217),tcp,127.0.0.1,{rfc}\n"
            f"  connector: serialdev,{emu.path},115200n81,local\n"
            f"  options:\n    kickolduser: true\n"
            f"connection: &raw\n"
            f"  accepter: tcp,127.0.0.1,{raw}\n"
            f"  connector: serialdev,{emu.path},115200n81,local\n"
            f"  options:\n    kickolduser: true\n"
        )
        proc = subprocess.Popen(
            ["ser2net", "-n", "-u", "-c", str(config), "-P", str(tmp / "ser2net.pid")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_listening(rfc, proc)
            wait_listening(raw, proc)
            yield f"rfc2217://127.0.0.1:{rfc}?ign_set_control", f"socket://127.0.0.1:{raw}", emu
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.parametrize("kind", ["rfc2217", "socket"])
def test_sync_command_and_events_through_ser2net(served, tmp_path, kind):
    url = served[0] if kind == "rfc2217" else served[1]
    with DeviceBridge(url, log_dir=tmp_path, sync_pings=24, sync_interval_s=None) as b:
        assert b.hello is not None and b.hello.firmware == "tympan-emulator"
        fit = b.clock
        assert fit is not None and fit.samples >= 20 and fit.consistent
        b.send_command("set_volume", {"level": "0.25"})
        b.send_command("stream", {"count": 300, "rate_hz": 3000})
        events = list(b.events(timeout_s=10, count=300))
        assert [e.fields["i"] for e in events] == list(range(300))
        assert all(check_synthetic(e.fields) for e in events)
        for e in events:  # the network adds delay, never a wrong mapping
            assert (
                abs(e.t_host_us - e.fields["t_true_us"]) <= fit.uncertainty_at_us(e.t_device_us) + 1
            )
        assert b.stats.bad_frames == 0 and b.stats.frames_missing == 0


def test_nothing_listening_is_a_port_error(tmp_path):
    url = f"rfc2217://127.0.0.1:{free_port()}?ign_set_control"
    with pytest.raises(PortError, match=r"127\.0\.0\.1"):
        DeviceBridge(url, log_dir=tmp_path).open()
