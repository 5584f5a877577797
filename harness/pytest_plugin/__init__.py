"""tympan's pytest plugin, registered through the ``pytest11`` entry point (name ``tympan``).

Options (group "tympan" in ``pytest --help``; the same keys under ``[tool.tympan]`` in
pyproject.toml, without the prefix): ``--tympan-rig``, ``--tympan-dut``, ``--tympan-budgets``,
``--tympan-repeat``, ``--tympan-out``, ``--tympan-corpus``, ``--tympan-limit``.

Fixtures (thin: each calls `harness.session.HarnessSession`): ``tympan_session``, ``rig``,
``dut``, ``corpus``, ``budgets``, ``bridge``, ``turn``, ``conversation``.
Markers: ``corpus(category=..., ids=[...], limit=N)`` parametrises a test's ``utterance``
argument over the corpus (ids are the utterance ids); ``tympan_budget(METRIC, p95=...)``
sets a budget for one test.

Map:
    hooks       options, [tool.tympan], markers, parametrisation, progress, terminal summary
    fixtures    the fixtures above
"""

from harness.pytest_plugin.fixtures import (
    bridge,
    budgets,
    conversation,
    corpus,
    dut,
    rig,
    turn,
    tympan_session,
    tympan_trial,
)
from harness.pytest_plugin.hooks import (
    pytest_addoption,
    pytest_configure,
    pytest_generate_tests,
    pytest_runtest_makereport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)

__all__ = [
    "bridge",
    "budgets",
    "conversation",
    "corpus",
    "dut",
    "pytest_addoption",
    "pytest_configure",
    "pytest_generate_tests",
    "pytest_runtest_makereport",
    "pytest_sessionfinish",
    "pytest_terminal_summary",
    "rig",
    "turn",
    "tympan_session",
    "tympan_trial",
]
