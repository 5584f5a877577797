"""Fixtures for the turn-runner tests: sim profiles built in code, JACK servers stopped by
PID, and a check that no jackd or DUT process outlives a test."""

from __future__ import annotations

import shutil

import pytest

from harness.corpus import Corpus
from harness.rigs import open_rig
from harness.rigs.profile import validate
from tests.jack_guard import (  # noqa: F401 (autouse fixtures, shared)
    no_orphan_jackd,
    no_orphan_jackd_at_end,
)


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    return Corpus.load()


def sim_rig(**sim):
    """A sim rig from the profile schema's defaults (free field, no noise bed) with `sim`
    overrides (nested dicts)."""
    return open_rig(validate({"rig": {"kind": "sim"}, "sim": sim}, "<test-sim>"), use_cache=False)


needs_jackd = pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd (jackd2) missing")
