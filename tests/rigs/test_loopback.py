"""The JACK loopback rig: server lifecycle (no orphans, even after a crash), wiring, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.rigs import RigUnavailable, open_rig
from harness.rigs.jackd import JackServer, running_jackd
from tests.rigs.helpers import load_delay_dut, needs_jackd

pytestmark = needs_jackd

REPO = Path(__file__).resolve().parents[2]


def _profile(tmp_path, body):
    path = tmp_path / "lb.toml"
    path.write_text('[rig]\nkind = "loopback"\n[loopback]\n' + body)
    return path


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pid, timeout_s=15.0):
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_own_server_is_stopped_on_close():
    rig = open_rig("loopback", use_cache=False)
    with rig:
        pid = rig.server.pid
        name = rig.server_name
        assert (pid, name) in running_jackd()
        assert rig.latency().expected_mouth_to_ref == 1024
    assert not _alive(pid)
    assert rig.server is None


SIDE = """
import sys
sys.path.insert(0, {repo!r})
import numpy as np
from harness.rigs import open_rig
x = np.random.default_rng(0).standard_normal(4800).astype(np.float32) * 0.1
with open_rig("loopback", use_cache=False) as rig:
    lags = []
    for _ in range(3):
        cap = rig.play_and_record(x, 0.3)
        lags.append(int(np.argmax(np.abs(cap.ref)) - np.argmax(np.abs(x))))
    print(rig.server_name, *lags, flush=True)
"""


def test_two_rigs_side_by_side_in_two_processes():
    """Unique server names let rigs run in parallel (one per process: see the next test)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = SIDE.format(repo=str(REPO))
    kids = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True)
        for _ in range(2)
    ]
    outs = [k.communicate(timeout=120)[0].split() for k in kids]
    assert all(k.returncode == 0 for k in kids)
    assert outs[0][0] != outs[1][0]
    assert all(o[1:] == ["1024"] * 3 for o in outs), outs


def test_a_second_server_in_one_process_is_refused():
    with open_rig("loopback", use_cache=False) as rig:
        with pytest.raises(RigUnavailable, match="one server per process"):
            open_rig("loopback", use_cache=False).open()
        assert rig.play_and_record(np.zeros(10, dtype=np.float32), 0.1).status.frames > 0


def test_attach_to_a_named_server_and_wire_a_dut_by_name(jack_server, tmp_path):
    dut_mod = load_delay_dut()
    path = _profile(tmp_path, f'server = "{jack_server.name}"\n')
    with dut_mod.DelayDut("late-dut", 100, servername=jack_server.name), open_rig(path) as rig:
        assert rig.server is None  # attached, not owned
        rig.connect_dut("late-dut")
        x = np.random.default_rng(1).standard_normal(4800).astype(np.float32) * 0.1
        cap = rig.play_and_record(x, 0.4)
        assert np.argmax(np.abs(cap.ear)) == np.argmax(np.abs(x)) + 1024 + 100
    assert jack_server.process.poll() is None  # the rig does not stop a server it attached to


def test_missing_dut_client_lists_the_clients(jack_server, tmp_path):
    path = _profile(tmp_path, f'server = "{jack_server.name}"\n')
    with open_rig(path) as rig, pytest.raises(RigUnavailable) as err:
        rig.connect_dut("ghost", timeout_s=0.3)
    msg = str(err.value)
    assert "'ghost'" in msg and "jack:ghost" in msg and "tympan" in msg and "system" in msg


def test_unknown_server_is_named(tmp_path):
    path = _profile(tmp_path, 'server = "no-such-server"\nstart_timeout_s = 0.5\n')
    with pytest.raises(RigUnavailable, match=r"loopback.server = 'no-such-server'"):
        open_rig(path).open()


def test_sample_rate_mismatch_is_refused(jack_server, tmp_path):
    path = tmp_path / "lb.toml"
    path.write_text(
        '[rig]\nkind = "loopback"\nsample_rate_hz = 44100\n'
        f'[loopback]\nserver = "{jack_server.name}"\n'
    )
    with pytest.raises(RigUnavailable, match=r"runs at 48000 Hz.*44100"):
        open_rig(path).open()


def test_jackd_missing_names_the_debian_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RigUnavailable, match="jackd2"):
        JackServer().start()


CHILD = """
import faulthandler, signal, sys, time
faulthandler.register(signal.SIGUSR1, all_threads=True)  # where it hangs, if it does
# Ctrl-C as at a terminal: a job started in the background (`make test &`, some CI runners)
# inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {repo!r})
from harness.rigs import open_rig
rig = open_rig("loopback", use_cache=False).open()
print(rig.server.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_no_orphan_after_crash_or_ctrl_c(sig):
    """The harness process dies (kill -9), is terminated or interrupted: jackd goes too."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(repo=str(REPO))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        line = child.stdout.readline()
        assert line.strip().isdigit(), f"child did not start its rig: {line!r}"
        jackd_pid = int(line)
        assert _alive(jackd_pid)
        child.send_signal(sig)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack
            time.sleep(1.0)
            child.kill()
            stacks = child.communicate(timeout=10)[1][-4000:]
            pytest.fail(f"the harness did not exit within 30 s of {sig!r}; its stacks:\n{stacks}")
        assert _wait_gone(jackd_pid), f"jackd {jackd_pid} survived its harness ({sig!r})"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
