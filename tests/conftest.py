"""Shared fixtures: corpus speech sorted by role, loaded once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sources():
    """harness.groundtruth.Sources from the committed corpus (questions, clips, talkers)."""
    from harness.groundtruth import corpus_sources

    return corpus_sources(48000)
