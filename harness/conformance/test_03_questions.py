"""Short questions: every one gets a reply, and the LLM is asked only once the user is done.
(Their TTFA percentiles are judged with every other turn in test_05_budgets.)"""

from __future__ import annotations

import pytest

from harness.assertions import assert_checks


@pytest.mark.corpus(category="short_question", limit=6)
def test_question_is_answered(turn, utterance):
    t = turn(utterance)
    assert_checks(t.checks_of("turn-taking"), t)
