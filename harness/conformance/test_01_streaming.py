"""Streaming: a long reply is cut on clause boundaries and spoken while the LLM still
generates, the reply's queues apply back-pressure (the longest reply of the corpus: judged
from how they filled), the event loop never stalls, and the LLM waits for the end of the
user's utterance."""

from __future__ import annotations

import pytest

from harness.assertions import assert_checks

LONG_QUESTIONS = pytest.mark.corpus(category="long_question", limit=2)
LONG_REPLY = "lq07_sky_blue"  # about six sentences: more than the queues of a bounded agent hold


def _of(turn, *ids: str) -> list:
    """The turn's checks with these ids (`Check.id`), and the contract's checks that could
    not apply (no telemetry: they say so). Never nothing: a renamed check must not make a
    test pass by selecting no check at all."""
    contracts = {i.split(".", 1)[0] for i in ids}
    found = [
        c for c in turn.checks if c.id in ids or (not c.applicable and c.contract in contracts)
    ]
    assert found, f"expected checks {ids}, the turn has {sorted(c.id for c in turn.checks)}"
    return found


@LONG_QUESTIONS
def test_clause_chunking(turn, utterance):
    t = turn(utterance)
    rules = (
        "chunking.no_chunk_below_the_minimum",
        "chunking.chunks_end_on_a_clause_boundary_or_at_max_tokens",
        "chunking.first_chunk_reaches_tts_before_the_llm_is_done",
    )
    assert_checks(_of(t, *rules), t)


def test_back_pressure(turn):
    """The longest reply of the corpus, so its queues fill: judged from how they behaved."""
    t = turn(LONG_REPLY)
    checks = _of(t, "chunking.tts_queue_bounded_back_pressure")
    judged = [c for c in checks if c.applicable]
    if not judged:
        pytest.skip("back-pressure not judged: " + "; ".join(c.message for c in checks))
    assert_checks(judged, t)


@LONG_QUESTIONS
def test_no_stalls(turn, utterance):
    t = turn(utterance)
    rules = ("chunking.no_event_loop_stall", "chunking.no_audible_stall_inside_the_reply")
    assert_checks(_of(t, *rules), t)


@LONG_QUESTIONS
def test_llm_waits_for_end_of_utterance(turn, utterance):
    t = turn(utterance)
    assert_checks(_of(t, "turn-taking.llm_waits_for_the_end_of_utterance"), t)
    assert_checks(_of(t, "turn-taking.a_reply_is_heard"), t)
