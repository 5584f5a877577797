"""The end-of-utterance hold: a transcript that sounds unfinished waits for more silence."""

from __future__ import annotations

import pytest

from device.agent.pipeline import sounds_unfinished
from harness.corpus import Corpus


@pytest.mark.parametrize(
    "text",
    [
        "Set a timer for",  # ends on a preposition
        "What's the weather going to be like in?",
        "Play the song.",  # three words
        "Remind me to...",  # trails off
        "Remind me to... Remind Me too. Rem",  # tiny whisper on a cut-off sentence
    ],
)
def test_unfinished(text):
    assert sounds_unfinished(text, 3)


def test_a_whole_question_with_an_asr_echo_is_finished():
    # tiny.en repeats the end of whole questions: no reason to wait
    assert not sounds_unfinished("How many ounces are in a pound? How many ouncees are", 3)


def test_every_corpus_question_counts_as_finished():
    """Whole questions are answered after the short silence: the hold costs them nothing."""
    questions = [
        u
        for u in Corpus.load()
        if u.category in ("short_question", "long_question", "pause") and u.transcript
    ]
    held = [u.id for u in questions if sounds_unfinished(u.transcript, 3)]
    assert held == []
    assert not sounds_unfinished("", 3)
