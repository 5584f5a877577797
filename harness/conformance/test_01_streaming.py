"""Streaming: a long reply is cut on clause boundaries and spoken while the LLM still
generates, the TTS queue is bounded, the event loop never stalls, and the LLM waits for the
end of the user's utterance."""

from __future__ import annotations

import pytest

from harness.assertions import assert_checks

LONG_QUESTIONS = pytest.mark.corpus(category="long_question", limit=2)


@LONG_QUESTIONS
def test_clause_chunking(turn, utterance):
    t = turn(utterance)
    rules = (
        "no chunk below the minimum",
        "chunks end on a clause boundary or at max tokens",
        "first chunk reaches TTS before the LLM is done",
    )
    assert_checks([c for c in t.checks if c.name in rules], t)


@LONG_QUESTIONS
def test_back_pressure(turn, utterance):
    t = turn(utterance)
    assert_checks([c for c in t.checks if c.name == "TTS queue bounded (back-pressure)"], t)


@LONG_QUESTIONS
def test_no_stalls(turn, utterance):
    t = turn(utterance)
    rules = ("no event-loop stall", "no audible stall inside the reply")
    assert_checks([c for c in t.checks if c.name in rules], t)


@LONG_QUESTIONS
def test_llm_waits_for_end_of_utterance(turn, utterance):
    t = turn(utterance)
    assert_checks([c for c in t.checks if c.name == "LLM waits for the end of utterance"], t)
    assert_checks([c for c in t.checks if c.name == "a reply is heard"], t)
