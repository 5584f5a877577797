"""The simulated rig: exact paths, the scripted DUT's timing, echo, drift, dropouts, noise."""

from __future__ import annotations

import time

import numpy as np
import pytest

from harness.rigs import AudioRig, SessionError, open_rig
from harness.rigs.profile import load_profile
from harness.rigs.sim import ScriptedDut, SimRig
from harness.signal import fit_drift, locate, refine_lag
from harness.signal.resample import resample
from tests.rigs.helpers import sim_profile

FS = 48000


@pytest.fixture(scope="module")
def speech():
    from harness.corpus import Corpus

    u = Corpus.load().by_id("sq10_paris")
    return resample(u.load(), u.sample_rate_hz, FS).astype(np.float32), u


def test_sim_rig_satisfies_the_protocol():
    rig = open_rig("sim")
    assert isinstance(rig, AudioRig)


def test_ref_is_the_mouth_delayed_by_the_converters(speech):
    stim, _ = speech
    with open_rig(sim_profile(sim={"ref_noise_dbfs": -120.0})) as rig:
        cap = rig.play_and_record(stim, 4.0)
    m = locate(cap.ref, stim, FS)
    assert refine_lag(cap.ref, stim, m.lag_samples) == pytest.approx(128, abs=0.01)
    assert cap.status.latency.expected_mouth_to_ref == 128
    assert np.allclose(cap.mouth[: len(stim)], stim)


@pytest.mark.parametrize("rt60", [0.0, 0.3])
def test_scripted_reply_arrives_where_the_paths_say(speech, rt60):
    stim, _ = speech
    with open_rig(sim_profile(sim__room={"rt60_s": rt60})) as rig:
        cap = rig.play_and_record(stim, 10.0)  # the whole reply (5.8 s) is in the capture
        dut = rig.dut
    start = dut.first("reply_start")
    assert dut.first("speech_end") + round(0.6 * FS) == start
    m = locate(cap.ear, dut.reply, FS, exclusion_s=0.02)
    expected = start + rig.path_delay_samples("dut_to_ear")
    assert refine_lag(cap.ear, dut.reply, m.lag_samples) == pytest.approx(expected, abs=0.1)


def test_deterministic_and_faster_than_real_time(speech):
    stim, _ = speech
    runs = []
    for _ in range(2):
        with open_rig("sim") as rig:
            t0 = time.monotonic()
            runs.append(rig.play_and_record(stim, 6.0).samples)
            wall = time.monotonic() - t0
    assert np.array_equal(runs[0], runs[1])
    assert wall < 6.0  # ~1 s here; generous for a loaded machine


def test_streaming_session_barge_in_stops_the_reply(speech):
    """The turn runner's pattern: read blocks, find the reply, inject a barge-in at onset + d."""
    stim, _ = speech
    clip = stim[: FS // 2] * 0  # a burst the DUT hears as speech:
    clip = (0.3 * np.sin(2 * np.pi * 300 * np.arange(FS // 2) / FS)).astype(np.float32)
    with open_rig(sim_profile(sim__noise={"bed": ""})) as rig:
        session = rig.session(capacity_s=12)
        with session:
            session.feed(stim)
            onset = None
            blocks = []
            while session.position < 10 * FS:
                b = session.read()
                blocks.append(b.start)
                if onset is None and session.position > len(stim) + 128:
                    loud = np.flatnonzero(np.abs(b.ear) > 0.05)
                    if loud.size:
                        onset = b.start + int(loud[0])
                        session.schedule(clip, session.position + FS // 4)
            cap = session.stop()
        dut = rig.dut
    assert blocks == list(range(0, len(blocks) * 1024, 1024))  # contiguous indices
    assert onset is not None
    barge, stop = dut.first("barge_in"), dut.first("reply_stop")
    assert stop - barge == round(0.2 * FS)
    # Nothing of the reply reaches the ear after the cut (plus the path and the room tail).
    after = int(stop + rig.path_delay_samples("dut_to_ear") + 0.35 * FS)
    assert np.max(np.abs(cap.ear[after : after + FS // 2])) < 0.02


def test_scheduling_in_the_past_is_refused():
    with open_rig("sim") as rig, rig.session(capacity_s=2) as s:
        s.read()
        with pytest.raises(SessionError, match="scheduled at sample 10 but the stream is at 1024"):
            s.schedule(np.ones(10), 10)
        with pytest.raises(SessionError, match="capacity"):
            s.schedule(np.ones(10), 2 * FS)


def test_dut_hearing_itself_interrupts_itself(speech):
    stim, _ = speech
    prof = sim_profile(sim__paths={"dut_echo_db": 0.0}, sim__noise={"bed": ""})
    with open_rig(prof) as rig:
        rig.play_and_record(stim, 6.0)
        dut = rig.dut
    start, barge = dut.first("reply_start"), dut.first("barge_in")
    assert barge is not None and 0 < barge - start < 0.2 * FS


def test_clock_drift_stretches_the_reply(speech):
    stim, _ = speech
    prof = sim_profile(sim__clock={"dut_drift_ppm": 300.0}, sim__noise={"bed": ""})
    with open_rig(prof) as rig:
        cap = rig.play_and_record(stim, 7.0)
        dut = rig.dut
    approx = dut.first("reply_start") + rig.path_delay_samples("dut_to_ear")
    fit = fit_drift(cap.ear, dut.reply, approx, FS)
    assert fit is not None
    # The DUT's clock runs fast, so its reply is shorter in harness time.
    assert fit.drift_ppm == pytest.approx(-300, abs=30)


def test_dropouts_are_zeroed_and_reported(speech):
    stim, _ = speech
    prof = sim_profile(sim__dropouts={"at": [[1.0, 20.0]]})
    with open_rig(prof) as rig:
        cap = rig.play_and_record(stim, 2.0)
    (x,) = cap.status.xruns
    assert (x.kind, x.sample_index) == ("dropout", FS)
    assert not np.any(cap.samples[FS : FS + 960])
    assert np.any(cap.ref[FS + 960 : FS + 2000])


def test_noise_bed_level_at_the_ear():
    prof = sim_profile(sim={"dut": "silent", "ear_noise_dbfs": -120.0})
    with open_rig(prof) as rig:
        cap = rig.play_and_record(np.zeros(10), 3.0)
    rms_db = 20 * np.log10(np.sqrt(np.mean(cap.ear[FS:].astype(float) ** 2)))
    assert rms_db == pytest.approx(-55, abs=1.5)


def test_a_dut_object_can_be_given():
    reply = np.ones(100, dtype=np.float32) * 0.5
    dut = ScriptedDut(reply, FS, trigger="fixed", at_s=0.5)
    prof = sim_profile(sim__room={"rt60_s": 0.0}, sim__noise={"bed": ""})
    with SimRig(prof, dut=dut) as rig:
        cap = rig.play_and_record(np.zeros(10), 1.0)
        assert rig.dut is dut
    expected = 0.5 * FS + rig.path_delay_samples("dut_to_ear")
    onset = np.flatnonzero(np.abs(cap.ear) > 0.1)[0]
    assert abs(onset - expected) <= 2


def test_sim_profile_loads():
    assert load_profile("sim").table("sim")["dut"] == "scripted"


def test_speech_resuming_before_the_reply_cancels_it():
    fs = FS
    burst = (0.3 * np.sin(2 * np.pi * 300 * np.arange(fs // 2) / fs)).astype(np.float32)
    dut = ScriptedDut(np.ones(100, dtype=np.float32), fs, delay_ms=600, hangover_ms=300)
    mic = np.concatenate([burst, np.zeros(int(0.4 * fs)), burst, np.zeros(2 * fs)])
    for i in range(0, len(mic), 1024):
        dut.push(mic[i : i + 1024])
        dut.pull(len(mic[i : i + 1024]))
    names = [e for e, _ in dut.events]
    assert names[:4] == ["speech_end", "reply_start", "resumed", "reply_cancelled"]
    second_end = [t for e, t in dut.events if e == "speech_end"][1]
    assert dut.first("reply_start") == second_end + round(0.6 * fs)


class _PlainDut:
    """No `realtime` attribute: the sim must pace it to the wall clock."""

    def push(self, samples):
        pass

    def pull(self, n):
        return np.zeros(n, dtype=np.float32)


def test_a_dut_without_realtime_false_is_paced_to_the_wall_clock():
    with SimRig(sim_profile(sim__noise={"bed": ""}), dut=_PlainDut()) as rig:
        t0 = time.monotonic()
        rig.play_and_record(np.zeros(10, dtype=np.float32), 0.5)
        assert time.monotonic() - t0 >= 0.45
