"""The C library against the Python one: the same bytes, and a C device on a real pty.

Builds device/firmware/examples/pty_device.c with gcc into a temporary directory, then
(1) compares its --dump frames with `device.protocol.encode` of the same messages, and
(2) drives it over a pseudo-terminal with pyserial and the Python `StreamDecoder`.
"""

from __future__ import annotations

import importlib.util
import random
import select
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from device.protocol import (
    NACK_CODES,
    Ack,
    Boot,
    Command,
    Event,
    Hello,
    Log,
    Message,
    Nack,
    Ping,
    Pong,
    StreamDecoder,
    encode,
)
from tests.protocol.strategies import SAMPLE_MESSAGES

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "device" / "firmware"

DEVICE_HELLO = Hello("tympan-c-example", "1.0.0", 1, ("events", "commands", "ping"), 1_000_000)

# What `pty_device --dump` prints, in order, with seq 0, 1, 2, ...
DUMP_MESSAGES: list[Message] = [
    Boot("power_on", 12),
    DEVICE_HELLO,
    *(m for m in SAMPLE_MESSAGES if isinstance(m, Event | Ack | Nack | Log)),
    Event("event_200", 5, {"n": 1}),
]


def burst_event(i: int, t_device_us: int) -> Event:
    """Event ``i`` of the C device's scripted burst (examples/pty_device.c, burst_event)."""
    texts = ["Sure", "I can help with that.", "héllo", ""]
    states = ["listening", "user_speaking", "thinking", "speaking"]
    kind = i % 4
    if kind == 0:
        fields = {"turn": i, "text": texts[(i // 4) % 4], "tokens": i % 7, "reason": "clause"}
        return Event("tts_chunk", t_device_us, fields)
    if kind == 1:
        return Event("state", t_device_us, {"state": states[(i // 4) % 4]})
    if kind == 2:
        bound = None if i % 8 == 2 else 8
        return Event("queue_depth", t_device_us, {"queue": "tts", "depth": i % 5, "bound": bound})
    fields = {
        "turn": i,
        "output_s": i * 0.25,
        "merged_with_previous": i % 2 == 0,
        "audio_dropped_ms": i * 3_000_000_000,
    }
    return Event("cancel_done", t_device_us, fields)


@pytest.fixture(scope="module")
def pty_device_exe(tmp_path_factory) -> Path:
    build = tmp_path_factory.mktemp("firmware-build")
    proc = subprocess.run(
        ["make", "-s", "-C", str(FIRMWARE), f"BUILD={build}", "pty_device"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"building pty_device failed:\n{proc.stdout}\n{proc.stderr}"
    return build / "pty_device"


@pytest.fixture
def c_device(pty_device_exe) -> Iterator[str]:
    """A running C device; yields its pty path. Stopped by PID afterwards."""
    proc = subprocess.Popen([str(pty_device_exe)], stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 10.0)
        assert ready, "pty_device printed no pty path within 10 s"
        path = proc.stdout.readline().strip()
        assert path.startswith("/dev/pts/"), f"pty_device's first line is {path!r}"
        yield path
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        assert proc.returncode is not None


class Link:
    """A pyserial port plus the Python decoder, keeping every raw byte it read."""

    def __init__(self, path: str) -> None:
        self.port = serial.serial_for_url(path, baudrate=115200, timeout=0.05)
        self.decoder = StreamDecoder()
        self.raw = bytearray()
        self.inbox: list[tuple[Message, int]] = []
        self.seq = 0

    def send(self, message: Message) -> int:
        seq = self.seq
        self.seq = (self.seq + 1) & 0xFFFF
        self.port.write(encode(message, seq))
        return seq

    def expect(
        self, pred: Callable[[Message], bool], timeout_s: float = 5.0
    ) -> list[tuple[Message, int]]:
        """Read until a message matching ``pred`` arrives; returns the messages up to it."""
        deadline = time.monotonic() + timeout_s
        checked = 0
        while True:
            for k in range(checked, len(self.inbox)):
                if pred(self.inbox[k][0]):
                    got, self.inbox = self.inbox[: k + 1], self.inbox[k + 1 :]
                    return got
            checked = len(self.inbox)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no matching message within {timeout_s} s; unmatched {self.inbox[-5:]}, "
                    f"raw tail {bytes(self.raw[-200:])!r}, decoder {self.decoder.stats}"
                )
            data = self.port.read(4096)
            self.raw += data
            self.inbox += self.decoder.feed(data)

    def command(self, name: str, **args: str) -> tuple[Message, int, list]:
        seq = self.send(Command(name, args))
        got = self.expect(lambda m: isinstance(m, Ack | Nack) and m.ack_seq == seq)
        reply, reply_seq = next((m, s) for m, s in got if isinstance(m, Ack | Nack))
        return reply, reply_seq, got


def test_c_dump_is_byte_identical_to_python(pty_device_exe):
    out = subprocess.run(
        [str(pty_device_exe), "--dump"], capture_output=True, text=True, timeout=10, check=True
    ).stdout.split()
    want = [encode(m, i).hex() for i, m in enumerate(DUMP_MESSAGES)]
    assert len(out) == len(want)
    for i, (got_hex, want_hex) in enumerate(zip(out, want, strict=True)):
        assert got_hex == want_hex, f"frame {i} ({DUMP_MESSAGES[i]!r}) differs"


def test_c_device_over_a_pty(c_device):
    link = Link(c_device)
    try:
        # Opening the port may have flushed the boot frames: ask for a HELLO.
        link.send(Hello("tympan-test", "0", 1, (), 1_000_000))
        got = link.expect(lambda m: isinstance(m, Hello) and link.decoder.stats.frames > 0)
        hellos = [m for m, _ in got if isinstance(m, Hello)]
        assert hellos and all(h == DEVICE_HELLO for h in hellos)

        t_host_us = time.monotonic_ns() // 1000
        link.send(Ping(t_host_us))
        got = link.expect(lambda m: isinstance(m, Pong))
        pong = next(m for m, _ in got if isinstance(m, Pong))
        assert pong.t_host_us == t_host_us
        # Same machine, same CLOCK_MONOTONIC: the device times lie inside the round trip.
        t_back_us = time.monotonic_ns() // 1000
        assert t_host_us <= pong.t_device_rx_us <= pong.t_device_tx_us <= t_back_us

        reply, _, _ = link.command("configure", vad_threshold="0.5")
        assert isinstance(reply, Ack)
        reply, _, _ = link.command("configure", fail="1")
        assert reply.code == NACK_CODES["bad_argument"] and "'fail'" in reply.text
        reply, _, _ = link.command("set_volume", volume_db="loud")
        assert reply == Nack(reply.ack_seq, 2, "set_volume: volume_db must be a number")
        reply, _, _ = link.command("set_volume", volume_db="-6.0")
        assert isinstance(reply, Ack)
        reply, _, _ = link.command("frobnicate")
        assert reply.code == NACK_CODES["unknown_command"] and "frobnicate" in reply.text
        reply, _, got = link.command("log", text="héllo from C")
        got += link.expect(lambda m: isinstance(m, Log))
        assert Log(20, "héllo from C") in [m for m, _ in got]

        # Garbage from the host side: the device resynchronises at the next 0x00.
        link.port.write(random.Random(3).randbytes(700) + b"\x00")
        reply, _, _ = link.command("start_session")
        assert isinstance(reply, Ack)

        # A burst: the raw bytes after the ACK are exactly what Python encodes.
        n = 400
        start = len(link.raw)
        cmd_seq = link.send(Command("burst", {"count": str(n), "t0_us": "5000"}))
        got = link.expect(lambda m: isinstance(m, Event) and m.fields.get("turn") == n - 1)
        ack_seq = next(s for m, s in got if isinstance(m, Ack))
        want = encode(Ack(cmd_seq), ack_seq) + b"".join(
            encode(burst_event(i, 5000 + 10 * i), (ack_seq + 1 + i) & 0xFFFF) for i in range(n)
        )
        assert bytes(link.raw[start : start + len(want)]) == want

        # reset: ACK, then the device reboots: 0x00, BOOT("reset") with seq 0, HELLO.
        reply, _, got = link.command("reset")
        assert isinstance(reply, Ack)
        got += link.expect(lambda m: isinstance(m, Hello))
        boots = [(m, s) for m, s in got if isinstance(m, Boot)]
        assert len(boots) == 1 and boots[0][0].reason == "reset" and boots[0][1] == 0

        s = link.decoder.stats
        assert s.bad_frames == 0 and s.seq_gaps == 0, s
    finally:
        link.port.close()


def test_c_golden_header_is_current():
    spec = importlib.util.spec_from_file_location(
        "make_golden", FIRMWARE / "tests" / "make_golden.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.GOLDEN_H.read_text(encoding="utf-8") == module.render(), (
        "device/firmware/tests/golden.h is stale: run device/firmware/tests/make_golden.py"
    )


def test_c_device_through_the_bridge(c_device, tmp_path):
    """DeviceBridge (device/bridge) drives the C device: handshake, sync, commands, events,
    a reboot. Both sides read CLOCK_MONOTONIC, so the fitted offset must be ~0."""
    from device.bridge import CommandRejected, DeviceBridge

    with DeviceBridge(c_device, log_dir=tmp_path, sync_pings=32, sync_interval_s=None) as bridge:
        assert bridge.hello == DEVICE_HELLO
        fit = bridge.clock
        assert fit is not None
        assert abs(fit.offset_us) <= fit.uncertainty_us + 50, fit
        bridge.send_command("configure", {"vad_threshold": 0.5})
        with pytest.raises(CommandRejected, match="bad_argument"):
            bridge.send_command("set_volume", {"volume_db": "loud"})
        n = 2000
        t0_us = time.monotonic_ns() // 1000
        bridge.send_command("burst", {"count": n, "t0_us": t0_us})
        events = list(bridge.events(timeout_s=20.0, count=n))
        assert len(events) == n
        for i, e in enumerate(events):
            want = burst_event(i, t0_us + 10 * i)
            assert (e.name, e.t_device_us, dict(e.fields)) == (
                want.name,
                want.t_device_us,
                dict(want.fields),
            )
            assert abs(e.t_host_us - want.t_device_us) <= fit.uncertainty_at_us(e.t_device_us) + 50
        bridge.send_command("reset")
        deadline = time.monotonic() + 5.0
        while not bridge.reboots and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [r.reason for r in bridge.reboots] == ["reset"]
        s = bridge.stats
        assert s.crc_errors == s.framing_errors == s.message_errors == 0, s
        assert s.frames_missing == 0, s
