"""Real agents as they ship: a Pipecat bot and a LiveKit agent, unmodified, under test on the
JACK loopback through their own audio transports (`pipecat:` / `livekit:` DUTs), their own
latency figures beside what tympan heard.

Each framework runs in its own virtualenv (`make setup`: scripts/setup_pipecat.sh,
scripts/setup_livekit.sh). Without it the test is skipped with the reason, except under
``TYMPAN_REQUIRE_FRAMEWORKS=1`` (what ``make test`` sets): there a missing environment fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.session import HarnessSession, RunSettings
from tests.jack_guard import (  # noqa: F401 (autouse fixtures, shared)
    no_orphan_jackd,
    no_orphan_jackd_at_end,
)

ROOT = Path(__file__).resolve().parents[2]
BOTS = {
    "pipecat": (ROOT / "examples" / "pipecat_bot" / "bot.py", "loopback"),
    # LiveKit's console mode as it ships: it opens its streams at 24 kHz, so JACK runs at 24
    "livekit": (
        ROOT / "examples" / "livekit_agent" / "agent.py",
        str(ROOT / "examples" / "livekit_agent" / "loopback-24k.toml"),
    ),
}
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd (jackd2) missing"),
]


def framework_python(kind: str) -> Path:
    python = ROOT / f".venv-{kind}" / "bin" / "python"
    if not python.is_file():
        why = f"{python} missing: scripts/setup_{kind}.sh (make setup) makes it"
        if os.environ.get("TYMPAN_REQUIRE_FRAMEWORKS") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return python


@pytest.mark.parametrize("kind", sorted(BOTS))
def test_a_framework_bot_is_heard_beside_its_own_figures(kind, tmp_path):
    """Three turns (two questions, one interrupted at 500 ms): each measured at the ear; the
    framework's own figures arrived over the observer; what a caller heard is later than
    what the framework says, by a plausible amount (its audio output path at least, and no
    more than a few seconds)."""
    framework_python(kind)
    bot, rig = BOTS[kind]
    settings = RunSettings(rig=rig, dut=f"{kind}:{bot}", out_dir=tmp_path)
    with HarnessSession(settings) as session:
        turns = [
            session.turn("sq01_time"),
            session.turn("sq13_everest", barge_in="bi01_stop", barge_in_offset_ms=500.0),
            session.turn("sq10_paris"),
        ]
        hello = session.bridge.hello
    assert hello is not None and hello.firmware == f"{kind}-observer", hello
    for t in turns:
        name = t.result.name
        assert t.metrics.discard is None and t.metrics.ttfa_ms is not None, (name, t.metrics)
        reported = t.stages.stages_ms.get("self_reported_ttfa_ms")
        gap = t.stages.stages_ms.get("heard_minus_reported_ms")
        assert reported is not None and gap is not None, (name, t.stages.notes)
        assert 0.0 < gap < 3000.0, (name, t.metrics.ttfa_ms, reported)
    interrupted = turns[1]
    assert interrupted.metrics.stop_latency_ms is not None, interrupted.metrics
    assert any(e.get("event") == "barge_in" for e in interrupted.result.events)


def test_a_missing_framework_python_says_how_to_make_it(monkeypatch):
    from harness.scenario.duts import DutError
    from harness.scenario.duts import framework_python as find

    with pytest.raises(DutError, match="no Python for pipecat bots at /nowhere/python"):
        find("pipecat", "/nowhere/python")
    monkeypatch.setenv("TYMPAN_LIVEKIT_PYTHON", "/nowhere/lk")
    with pytest.raises(DutError, match=r"at /nowhere/lk; .*environment variable"):
        find("livekit", None)


def test_the_pipecat_examples_reply_table_is_the_reference_agents():
    """examples/pipecat_bot/replies.py is a copy (the bot knows nothing of tympan), so that its
    answers carry the corpus's reply keywords: it must stay the reference agent's table."""
    import importlib.util

    from device.agent.engines import llm

    path = ROOT / "examples" / "pipecat_bot" / "replies.py"
    spec = importlib.util.spec_from_file_location("pipecat_bot_replies", path)
    assert spec is not None and spec.loader is not None
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    assert copy.REPLIES == llm.REPLIES
    assert copy.QUIET_PHRASES == llm.QUIET_PHRASES
    assert copy.DEFAULT_REPLY == llm.DEFAULT_REPLY
    for said in ("How tall is Mount Everest?", "Stop.", "Remind me to hold on at 5", "hmm"):
        assert copy.scripted_reply(said) == llm.scripted_reply(said), said
        assert copy.tokenize(copy.scripted_reply(said)) == llm.tokenize(llm.scripted_reply(said))
