"""Typed reasons, so that rooms read each other's outcomes without parsing prose: why a
turn was not measured (`Discard`), which limit a turn hit (`Timeout`). The messages that go
with them (`TurnMetrics.discard`, `TurnResult.timeout`) are for people; code reads these.

Standard library only.
"""

from __future__ import annotations

import enum


class Discard(enum.StrEnum):
    """Why a turn was not measured (`TurnMetrics.discard_reason`). The `discard` message
    starts with the reason and goes on with the detail, for people."""

    NO_REPLY = "no_reply"
    EARLY_REPLY = "reply_before_speech_end"
    LOW_CONFIDENCE = "low_confidence"
    CLIPPED = "clipped"
    TOO_NOISY = "too_noisy"
    TOO_QUIET = "too_quiet"
    HOST_STALLED = "host_stalled"
    """Set by the session, not the analysis: the host stalled through every attempt."""

    @classmethod
    def of(cls, message: str | None) -> Discard | None:
        """The reason a `discard` message starts with (None for None or an unknown one)."""
        if not message or not message.strip():
            return None
        word = message.split(":", 1)[0].split()[0]
        return cls._value2member_map_.get(word)  # type: ignore[return-value]


class Timeout(enum.StrEnum):
    """Which limit of the turn runner a turn hit (`TurnResult.timeout_kind`)."""

    NO_REPLY = "no_reply"
    """No reply started within `reply_timeout_s` of the speech end."""
    REPLY_TOO_LONG = "reply_too_long"
    """The reply was still going after `max_reply_s`."""
    CAPACITY = "capacity"
    """The session's capture capacity ran out (a bounded, non-realtime session)."""
