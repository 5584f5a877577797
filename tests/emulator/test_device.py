"""VirtualDevice and ProtocolSink in-process: the protocol engine, impairments, telemetry."""

from __future__ import annotations

import threading
import time

from device.agent.events import TelemetryEvent
from device.emulator.device import (
    BOOT_CLOCK_US,
    DeviceClock,
    VirtualDevice,
    check_synthetic,
    host_now_us,
    synthetic_fields,
)
from device.emulator.sink import ProtocolSink
from device.protocol import (
    Ack,
    Boot,
    Command,
    Event,
    Hello,
    Nack,
    Ping,
    Pong,
    StreamDecoder,
    decode,
    encode,
    wire_value,
)


class Wire:
    """Collects what the device writes."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def __call__(self, frame: bytes) -> bool:
        self.frames.append(frame)
        return True

    def messages(self):
        return [m for m, _ in StreamDecoder().feed(b"".join(self.frames))]


def test_clock_has_its_own_origin_and_drift():
    clock = DeviceClock(drift_ppm=1000.0)
    t0 = clock.boot_host_us
    assert clock.from_host_us(t0) == BOOT_CLOCK_US
    assert clock.from_host_us(t0 + 1_000_000) == BOOT_CLOCK_US + 1_001_000
    assert abs(clock.now_us() - (host_now_us() - t0)) < 1_000_000  # µs since its boot


def test_ping_hello_and_commands_with_repeat_detection():
    wire = Wire()
    dev = VirtualDevice(wire)
    calls = []
    dev.commands["set_volume"] = lambda cmd: calls.append(cmd) or None
    dev.commands["configure"] = lambda cmd: ("bad_argument", "no such key")
    t = host_now_us()
    dev.feed(encode(Ping(t), 0) + encode(Hello("host", "1", 1), 1), t)
    cmd = encode(Command("set_volume", {"level": "0.5"}), 7)
    dev.feed(cmd + cmd)  # the same frame twice: a host retry
    dev.feed(encode(Command("configure", {"x": "1"}), 8) + encode(Command("nope"), 9))
    pong, hello, ack, ack_again, nack, unknown = wire.messages()
    assert isinstance(pong, Pong) and pong.t_host_us == t
    assert pong.t_device_rx_us == dev.clock.from_host_us(t) <= pong.t_device_tx_us
    assert isinstance(hello, Hello) and hello.firmware == "tympan-emulator"
    assert ack == Ack(7) and ack_again == Ack(7) and len(calls) == 1
    assert nack == Nack(8, 2, "no such key")
    assert isinstance(unknown, Nack) and unknown.code == 1 and "configure" in unknown.text
    assert dev.counters.commands_repeated == 1


def test_reboot_restarts_clock_and_sequence():
    wire = Wire()
    dev = VirtualDevice(wire)
    for _ in range(3):
        dev.emit("state", {"state": "idle"})
    dev.reboot("watchdog")
    seqs = [decode(f)[1] for f in wire.frames]
    assert seqs == [0, 1, 2, 0, 1]
    boot = decode(wire.frames[3])[0]
    assert isinstance(boot, Boot) and boot.reason == "watchdog" and boot.t_device_us < 1_000_000


def test_noise_corrupts_the_requested_fraction_and_counts_damage():
    wire = Wire()
    dev = VirtualDevice(wire, link_noise=0.01, seed=5)
    clean = Wire()
    ref = VirtualDevice(clean)
    for i in range(4000):
        fields = synthetic_fields(i, 123)
        dev.emit("llm_token", fields, t_host_us=dev.clock.boot_host_us)
        ref.emit("llm_token", fields, t_host_us=ref.clock.boot_host_us)
    c = dev.counters
    n_bytes = sum(map(len, clean.frames))
    assert 0.008 < c.bytes_corrupted / n_bytes < 0.012
    changed = sum(a != b for a, b in zip(wire.frames, clean.frames, strict=True))
    assert changed == c.frames_corrupted
    assert c.frames_corrupted <= c.frames_damaged <= 2 * c.frames_corrupted
    # what a decoder accepts from the noisy stream is never wrong, and only damage is lost
    got = [m for m in wire.messages() if isinstance(m, Event)]
    assert all(check_synthetic(m.fields) for m in got)
    assert 4000 - c.frames_damaged <= len(got) < 4000


def test_drops_use_sequence_numbers():
    wire = Wire()
    dev = VirtualDevice(wire, drop_rate=0.1, seed=1)
    for i in range(1000):
        dev.emit("llm_token", synthetic_fields(i, 0))
    decoder = StreamDecoder()
    decoder.feed(b"".join(wire.frames))
    assert dev.counters.frames_dropped == 1000 - len(wire.frames) > 50
    # drops after the last frame that got through are invisible to sequence numbers
    last_seq = decode(wire.frames[-1])[1]
    assert decoder.stats.seq_missing == dev.counters.frames_dropped - (999 - last_seq)


def test_protocol_sink_restamps_and_makes_fields_wire_safe():
    wire = Wire()
    dev = VirtualDevice(wire)
    sink = ProtocolSink(dev, truth=True)
    t = dev.clock.boot_host_us + 5_000
    sink.emit(TelemetryEvent("queue_depth", t, {"queue": "tts", "depth": 3, "bound": None}))
    sink.emit(TelemetryEvent("turn_summary", t + 1, {"stages": [1, 2], "text": "x" * 600}))
    sink.emit(TelemetryEvent("not_a_protocol_event", t, {}))
    sink.close()  # sends what is queued
    depth, summary = wire.messages()
    assert depth.t_device_us == BOOT_CLOCK_US + 5_000
    assert dict(depth.fields) == {"queue": "tts", "depth": 3, "bound": None, "t_true_us": t}
    assert summary.fields["stages"] == "[1,2]" and summary.fields["truncated"] is True
    assert sink.skipped == 1
    assert wire_value(2**70) == str(2**70)


def test_protocol_sink_never_blocks_the_agent_on_a_stuck_link():
    release = threading.Event()
    dev = VirtualDevice(lambda frame: release.wait(10.0))  # nobody reads the pty
    sink = ProtocolSink(dev, max_queued=10)
    t0 = time.monotonic()
    for i in range(100):
        sink.emit(TelemetryEvent("llm_token", dev.clock.boot_host_us + i, {"i": i}))
    assert time.monotonic() - t0 < 0.5  # emit only queues
    assert 85 <= sink.overflowed <= 90  # 10 queued, at most one in flight
    release.set()
    sink.close()
    assert dev.counters.events_sent == 100 - sink.overflowed
