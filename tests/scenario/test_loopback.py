"""The turn runner on the JACK loopback rig (a real jackd started by the rig): the reference
agent as a subprocess, external agents through cmd: and jack:, the delay bot's end-to-end
TTFA to within 1 ms, and a DUT that never answers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.rigs import open_rig
from harness.scenario import DutError, TurnPlan, open_dut, parse_dut_spec, run_turn
from harness.scenario.turn import _audio
from tests.rigs.helpers import load_delay_dut
from tests.scenario.conftest import needs_jackd

pytestmark = needs_jackd

REPO = Path(__file__).resolve().parents[2]
BOT = REPO / "examples" / "delay_bot.py"
FS = 48000
PERIOD = 1024


@pytest.fixture(scope="module")
def rig():
    with open_rig("loopback", use_cache=False) as rig:
        yield rig


def assert_delay(rig, dut, plan, out_dir: Path, delay_ms: float):
    """The bot's TTFA is its delay to within 1 ms on a turn without late JACK cycles (played
    up to 3 times for one). When every attempt had some, a cycle JACK skipped the bot for
    (the harness's callback before it in the graph was late) costs the bot, which counts
    its own periods, one period of input: then TTFA is the delay plus up to a period per
    late cycle (whole periods, seen in CI: 721, 743, 764 ms for 700; a fraction of one
    when the lost period held the end of speech). Returns the turn judged."""
    for attempt in range(1, 4):
        r = run_turn(rig, dut, plan, out_dir=out_dir / f"attempt{attempt}")
        assert r.timeout is None and r.metrics.discard is None, (r.name, r.metrics.discard)
        if not r.xruns:
            assert r.metrics.ttfa_ms == pytest.approx(delay_ms, abs=1.0), r.name
            return r
    late_ms = r.metrics.ttfa_ms - delay_ms
    assert -1.0 < late_ms < r.xruns * PERIOD / FS * 1000 + 1.0, (r.name, late_ms, r.xruns)
    return r


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_delay_bot_ttfa_equals_its_configured_delay(rig, corpus, tmp_path):
    """cmd: starts the bot (own process group), finds its new client and wires it. The bot
    ends speech by the corpus labeller's rule and replies exactly 700 ms later on its own
    sample clock, which on the loopback graph is the ref's clock (mouth -> bot and
    bot -> ear together take the one period that mouth -> ref takes): TTFA = 700 ms."""
    spec = parse_dut_spec(f'cmd:"{sys.executable} {BOT} --delay-ms 700"')
    ids = ["sq01_time", "sq03_timer", "sq09_rain_tomorrow"]  # 48 kHz and 16 kHz sources
    with open_dut(spec, rig, log_dir=tmp_path / "dut") as dut:
        pid = dut.pid
        assert dut.name == "delay-bot" and dut.info["kind"] == "cmd"
        for u in ids:
            assert_delay(rig, dut, TurnPlan(stimulus=corpus.by_id(u)), tmp_path / u, 700.0)
    assert not _alive(pid), "the bot survived close()"
    log = (tmp_path / "dut" / "dut.stdout.log").read_text()
    replies = re.findall(r"reply: speech_end=(\d+) reply_at=(\d+) delay_samples=(\d+)$", log, re.M)
    assert len(replies) >= len(ids)  # one per attempt
    assert all(int(at) - int(end) == int(d) == 33600 for end, at, d in replies)


def test_jack_client_dut_is_wired_by_name(rig, corpus, tmp_path):
    """A bot the user started themselves on the rig's server, wired with jack:CLIENT."""
    env = dict(os.environ, TYMPAN_JACK_SERVER=rig.server_name)
    argv = [sys.executable, str(BOT), "--delay-ms", "450", "--name", "my-bot"]
    bot = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert bot.stdout.readline().startswith("ready: my-bot:in my-bot:out")
        with open_dut("jack:my-bot", rig) as dut:
            question = TurnPlan(stimulus=corpus.by_id("sq02_weather_today"))
            r = assert_delay(rig, dut, question, tmp_path, 450.0)
            # A barge-in on the real-time stream: the clip's speech start lands exactly at
            # live onset + 500 ms, and the recording goes on through the bot's answer.
            clip_u = corpus.by_id("bi03_hold_on")
            plan = TurnPlan(
                stimulus=corpus.by_id("sq01_time"), barge_in=clip_u, barge_in_offset_ms=500.0
            )
            b = run_turn(rig, dut, plan, out_dir=tmp_path / "barge")
        assert b.timeout is None and b.notes == [], (b.timeout, b.notes)
        assert b.barge_in_speech_at_sample == b.live_onset_sample + round(0.5 * FS)
        start = round(clip_u.speech_start_s * FS)
        at = b.barge_in_speech_at_sample
        clip = _audio(clip_u, FS)
        np.testing.assert_array_equal(b.capture.mouth[at : at + 4800], clip[start : start + 4800])
        # The ref hears it one period later, bit-exact (a digital loop).
        np.testing.assert_array_equal(
            b.capture.ref[at + PERIOD : at + PERIOD + 4800], clip[start : start + 4800]
        )
        # The bot answered the clip 450 ms after its end: that answer is in the capture.
        end = at + round(clip_u.speech_end_s * FS) - start  # the clip's speech end
        answer = end + round(0.45 * FS)
        assert b.capture.samples.shape[0] > answer + PERIOD + round(0.5 * FS)
        # (a period later for each cycle JACK skipped the bot for: look in the next 0.4 s)
        assert np.max(np.abs(b.capture.ear[answer + PERIOD : answer + round(0.4 * FS)])) > 0.2
        assert r.dut_info == {"kind": "jack", "client": "my-bot"}
        # close() unwired it: the rig's ear no longer hears the bot.
        ear = rig.client.get_port_by_name(f"{rig.client_name}:ear_in")
        assert not rig.client.get_all_connections(ear)
    finally:
        bot.terminate()
        bot.wait(10)


def test_reference_agent_subprocess_one_turn(rig, corpus, tmp_path):
    """`python -m device.agent.live` on the rig's server; its telemetry is tailed from its
    events file and mapped onto the capture timeline."""
    with open_dut("reference", rig, log_dir=tmp_path / "dut") as dut:
        pid = dut.pid
        assert dut.info["kind"] == "reference" and dut.info["client"] == dut.name
        r = run_turn(rig, dut, TurnPlan(stimulus=corpus.by_id("sq01_time")), out_dir=tmp_path / "t")
    assert not _alive(pid)
    assert r.timeout is None and r.metrics.discard is None, (r.timeout, r.metrics.discard)
    assert 100.0 < r.metrics.ttfa_ms < 3000.0
    assert r.capture.clock is not None and r.capture.clock.paced
    assert r.capture.clock.residual_us < 2000 or r.xruns  # an xrun may step the clock
    play = r.first_event("playback_start")
    assert play is not None, [e["event"] for e in r.events]
    # The agent's JACK adapter plays what it pulls in the same period (BlockPump); the graph
    # puts one period before the rig's ear: about one period (give or take where in its block
    # the first sound falls and the callback's wake-up jitter), plus the agent's 20 ms frame.
    # The agent stamps the event when its callback runs: on a busy machine that callback can
    # wait for its process's GIL, and the stamp lands up to a few periods after the sound.
    lead_s = r.metrics.reply_onset_s - play["t_s"]
    assert -0.1 < lead_s < 0.3, lead_s
    assert (tmp_path / "dut" / "events.jsonl").is_file()


def test_silent_jack_client_times_out_without_hanging(rig, corpus, tmp_path):
    dut_mod = load_delay_dut()
    with (
        dut_mod.DelayDut("mute", 0, servername=rig.server_name, gain=0.0),
        open_dut("jack:mute", rig) as dut,
    ):
        plan = TurnPlan(stimulus=corpus.by_id("sq01_time"), reply_timeout_s=1.5)
        r = run_turn(rig, dut, plan, out_dir=tmp_path)
    assert r.timeout is not None and r.timeout.startswith("no reply within 1.5 s")
    assert r.metrics.discard.startswith("no_reply")
    assert r.paths["capture_wav"].is_file()
    assert not np.any(r.capture.ear)
    # It stopped listening 1.5 s (of the graph's time) after the question, well before the
    # longest reply it would otherwise wait for; the wall clock only has to show no hang
    # (a starved machine slows the synchronous graph down).
    assert r.audio_s < plan.stimulus.duration_s + 1.5 + 0.5, r.audio_s
    assert r.wall_s < r.audio_s + 30.0


def test_a_command_that_dies_is_reported_with_its_stderr(rig, tmp_path):
    code = "import sys; sys.stderr.write('no sound card here\\n'); sys.exit(3)"
    spec = parse_dut_spec(f'cmd:"{sys.executable} -c \\"{code}\\""')
    with pytest.raises(DutError) as err:
        open_dut(spec, rig, log_dir=tmp_path, start_timeout_s=10)
    msg = str(err.value)
    assert "exited with status 3" in msg and "no sound card here" in msg
    assert str(tmp_path / "dut.stderr.log") in msg


def test_scripted_is_refused_on_loopback(rig):
    with pytest.raises(Exception, match="'scripted' is the sim rig's own DUT"):
        open_dut("scripted", rig)


def test_a_whole_call_in_one_capture(rig, corpus, tmp_path):
    """Three turns back to back in one session (run_call): one capture, every turn measured
    the way a recorded call is. The delay bot answers each exactly 700 ms after its speech
    end, and the turns after the first have the previous reply before them (context)."""
    from harness.scenario import run_call

    spec = parse_dut_spec(f'cmd:"{sys.executable} {BOT} --delay-ms 700"')
    ids = ["sq01_time", "sq09_rain_tomorrow", "sq03_timer"]
    plans = [TurnPlan(stimulus=corpus.by_id(u)) for u in ids]
    with open_dut(spec, rig, log_dir=tmp_path / "dut") as dut:
        for attempt in range(1, 4):
            call = run_call(rig, dut, plans, out_dir=tmp_path / f"call{attempt}")
            if not call.capture.status.xrun_count:
                break
    assert call.paths["capture_wav"].exists() and call.paths["turns_jsonl"].exists()
    assert len(call.turns) == 3
    ends, lags = [], []
    for i, t in enumerate(call.turns):
        m = t.metrics
        assert t.timeout is None and m.discard is None, (i, t.timeout, m.discard)
        lags.append(m.speech_end_s * FS - t.speech_end_sample)
        if not call.capture.status.xrun_count:
            assert m.ttfa_ms == pytest.approx(700.0, abs=1.0), (i, m.ttfa_ms)
        else:  # a late JACK cycle costs the bot up to a period per cycle (assert_delay)
            assert 699.0 < m.ttfa_ms < 700.0 + call.capture.status.xrun_count * PERIOD / FS * 1e3
        if i:
            assert m.context_segments, (i, m.segments)  # the previous reply
        ends.append(m.speech_end_s)
    assert ends == sorted(ends)
    # Each stimulus was found where it was scheduled, to the sample: the ref lags the mouth
    # timeline by the graph's one period, the same for every turn.
    assert all(abs(lag - PERIOD) < 1.5 for lag in lags), lags


def test_a_stalled_stream_raises_turn_timeout_with_the_capture_saved(rig, corpus, tmp_path):
    """The rig's JACK client stops processing mid-turn (deactivated from another thread):
    no block arrives any more, and the turn ends with TurnTimeout instead of hanging.
    Last in this module: it leaves the module's rig deactivated."""
    import threading

    from harness.scenario import TurnTimeout

    stall = threading.Timer(1.0, rig.client.deactivate)
    stall.start()
    try:
        with pytest.raises(TurnTimeout, match=r"stalled at sample \d+") as err:
            run_turn(rig, None, TurnPlan(stimulus=corpus.by_id("sq01_time")), out_dir=tmp_path)
    finally:
        stall.join()
    assert str(tmp_path / "capture.wav") in str(err.value)
    assert (tmp_path / "capture.wav").stat().st_size > 0
