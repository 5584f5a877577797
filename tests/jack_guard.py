"""Autouse fixtures for tests that start JACK servers: none of this process's jackd may
outlive a test, and whatever is left at the end of the session is stopped by PID."""

from __future__ import annotations

import os

import pytest

from harness.rigs.jackd import NAME_PREFIX, live_servers, running_jackd


def ours() -> list[tuple[int, str]]:
    """(pid, server name) of every jackd this process started that still runs."""
    return running_jackd(f"{NAME_PREFIX}{os.getpid()}-")


@pytest.fixture(autouse=True)
def no_orphan_jackd():
    """Every test leaves no jackd of this process running (function-scoped servers)."""
    before = {pid for pid, _ in ours()}
    yield
    left = [(pid, name) for pid, name in ours() if pid not in before]
    assert not left, f"jackd left running after the test: {left}"


@pytest.fixture(scope="session", autouse=True)
def no_orphan_jackd_at_end():
    """And nothing at all is left when the session ends."""
    yield
    for server in live_servers():
        server.stop()
    assert not ours(), f"jackd left running after the session: {ours()}"
