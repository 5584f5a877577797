"""The request/reply table of a `DeviceBridge`: who waits for which reply (a PONG for a PING,
an ACK/NACK for a CMD, a HELLO), and handing each reply to its waiter.

All methods are called under the bridge's lock (`link.Shared.lock`), except that a waiter
waits on its own `threading.Event` outside it.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field

from device.protocol import Ack, Hello, Message, Nack, Pong


@dataclass
class Waiter:
    """A caller blocked on one reply (PONG for a PING, ACK/NACK for a CMD, a HELLO)."""

    done: threading.Event = field(default_factory=threading.Event)
    reply: Message | None = None
    t_rx_us: int = 0


class Requests:
    """Outstanding requests; `counts` are the bridge's counters (nacks, stale_replies)."""

    def __init__(self, counts: collections.Counter[str]) -> None:
        self.counts = counts
        self.commands: dict[int, Waiter] = {}
        self.ping: tuple[int, Waiter] | None = None
        self.hello_waiters: list[Waiter] = []

    def forget_ping(self, waiter: Waiter | None = None) -> None:
        """No PONG is awaited any more (for `waiter`'s PING, or for any: the port is gone)."""
        if waiter is None or (self.ping is not None and self.ping[1] is waiter):
            self.ping = None

    def on_pong(self, pong: Pong, t_rx: int) -> None:
        ping = self.ping
        if ping is not None and ping[0] == pong.t_host_us:
            ping[1].reply, ping[1].t_rx_us = pong, t_rx
            self.ping = None
            ping[1].done.set()
        else:
            self.counts["stale_replies"] += 1

    def on_ack(self, message: Ack | Nack) -> None:
        waiter = self.commands.get(message.ack_seq)
        if isinstance(message, Nack):
            self.counts["nacks"] += 1
        if waiter is not None and not waiter.done.is_set():
            waiter.reply = message
            waiter.done.set()
        else:
            self.counts["stale_replies"] += 1

    def on_hello(self, hello: Hello) -> None:
        for waiter in self.hello_waiters:
            waiter.reply = hello
            waiter.done.set()
        self.hello_waiters.clear()
