"""The pause trap: questions with a mid-sentence pause ("Set a timer for ... twenty
minutes"). An agent that takes the pause for the end of the question cuts the user off."""

from __future__ import annotations

import pytest

from harness.assertions import assert_checks


@pytest.mark.corpus(category="pause", limit=3)
def test_pause_is_not_the_end(turn, utterance):
    t = turn(utterance)
    assert_checks(t.checks_of("turn-taking"), t)
