"""The reference agent with its wake chime (``reference:earcon=on``) on the JACK loopback:
sound at the ear during the question that is neither noise nor the reply. The turn must be
measured as without it: a TTFA, no discard, the chime reported as context."""

from __future__ import annotations

import pytest

from harness.rigs import open_rig
from harness.scenario import TurnPlan, open_dut, parse_dut_spec, run_turn
from tests.scenario.conftest import needs_jackd

pytestmark = needs_jackd


def test_earcon_before_the_question_is_context_not_reply(corpus, tmp_path):
    spec = parse_dut_spec("reference:earcon=on")
    with (
        open_rig("loopback", use_cache=False) as rig,
        open_dut(spec, rig, log_dir=tmp_path / "dut") as dut,
    ):
        assert dut.info.get("earcon") == "on"
        for u in ("sq01_time", "sq05_jazz"):
            r = run_turn(rig, dut, TurnPlan(stimulus=corpus.by_id(u)), out_dir=tmp_path / u)
            m = r.metrics
            assert r.timeout is None, (u, r.timeout)
            assert m.discard is None, (u, m.discard)
            assert 100.0 < m.ttfa_ms < 3000.0, (u, m.ttfa_ms)
            chime = r.first_event("earcon")
            assert chime is not None, [e["event"] for e in r.events]
            # The chime (150 ms) is at the ear during the question, ended before its end.
            assert m.context_segments, (u, m.segments)
            start, end = m.context_segments[0]
            assert m.stimulus_onset_s < start < end < m.speech_end_s, (u, m.context_segments)
            assert 0.08 < end - start < 0.4, (u, m.context_segments)
            assert m.segments[0][0] == pytest.approx(m.reply_onset_s)
