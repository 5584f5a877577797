"""A software voice agent as a tympan device: its framework's own events and figures, sent to
the harness over the device protocol (docs/protocol.md) on a TCP socket, clock-synchronised
like a lab device's serial telemetry.

- `Observer` (core): the link, the protocol engine and a sender thread; `emit` from anywhere.
- `SocketLink` (socketlink): the listening socket the harness's bridge opens as
  ``socket://HOST:PORT``.
- `device.observer.pipecat.TympanObserver`: a Pipecat observer (one line in a bot:
  ``PipelineTask(..., observers=[TympanObserver()])``).
- `device.observer.livekit.observe(session)`: the same for a LiveKit ``AgentSession``.
- ``python -m device.observer.launch``: how tympan starts a framework's bot (its JACK client
  name, the observer, then the bot's own script, unmodified).

Standard library only (the framework modules import their framework): this package runs in
the framework's own virtualenv, which has none of tympan's dependencies.
"""

from device.observer.core import Observer, current, set_current

__all__ = ["Observer", "current", "set_current"]
