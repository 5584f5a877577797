"""DeviceBridge on pyserial's ``loop://`` (what is written comes back): decoding, garbage,
resynchronisation and counters without any device."""

from __future__ import annotations

import pytest

from device.bridge import BridgeError, DeviceBridge, NotSynced, read_traffic_log
from device.protocol import Event, Log, encode


@pytest.fixture
def loop(tmp_path):
    with DeviceBridge(
        "loop://", log_dir=tmp_path, handshake=False, sync_on_open=False, sync_interval_s=None
    ) as b:
        yield b


def test_frames_come_back_as_events_between_garbage(loop):
    seqs = [100, 101, 104]
    good = [
        encode(Event("vad_speech_start", 1000 + i, {"i": i}), seq) for i, seq in enumerate(seqs)
    ]
    corrupt = bytearray(encode(Event("vad_speech_end", 5, {"i": 99}), 102))
    corrupt[5] ^= 0x40
    # garbage before, then seq 100, 101, 102 (corrupted on the way), 103 (a LOG), 104
    loop.write_raw(b"\x13\x37garbage\x00" + good[0] + good[1] + bytes(corrupt))
    loop.write_raw(encode(Log(20, "hello"), 103) + good[2])
    events = list(loop.events(timeout_s=2.0, count=3))
    assert [e.fields["i"] for e in events] == [0, 1, 2]
    assert [e.seq for e in events] == seqs
    assert all(e.t_host_us is None and e.boot == 0 for e in events)  # never synced
    stats = loop.stats
    assert stats.crc_errors + stats.framing_errors + stats.message_errors == 2
    assert stats.frames_missing == 1 and stats.seq_gaps == 1  # seq 102 never arrived intact
    assert [log.text for log in loop.device_logs()] == ["hello"]
    with pytest.raises(NotSynced, match="loop://"):
        loop.to_host_us(events[0].t_device_us)


def test_traffic_log_records_both_directions(loop):
    frame = encode(Event("barge_in", 7, {}), 1)
    loop.write_raw(frame)
    assert loop.wait_for("barge_in", 2.0).t_device_us == 7
    loop.close()
    records = read_traffic_log(loop.log_path)
    assert b"".join(r.data for r in records if r.direction == ">") == frame
    assert b"".join(r.data for r in records if r.direction == "<") == frame
    assert records[-1].direction == "#" and "closed; stats" in records[-1].note


def test_unencodable_command_is_a_bridge_error_naming_the_port(loop):
    with pytest.raises(BridgeError, match=r"loop://: cannot send Command: .*255"):
        loop.send_command("configure", {"k": "x" * 300})


def test_a_clock_that_goes_back_is_a_reboot_even_without_boot(loop):
    loop.write_raw(encode(Event("state", 50_000_000, {}), 1) + encode(Event("state", 900, {}), 2))
    events = list(loop.events(timeout_s=2.0, count=2))
    assert [e.boot for e in events] == [0, 1]
    assert loop.reboots[0].reason == "device clock went back (BOOT missed)"
