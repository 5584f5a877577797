"""The scripted LLM's reply table: every corpus question gets the reply carrying its
keywords, a quiet phrase said on its own is met with silence, and a quiet phrase inside a
request (an ASR slip) does not silence the request."""

from __future__ import annotations

import pytest

from device.agent.engines.llm import DEFAULT_REPLY, QUIET_PHRASES, scripted_reply
from harness.corpus import Corpus


def test_every_question_of_the_corpus_is_answered_with_its_keywords():
    corpus = Corpus.load()
    asked = [
        u
        for u in corpus.utterances
        if u.category in ("short_question", "long_question", "pause") and u.transcript
    ]
    assert asked
    for u in asked:
        reply = scripted_reply(u.transcript).lower()
        assert reply and reply != DEFAULT_REPLY.lower(), u.id
        missing = [k for k in u.reply_keywords if k.lower() not in reply]
        assert not missing, (u.id, u.transcript, reply, missing)


@pytest.mark.parametrize("phrase", QUIET_PHRASES)
def test_a_quiet_phrase_on_its_own_is_met_with_silence(phrase):
    assert scripted_reply(f"{phrase.capitalize()}.") == ""
    assert scripted_reply(f"Oh, {phrase}, please!") == ""


def test_a_quiet_phrase_inside_a_request_does_not_silence_it():
    # faster-whisper heard "Remind me to call mom at 5" as this on a loopback turn whose
    # input lost JACK periods: the agent must still answer the reminder
    assert "remind you" in scripted_reply("Remind me to hold on at 5.")
    assert "fifteen" in scripted_reply("Wait a second, make it fifteen minutes.")
