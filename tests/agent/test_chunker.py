"""The clause chunker: examples from the issue and hypothesis properties."""

from __future__ import annotations

import itertools
import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from device.agent.chunker import ClauseChunker, chunk_text
from device.agent.engines.llm import tokenize


def texts(chunks) -> list[str]:
    return [c.text.strip() for c in chunks]


# The examples below are about sentence, clause and number rules: the first chunk gets the
# same limits as the others there, so the early first-chunk flush does not get in the way.
SAME_LIMITS = {"first_min_tokens": 10, "first_max_tokens": 25}


def test_the_first_chunk_is_flushed_early():
    """Defaults: a comma after two tokens, or three words, start the speech."""
    assert texts(chunk_text(tokenize("The capital of France is Paris. It is big."))) == [
        "The capital of",
        "France is Paris.",
        "It is big.",
    ]
    chunks = chunk_text(tokenize("Okay, I set a timer for ten minutes."))
    assert texts(chunks) == ["Okay,", "I set a timer for ten minutes."]
    assert [c.reason for c in chunks] == ["clause", "sentence"]
    # Numbers are still never split, even by the early flush.
    assert texts(chunk_text(tokenize("It is 72.5 degrees."))) == ["It is", "72.5 degrees."]


def test_sentences_are_chunks():
    tokens = tokenize(
        "The weather in San Francisco is currently 58 degrees and foggy. Tomorrow will be sunny."
    )
    chunks = chunk_text(tokens, **SAME_LIMITS)
    assert texts(chunks) == [
        "The weather in San Francisco is currently 58 degrees and foggy.",
        "Tomorrow will be sunny.",
    ]
    assert [c.reason for c in chunks] == ["sentence", "sentence"]


def test_numbers_abbreviations_and_decimals_are_not_split():
    tokens = tokenize("It is 2.30 now. Dr. Smith, e.g. the dentist, charges 1,000 at 3:45 today.")
    assert texts(chunk_text(tokens, **SAME_LIMITS)) == [
        "It is 2.30 now.",
        "Dr. Smith, e.g. the dentist,",  # 11 tokens ("Dr", ".", ...): a clause
        "charges 1,000 at 3:45 today.",
    ]
    assert texts(chunk_text(tokenize("It is 72°F. Nice."), **SAME_LIMITS)) == [
        "It is 72°F.",
        "Nice.",
    ]


def test_decimal_waits_for_the_next_token():
    chunker = ClauseChunker(**SAME_LIMITS)
    assert chunker.push("It") == [] and chunker.push(" costs") == []
    assert chunker.push(" 2") == [] and chunker.push(".") == []  # "2." could be "2.30"
    assert chunker.push("30") == []
    assert chunker.push(" now") == []
    [chunk] = chunker.push(".")
    assert chunk.text == "It costs 2.30 now." and chunk.tokens == 7


def test_comma_needs_min_tokens_and_the_first_chunk_needs_fewer():
    tokens = tokenize("Sure, I can do that, and then I will also call your mother, right away.")
    chunks = chunk_text(tokens, min_tokens=10, first_min_tokens=4, first_max_tokens=12)
    assert texts(chunks) == [
        "Sure, I can do that,",  # first chunk: a comma after >= 4 tokens
        "and then I will also call your mother, right away.",  # 8 tokens < 10: no cut
    ]
    assert chunks[0].reason == "clause"


def test_max_tokens_cuts_at_a_word_boundary():
    words = " ".join(["blue"] * 30)
    chunks = chunk_text(tokenize(words), max_tokens=10, first_max_tokens=10)
    assert [c.tokens for c in chunks[:-1]] == [9, 9, 9]  # cut before the 10th word
    assert all(c.reason == "max_tokens" for c in chunks[:-1])
    assert chunks[-1].reason == "final"


# ---------------------------------------------------------------------------- properties

NUMBERS = st.sampled_from(["2.30", "1,000", "3:45", "72°F", "98.6", "10", "0.5", "12,500.75"])
WORDS = st.sampled_from(["the", "sky", "is", "blue", "Dr.", "e.g.", "p.m.", "J.", "and", "it"])
PUNCT = st.sampled_from(["", "", "", ".", ",", "?", "!", ";", ":"])


@st.composite
def sentences(draw) -> str:
    parts = draw(st.lists(st.tuples(st.one_of(WORDS, NUMBERS), PUNCT), min_size=1, max_size=40))
    return " ".join(w + p for w, p in parts)


@st.composite
def random_split(draw, text: str) -> list[str]:
    """Cut ``text`` at arbitrary character positions (tokens of any shape)."""
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=30))))
    bounds = [0, *[c for c in cuts if 0 < c < len(text)], len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


NUMBER_RE = re.compile(r"\d+(?:[.,:]\d+)*(?:°F)?")
LIMITS = st.fixed_dictionaries(
    {
        "min_tokens": st.integers(1, 12),
        "max_tokens": st.integers(1, 30),
        "first_min_tokens": st.integers(1, 6),
        "first_max_tokens": st.integers(1, 15),
    }
)


def boundaries(chunks) -> list[int]:
    pos, out = 0, []
    for c in chunks[:-1]:
        pos += len(c.text)
        out.append(pos)
    return out


@settings(max_examples=300, deadline=None)
@given(data=st.data(), text=sentences(), limits=LIMITS)
def test_text_and_order_preserved_and_numbers_never_split(data, text, limits):
    tokens = data.draw(random_split(text))
    chunks = chunk_text(tokens, **limits)
    assert "".join(c.text for c in chunks) == "".join(tokens) == text
    assert sum(c.tokens for c in chunks) == len(tokens)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    starts = list(itertools.accumulate(len(t) for t in tokens))  # where token n+1 starts
    for chunk, b in zip(chunks, boundaries(chunks), strict=False):
        for m in NUMBER_RE.finditer(text):
            assert not m.start() < b < m.end(), f"cut inside {m.group()!r} at {b}: {chunks}"
        if _after_abbreviation(text, b):
            # only the hard cap may cut there, and only when the buffer held no other place
            # to cut (e.g. "Dr. the" in one-character tokens with max_tokens = 1): no token
            # in the chunk began a word after a plain one
            assert chunk.reason == "max_tokens", f"cut at {b}: {chunks}"
            others = [
                p
                for p, t in zip(starts, tokens[1:], strict=False)
                if b - len(chunk.text) < p < b and t[:1].isspace()
            ]
            assert all(_after_abbreviation(text, p) for p in others), f"cut at {b}: {chunks}"


def _after_abbreviation(text: str, at: int) -> bool:
    """Is the word just before `at` an abbreviation or an initial ("Dr.", "e.g.", "J.")?"""
    before = text[:at].rstrip().rsplit(None, 1)[-1].lower() if text[:at].strip() else ""
    initial = len(before) == 2 and before[0].isalpha() and before[1] == "."
    return before in {"dr.", "e.g."} or initial


@settings(max_examples=300, deadline=None)
@given(text=sentences(), limits=LIMITS)
# Abbreviations up to the hard cap, then a comma: the cap must win over the clause.
@example(
    text="the e.g. e.g.,",
    limits={"min_tokens": 1, "max_tokens": 2, "first_min_tokens": 1, "first_max_tokens": 1},
)
def test_bounds_hold_on_word_tokens(text, limits):
    tokens = tokenize(text)
    chunks = chunk_text(tokens, **limits)
    assert "".join(c.text for c in chunks) == text
    for c in chunks:
        limit = limits["first_max_tokens"] if c.index == 0 else limits["max_tokens"]
        # a chunk may pass its limit only by the tokens of one word (e.g. "12,500.75")
        assert c.tokens <= max(limit, 1) + 6, c
        if c.reason == "clause":
            minimum = limits["first_min_tokens"] if c.index == 0 else limits["min_tokens"]
            assert c.tokens >= minimum
        if c.reason == "sentence":
            assert c.text.rstrip()[-1] in ".?!;"
        if c.reason != "final":
            assert c.text.strip()
