"""Barge-in: the user interrupts the reply at three offsets after it became audible. The
agent stops within the budget, no stale audio of the old reply plays afterwards, it cancels
its LLM and TTS work, old and new replies never overlap, and it answers the interruption
(or, told to stop, stays quiet)."""

from __future__ import annotations

import pytest

from harness.assertions import assert_checks

QUESTION = "sq13_everest"  # a reply of about four seconds: room to interrupt at 1 s
CASES = [
    pytest.param(200.0, "bi08_actually_weather", id="200ms-actually_weather"),
    pytest.param(500.0, "bi01_stop", id="500ms-stop"),
    pytest.param(1000.0, "bi08_actually_weather", id="1000ms-actually_weather"),
]


@pytest.mark.parametrize(("offset_ms", "clip"), CASES)
def test_barge_in(turn, offset_ms, clip):
    t = turn(QUESTION, barge_in=clip, barge_in_offset_ms=offset_ms)
    assert_checks(t.checks_of("cancellation"), t)
