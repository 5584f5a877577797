"""Audio adapters: the agent as a JACK client on a real jackd (dummy driver), answering a
corpus question played into its input port by a second client."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from device.agent.adapters.jack_client import JackAgent
from device.agent.audio import resample
from device.agent.errors import AgentError
from device.agent.events import read_events
from harness.corpus import Corpus
from tests.agent.conftest import ORACLE
from tests.agent.helpers import corpus_audio

jack = pytest.importorskip("jack", reason="JACK-Client is not installed (the [agent] extra)")

RATE = 48000


@pytest.fixture(scope="module")
def jack_server(tmp_path_factory):
    """A jackd with the dummy driver under a name no other test uses; stopped by PID."""
    if shutil.which("jackd") is None:
        pytest.skip("jackd is not installed (scripts/setup.sh installs jackd2)")
    name = f"tympan-agent-test-{os.getpid()}"
    log_path = tmp_path_factory.mktemp("jackd") / "jackd.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        ["jackd", "-n", name, "-d", "dummy", "-r", str(RATE), "-p", "1024"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"},
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                jack.Client("probe", servername=name, no_start_server=True).close()
                break
            except jack.JackError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"jackd did not start: {log_path.read_text()}")
                time.sleep(0.1)
        yield name
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


class Mouth:
    """A second JACK client: plays a clip into the agent's input and records its output."""

    def __init__(self, server: str, clip: np.ndarray) -> None:
        self.client = jack.Client("mouth", servername=server, no_start_server=True)
        self.out = self.client.outports.register("mouth")
        self.ear = self.client.inports.register("ear")
        self.clip = clip
        self.pos = 0
        self.heard: list[np.ndarray] = []
        self.client.set_process_callback(self._process)

    def _process(self, frames: int) -> None:
        block = np.zeros(frames, np.float32)
        seg = self.clip[self.pos : self.pos + frames]
        block[: len(seg)] = seg
        self.pos += frames
        self.out.get_array()[:] = block
        self.heard.append(self.ear.get_array().copy())


def test_jack_agent_answers_a_question_on_its_ports(jack_server, oracle_engines, real_engines):
    speech, text = corpus_audio("sq10_paris", RATE)
    cfg = ORACLE.replace(asr={"oracle_transcripts": (text,)})
    with JackAgent(
        cfg, client_name="tympan-agent", server_name=jack_server, engines=oracle_engines
    ) as agent:
        assert agent.input_port == "tympan-agent:in"
        ports = {p.name for p in agent.client.get_ports("tympan-agent:")}
        assert ports == {"tympan-agent:in", "tympan-agent:out"}
        mouth = Mouth(jack_server, np.concatenate([speech, np.zeros(RATE * 6, np.float32)]))
        with mouth.client:
            mouth.client.connect(mouth.out, agent.input_port)
            mouth.client.connect(agent.output_port, mouth.ear)
            deadline = time.monotonic() + len(mouth.clip) / RATE + 5
            while mouth.pos < len(mouth.clip) and time.monotonic() < deadline:
                time.sleep(0.1)
        events = agent.host.events.events()
        late = agent.pump.late_blocks
    heard = np.concatenate(mouth.heard)
    names = [e.event for e in events]
    assert "playback_start" in names and "playback_end" in names, names
    # The reply came out of the agent's output port, after the question.
    loud = np.flatnonzero(np.abs(heard) > 1e-3)
    assert len(loud) and loud[0] / RATE > Corpus.load().by_id("sq10_paris").speech_end_s
    reply = heard[loud[0] :]
    said = real_engines.asr.transcribe(resample(reply, RATE, 16000), True).lower()
    assert "paris" in said, said
    assert late < 5, f"{late} periods without output ready"


def test_jack_agent_names_a_missing_server():
    with pytest.raises(AgentError, match="cannot join JACK server 'tympan-no-such-server'"):
        JackAgent(ORACLE, server_name="tympan-no-such-server").start()


def wait_for_line(proc: subprocess.Popen, prefix: str, timeout_s: float) -> str:
    """The first stdout line starting with ``prefix`` (fails with stderr if none comes)."""
    found: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            if line.startswith(prefix):
                found.append(line.strip())
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not found:
        proc.kill()
        pytest.fail(f"no {prefix!r} line within {timeout_s} s; stderr: {proc.stderr.read()}")
    return found[0]


def test_sounddevice_agent_via_portaudio_jack(jack_server, real_engines, tmp_path):
    """`python -m device.agent.live --device`: the sounddevice adapter on PortAudio's JACK
    host API (the dummy server stands in for a sound card), default engines, events file."""
    speech, _ = corpus_audio("sq10_paris", RATE)
    events = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device.agent.live",
            "--device",
            "system",
            "--rate",
            str(RATE),
            "--jack-name",
            "tympan-sd-agent",
            "--events",
            str(events),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "JACK_DEFAULT_SERVER": jack_server},
    )
    try:
        assert wait_for_line(proc, "ready:", 60) == "ready: device 'system' at 48000 Hz"
        mouth = Mouth(jack_server, np.concatenate([speech, np.zeros(RATE * 6, np.float32)]))
        with mouth.client:
            mouth.client.connect(mouth.out, "tympan-sd-agent:in_0")
            mouth.client.connect("tympan-sd-agent:out_0", mouth.ear)
            deadline = time.monotonic() + len(mouth.clip) / RATE + 5
            while mouth.pos < len(mouth.clip) and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0, proc.stderr.read()
    names = [e["event"] for e in read_events(events)]
    assert names[-1] == "session_end" and "playback_start" in names, names
    heard = np.concatenate(mouth.heard)
    loud = np.flatnonzero(np.abs(heard) > 1e-3)
    assert len(loud) and loud[0] / RATE > Corpus.load().by_id("sq10_paris").speech_end_s
    said = real_engines.asr.transcribe(resample(heard[loud[0] :], RATE, 16000), True).lower()
    assert "paris" in said, said


def test_live_cli_bad_device_is_one_line_exit_2():
    result = subprocess.run(
        [sys.executable, "-m", "device.agent.live", "--device", "no-such-card"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "sound device 'no-such-card': No input device matching" in result.stderr


def test_live_cli_as_a_jack_client(jack_server, tmp_path):
    """What `--dut cmd:"…"` runs: the agent joins the server under the name given, says
    `ready:` with its ports, and stops cleanly on SIGTERM."""
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[asr]\nengine = "oracle"\noracle_transcripts = ["What time is it?"]\n')
    events = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "device.agent.live", "--jack", "cli-agent"),
            *("--server", jack_server, "--config", str(cfg), "--events", str(events)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for_line(proc, "ready:", 60) == "ready: cli-agent:in cli-agent:out"
        probe = jack.Client("cli-probe", servername=jack_server, no_start_server=True)
        with probe:
            ports = {p.name for p in probe.get_ports("cli-agent:")}
            assert ports == {"cli-agent:in", "cli-agent:out"}
            assert probe.get_port_by_name("cli-agent:in").is_input
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0, proc.stderr.read()
    names = [e["event"] for e in read_events(events)]
    assert names[0] == "state" and names[-1] == "session_end", names
