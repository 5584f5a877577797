"""The plugin's fixtures: thin wrappers of `harness.session.HarnessSession`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.budgets import Budgets
from harness.corpus import Corpus, Utterance
from harness.pytest_plugin.hooks import session_of
from harness.session import HarnessSession, TurnOutcome


@pytest.fixture(scope="session")
def tympan_session(pytestconfig: pytest.Config) -> HarnessSession:
    """The run: settings, corpus, budgets, lazily opened rig and DUT, the turns so far."""
    return session_of(pytestconfig)


@pytest.fixture(scope="session")
def rig(tympan_session: HarnessSession) -> Any:
    """The opened rig (`harness.rigs.AudioRig`) of ``--tympan-rig``."""
    return tympan_session.rig


@pytest.fixture(scope="session")
def dut(tympan_session: HarnessSession) -> Any:
    """The opened DUT (`harness.scenario.Dut`) of ``--tympan-dut``, wired to the rig."""
    return tympan_session.dut


@pytest.fixture(scope="session")
def corpus(tympan_session: HarnessSession) -> Corpus:
    """The corpus of ``--tympan-corpus`` (default: the shipped one)."""
    return tympan_session.corpus


@pytest.fixture
def budgets(tympan_session: HarnessSession, request: pytest.FixtureRequest) -> Budgets:
    """The run's budgets, with this test's ``tympan_budget`` markers applied."""
    out = tympan_session.budgets
    for marker in request.node.iter_markers("tympan_budget"):
        if not marker.args:
            raise pytest.UsageError(
                f"{request.node.nodeid}: tympan_budget needs the metric first, e.g. "
                "@pytest.mark.tympan_budget('ttfa_ms', p95=1200)"
            )
        for percentile, limit in marker.kwargs.items():
            out = out.with_limit(marker.args[0], percentile, limit)
    return out


@pytest.fixture(scope="session")
def bridge(tympan_session: HarnessSession) -> Iterator[Any]:
    """The DUT's serial link (`device.bridge.DeviceBridge`), when its spec has ``serial=``."""
    url = tympan_session.dut_spec.serial_url
    if not url:
        pytest.skip("the DUT has no serial link: add ,serial=URL to --tympan-dut")
    yield tympan_session.bridge


@pytest.fixture
def tympan_trial() -> int:
    """Which trial of a repeated test this is (0-based; ``--tympan-repeat``)."""
    return 0


@pytest.fixture
def turn(
    tympan_session: HarnessSession,
    request: pytest.FixtureRequest,
    tympan_trial: int,
    budgets: Budgets,
) -> Callable[..., TurnOutcome]:
    """Play one turn: ``turn(utterance, barge_in=clip, barge_in_offset_ms=500)``.

    Returns a `TurnOutcome` (metrics, telemetry stages, every contract check); the same turn
    asked twice in a run is played once.
    """

    def play(
        stimulus: Utterance | str,
        *,
        barge_in: Utterance | str | None = None,
        barge_in_offset_ms: float | None = None,
    ) -> TurnOutcome:
        outcome = tympan_session.turn(
            stimulus,
            barge_in=barge_in,
            barge_in_offset_ms=barge_in_offset_ms,
            repeat=tympan_trial,
            test=request.node.nodeid,
            budgets=budgets,
        )
        _attach(request, tympan_session, outcome)
        return outcome

    return play


class Conversation:
    """Several turns in a row on one DUT (no reuse of earlier turns): ``say(...)`` plays and
    judges one turn at a time; ``call(...)`` plays them back to back in one capture."""

    def __init__(
        self, play: Callable[..., TurnOutcome], call: Callable[..., Any] | None = None
    ) -> None:
        self._play = play
        self._call = call
        self.turns: list[TurnOutcome] = []

    def call(self, *stimuli: Utterance | str) -> Any:
        """Play `stimuli` as one call: one session, one capture, every turn measured the way
        a recorded call is (`harness.scenario.CallResult`; not judged by the contracts)."""
        if self._call is None:
            raise RuntimeError("this Conversation was made without a call player")
        return self._call(stimuli)

    def say(
        self,
        stimulus: Utterance | str,
        *,
        barge_in: Utterance | str | None = None,
        barge_in_offset_ms: float | None = None,
    ) -> TurnOutcome:
        """Play the next turn of the conversation."""
        outcome = self._play(stimulus, barge_in=barge_in, barge_in_offset_ms=barge_in_offset_ms)
        self.turns.append(outcome)
        return outcome


@pytest.fixture
def conversation(
    tympan_session: HarnessSession, request: pytest.FixtureRequest, budgets: Budgets
) -> Conversation:
    """A conversation: ``conversation.say(utterance)`` plays turn after turn, never cached."""

    def play(stimulus: Any, **kw: Any) -> TurnOutcome:
        outcome = tympan_session.turn(
            stimulus, test=request.node.nodeid, budgets=budgets, cache=False, **kw
        )
        _attach(request, tympan_session, outcome)
        return outcome

    def call(stimuli: Any) -> Any:
        return tympan_session.call(list(stimuli), test=request.node.nodeid)

    return Conversation(play, call)


def _attach(request: pytest.FixtureRequest, session: HarnessSession, outcome: TurnOutcome) -> None:
    """Allure attachments of the turn, when allure-pytest records this run."""
    if not request.config.getoption("allure_report_dir", None):
        return
    from harness.report.allure_attach import attach_turn

    attach_turn(outcome.record, session.out_dir)
