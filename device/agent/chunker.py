"""The clause buffer: LLM tokens in, speakable chunks out.

`ClauseChunker` is pure and synchronous: `push` one token, get back the chunks it completed;
`finish` at the end of the reply. A chunk ends

- at a sentence end (``. ? ! ;``),                                       reason ``sentence``
- at a comma or colon, once the chunk holds at least ``min_tokens``,     reason ``clause``
- when it reaches ``max_tokens``, at the last word boundary before it,   reason ``max_tokens``
- at the end of the reply,                                               reason ``final``

The first chunk of a reply is flushed earlier: it uses ``first_min_tokens`` and
``first_max_tokens`` (default 2 and 4 instead of 10 and 25), so "Okay," or the first three
words of a longer sentence ("The capital of" | "France is Paris.") go to TTS on their own.
Synthesis time grows with the text, so a short first chunk is heard sooner, and the rest of
the sentence is generated and synthesised while it plays. The cost is prosody on the first
chunk only (a falling cadence and a short pause where the sentence goes on).

Chunks are cut only between tokens, and never inside a number ("2.30", "1,000", "3:45",
"72°F"), after a common abbreviation ("e.g.", "Dr.") or after a single-letter initial. A full
stop or comma right after a digit is ambiguous until the next token arrives ("2." + "30"), so
that decision waits one token. Concatenating the chunks' ``text`` gives back the tokens
exactly (whitespace included); strip it before synthesis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# A forced (max_tokens) cut avoids the word after an abbreviation or initial; when the buffer
# holds no other place to cut, it gives up on that after this many tokens past the limit.
_FORCED_SLACK = 6

Reason = Literal["sentence", "clause", "max_tokens", "final"]

ABBREVIATIONS: frozenset[str] = frozenset(
    {
        "e.g.",
        "i.e.",
        "vs.",
        "dr.",
        "mr.",
        "mrs.",
        "ms.",
        "prof.",
        "st.",
        "jr.",
        "sr.",
        "no.",
        "approx.",
        "fig.",
        "mt.",
        "ft.",
        "oz.",
        "lb.",
        "lbs.",
        "min.",
        "u.s.",
        "a.k.a.",
    }
)
"""Words (lower case, with their dots) after which a full stop never ends a chunk."""

_SENTENCE_END = "?!;"
_CLAUSE = ",:"
_PENDING = "pending"


@dataclass(frozen=True)
class Chunk:
    """One unit of speech for TTS: raw ``text`` (strip before use), how many LLM ``tokens``
    it holds, why it was cut (``reason``) and its index in the reply (``index``)."""

    text: str
    tokens: int
    reason: Reason
    index: int


class ClauseChunker:
    """Accumulates tokens of one reply and cuts them into chunks (see the module doc)."""

    def __init__(
        self,
        min_tokens: int = 10,
        max_tokens: int = 25,
        first_min_tokens: int = 2,
        first_max_tokens: int = 4,
    ) -> None:
        if max_tokens < 1 or first_max_tokens < 1:
            raise ValueError("max_tokens and first_max_tokens must be at least 1")
        self.min_tokens = min_tokens
        self.max_tokens = max_tokens
        self.first_min_tokens = first_min_tokens
        self.first_max_tokens = first_max_tokens
        self._tokens: list[str] = []
        self._emitted = 0

    @property
    def pending_tokens(self) -> int:
        """Tokens held, not yet in a chunk."""
        return len(self._tokens)

    def reset(self) -> None:
        """Drop everything held and start a new reply."""
        self._tokens.clear()
        self._emitted = 0

    def push(self, token: str) -> list[Chunk]:
        """Add one token; return the chunks it completed (zero, one or two), in order."""
        out: list[Chunk] = []
        if not token:
            return out
        self._tokens.append(token)
        n = len(self._tokens)
        # 1. A boundary after the previous token that waited for this one.
        if n >= 2:
            reason = self._boundary(n - 2, token)
            if reason is not None and reason != _PENDING:
                out.append(self._cut(n - 1, reason))
        # 2. A boundary after this token that needs no look-ahead.
        n = len(self._tokens)
        reason = self._boundary(n - 1, None)
        if reason is not None and reason != _PENDING:
            out.append(self._cut(n, reason))
            return out
        # 3. Too long: cut at the last word boundary inside the buffer.
        limit = self.first_max_tokens if self._emitted == 0 else self.max_tokens
        if len(self._tokens) >= limit:
            cut = self._last_word_boundary()
            if cut is None and len(self._tokens) >= limit + _FORCED_SLACK:
                # Nothing but abbreviations and initials for a while: a hard cap is a cap.
                cut = self._last_word_boundary(any_word=True)
            if cut is not None:
                out.append(self._cut(cut, "max_tokens"))
        return out

    def finish(self) -> list[Chunk]:
        """End of the reply: the rest as a ``final`` chunk (none when only whitespace is
        held, which is then dropped from the output), and reset for the next reply."""
        out: list[Chunk] = []
        if self._tokens:
            if "".join(self._tokens).strip():
                out.append(self._cut(len(self._tokens), "final"))
            else:
                self._tokens.clear()
        self._emitted = 0
        return out

    # ----------------------------------------------------------------------------------

    def _cut(self, n: int, reason: Reason) -> Chunk:
        head, self._tokens = self._tokens[:n], self._tokens[n:]
        chunk = Chunk("".join(head), len(head), reason, self._emitted)
        self._emitted += 1
        return chunk

    def _last_word_boundary(self, *, any_word: bool = False) -> int | None:
        """Largest n in [1, len) such that token n starts with whitespace (a new word) and
        the word before it is not an abbreviation or an initial ("e.g.", "J."): a forced
        cut must not say "Dr." and pause before the name."""
        for n in range(len(self._tokens) - 1, 0, -1):
            if not self._tokens[n][:1].isspace():
                continue
            before = "".join(self._tokens[:n]).rstrip()
            word = before.rsplit(None, 1)[-1].lower() if before else ""
            core = word.rstrip(".")
            if (
                not any_word
                and word.endswith(".")
                and (word in ABBREVIATIONS or (len(core) == 1 and core.isalpha()))
            ):
                continue
            return n
        return None

    def _boundary(self, i: int, next_token: str | None) -> str | None:
        """Is there a chunk boundary right after token ``i``?

        Returns a reason, None, or ``"pending"`` when it depends on the next token (which is
        ``next_token``, or unknown when None).
        """
        text = "".join(self._tokens[: i + 1])
        stripped = text.rstrip()
        if not stripped:
            return None
        # Whitespace after the punctuation, inside this token or at the start of the next.
        if text != stripped:
            space_after: bool | None = True
        elif next_token is None:
            space_after = None
        else:
            space_after = next_token[:1].isspace()
        last = stripped[-1]
        prev = stripped[-2] if len(stripped) >= 2 else ""
        n_tokens = i + 1
        if last in _SENTENCE_END:
            return "sentence"
        if last == ".":
            word = stripped.rsplit(None, 1)[-1].lower()
            core = word.rstrip(".")
            if word in ABBREVIATIONS or not core:
                return None
            if prev.isdigit():
                # "2." + "30" is a number; "2." + " Then" ends a sentence.
                return _decide(space_after, "sentence")
            if len(core) == 1 and core.isalpha():
                return None  # an initial: "J. Smith"
            if "." in core:
                return _decide(space_after, "sentence")  # "a.m." ends only before a space
            return "sentence"
        if last in _CLAUSE:
            minimum = self.first_min_tokens if self._emitted == 0 else self.min_tokens
            if n_tokens < minimum:
                return None
            if prev.isdigit():
                return _decide(space_after, "clause")  # "1," + "000", "2:" + "30"
            return "clause"
        return None


def _decide(space_after: bool | None, reason: str) -> str | None:
    if space_after is None:
        return _PENDING
    return reason if space_after else None


def chunk_text(tokens: list[str], **limits: int) -> list[Chunk]:
    """Run a whole token list through a fresh `ClauseChunker` (tests, tools)."""
    chunker = ClauseChunker(**limits)
    out: list[Chunk] = []
    for token in tokens:
        out.extend(chunker.push(token))
    out.extend(chunker.finish())
    return out
