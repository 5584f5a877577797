"""Telemetry: timestamped events from every stage, and the sinks they go to.

Every event is a `TelemetryEvent`: a name from `EVENT_NAMES`, a monotonic timestamp in
microseconds (`now_us`, one clock for the whole process) and a few named fields. A
`Telemetry` object stamps and forwards events to an `EventSink`: `JsonlFileSink` (one JSON
object per line, file mode), `CallbackSink` (in-process), `MemorySink` (tests, the frame
adapter) or `FanoutSink` (several at once). The serial protocol sink comes with the bridge.

Emitting is thread-safe: the playback side runs on the audio device's thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

EVENT_NAMES: frozenset[str] = frozenset(
    {
        "session_start",  # first input sample reached the agent; t_us of the timeline origin
        "session_end",
        "vad_speech_start",
        "vad_speech_end",
        "asr_partial",
        "asr_final",
        "llm_request",
        "llm_first_token",
        "llm_token",
        "llm_done",
        "tts_chunk",
        "tts_first_audio",
        "playback_start",
        "playback_end",
        "playback_underrun",
        "barge_in",
        "cancel_done",
        "state",
        "queue_depth",
        "input_overrun",
        "loop_stall",
        "turn_summary",
        "speculation",  # a reply started during the end-of-utterance silence: outcome
        "earcon",  # the wake chime started (config.pipeline.earcon)
    }
)
"""Every event name the agent emits. The issue's list plus session bounds, under/overruns,
event-loop stalls and the per-turn summary."""


def now_us() -> int:
    """The process's monotonic clock, microseconds."""
    return time.monotonic_ns() // 1000


@dataclass(frozen=True)
class TelemetryEvent:
    """One event: ``event`` name, ``t_us`` monotonic microseconds, extra ``fields``."""

    event: str
    t_us: int
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``{"event": NAME, "t_us": INT, **fields}``."""
        return {"event": self.event, "t_us": self.t_us, **self.fields}

    def to_json(self) -> str:
        """One line of JSON (no newline)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    def get(self, key: str, default: Any = None) -> Any:
        """A field's value, or ``default``."""
        return self.fields.get(key, default)


class EventSink(Protocol):
    """Where events go. ``emit`` must be cheap: it runs inside the pipeline."""

    def emit(self, event: TelemetryEvent) -> None: ...

    def close(self) -> None: ...


class JsonlFileSink:
    """Writes one JSON object per line to a file. Line-buffered, so a reader tailing the
    file (the turn runner, with the agent in another process) sees each event as it happens."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fh: IO[str] = self.path.open("w", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()

    def emit(self, event: TelemetryEvent) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.write(event.to_json() + "\n")

    def close(self) -> None:
        with self._lock:
            self._fh.close()


class CallbackSink:
    """Calls ``callback(event)`` for every event (on the emitting thread)."""

    def __init__(self, callback: Callable[[TelemetryEvent], None]) -> None:
        self._callback = callback

    def emit(self, event: TelemetryEvent) -> None:
        self._callback(event)

    def close(self) -> None:
        pass


class MemorySink:
    """Keeps every event in a list; `events` returns a snapshot."""

    def __init__(self) -> None:
        self._events: list[TelemetryEvent] = []
        self._lock = threading.Lock()

    def emit(self, event: TelemetryEvent) -> None:
        with self._lock:
            self._events.append(event)

    def close(self) -> None:
        pass

    def events(self, name: str | None = None) -> list[TelemetryEvent]:
        """All events so far, or only those called ``name``, in emission order."""
        with self._lock:
            return [e for e in self._events if name is None or e.event == name]


class FanoutSink:
    """Forwards every event to several sinks."""

    def __init__(self, sinks: Iterable[EventSink]) -> None:
        self._sinks = list(sinks)

    def emit(self, event: TelemetryEvent) -> None:
        for sink in self._sinks:
            sink.emit(event)

    def close(self) -> None:
        for sink in self._sinks:
            sink.close()


class Telemetry:
    """Stamps events with `now_us` and hands them to a sink, in one order for all threads."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self._lock = threading.Lock()

    def emit(self, name: str, **fields: Any) -> TelemetryEvent:
        """Emit event ``name`` now; returns it. ``name`` must be in `EVENT_NAMES`."""
        if name not in EVENT_NAMES:
            raise ValueError(f"unknown event name {name!r}")
        with self._lock:
            event = TelemetryEvent(name, now_us(), fields)
            self.sink.emit(event)
        return event


def read_events(path: Path | str) -> list[dict[str, Any]]:
    """Read an events JSONL file back as a list of dicts."""
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
