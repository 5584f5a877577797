"""A software agent as a device (`device.observer`): the harness's real bridge opens the
observer's socket as ``socket://HOST:PORT``, reads its HELLO, synchronises its clock and
receives its events, stamped where they happened."""

from __future__ import annotations

import time

from device.bridge import DeviceBridge
from device.observer import Observer


def test_the_bridge_receives_an_observers_events_on_the_host_clock(tmp_path):
    with Observer("pipecat", "9.9.9").open() as observer:
        assert observer.url.startswith("socket://127.0.0.1:")
        with DeviceBridge(observer.url, log_dir=tmp_path, sync_pings=16) as bridge:
            assert bridge.hello is not None
            assert (bridge.hello.firmware, bridge.hello.firmware_version) == (
                "pipecat-observer",
                "9.9.9",
            )
            # an event that happened 100 ms ago (after the observer started: the clock
            # sync alone took longer), sent now
            happened_us = time.monotonic_ns() // 1000 - 100_000
            assert happened_us > observer.device.clock.boot_host_us
            turn = observer.new_turn()
            observer.emit("vad_speech_end", t_us=happened_us, turn=turn, input_s=1.5)
            observer.emit(
                "turn_summary",
                turn=turn,
                end_of_speech_to_playback_ms=812.5,
                framework="pipecat",
                ttfb=[{"processor": "tts", "ms": 90}],
            )
            got = list(bridge.events(timeout_s=5.0, count=2))
    names = [e.name for e in got]
    assert names == ["vad_speech_end", "turn_summary"], names
    end, summary = got
    # the event is placed where it happened (not when it arrived), to the clock sync's error
    assert abs(end.t_host_us - happened_us) < 2_000, end.t_host_us - happened_us
    assert end.fields == {"turn": 1, "input_s": 1.5}
    assert summary.fields["end_of_speech_to_playback_ms"] == 812.5
    assert summary.fields["framework"] == "pipecat"
    assert summary.fields["ttfb"] == '[{"processor":"tts","ms":90}]'  # open fields: JSON text


def test_an_event_the_protocol_has_no_name_for_is_counted_not_sent():
    with Observer("livekit", "1.0").open() as observer:
        observer.emit("no_such_event", x=1)
        assert observer.skipped == 1
