"""The plugin's hooks: options, settings, markers, parametrisation and the terminal summary."""

from __future__ import annotations

import contextlib
import tomllib
from pathlib import Path
from typing import Any

import pytest

from harness.assertions import ContractError
from harness.errors import HarnessError
from harness.session import HarnessSession, RunSettings

SESSION_KEY = pytest.StashKey[HarnessSession]()
SETTINGS_KEY = pytest.StashKey[RunSettings]()

OPTIONS: dict[str, tuple[type, str]] = {
    "rig": (str, "rig: sim, loopback or a profile .toml (default: sim)"),
    "dut": (
        str,
        'device under test: reference, reference:fault=NAME, scripted, jack:CLIENT, cmd:"COMMAND" '
        "(+ ,serial=URL) (default: reference)",
    ),
    "budgets": (str, "budget file (default: fixtures/budgets.toml)"),
    "repeat": (int, "trials of every corpus utterance (default: 1)"),
    "out": (str, "folder for results.json, evidence and reports (default: out/tympan)"),
    "corpus": (str, "corpus manifest.json (default: the shipped audio_corpus/)"),
    "limit": (int, "at most this many utterances per corpus marker, 0 = all (default: 0)"),
    "baseline": (str, "an earlier results.json: fail when a percentile got worse beyond noise"),
}
"""Option name (``--tympan-NAME`` and ``[tool.tympan] NAME``): type, help."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tympan", "tympan: latency, chunking and barge-in of voice agents")
    for name, (kind, text) in OPTIONS.items():
        group.addoption(
            f"--tympan-{name}", dest=f"tympan_{name}", type=kind, default=None, help=text
        )


def _pyproject_settings(config: pytest.Config) -> dict[str, Any]:
    """``[tool.tympan]`` of the rootdir's pyproject.toml (checked: unknown keys are errors)."""
    path = Path(config.rootpath) / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as f:
            table = tomllib.load(f).get("tool", {}).get("tympan", {})
    except tomllib.TOMLDecodeError as exc:
        raise pytest.UsageError(f"{path}: not valid TOML: {exc}") from None
    for key, value in table.items():
        if key not in OPTIONS:
            raise pytest.UsageError(
                f"{path}: [tool.tympan] {key}: unknown key; expected one of {', '.join(OPTIONS)}"
            )
        kind = OPTIONS[key][0]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise pytest.UsageError(
                f"{path}: [tool.tympan] {key} = {value!r}: expected a {kind.__name__}"
            )
    return dict(table)


def settings_from(config: pytest.Config) -> RunSettings:
    """Command line over ``[tool.tympan]`` over the defaults."""
    file = _pyproject_settings(config)

    def get(name: str, default: Any) -> Any:
        value = config.getoption(f"tympan_{name}")
        return value if value is not None else file.get(name, default)

    repeat = get("repeat", 1)
    if repeat < 1:
        raise pytest.UsageError(f"--tympan-repeat {repeat}: expected a number of trials >= 1")
    out = Path(get("out", "out/tympan"))
    if not out.is_absolute():
        out = Path(config.invocation_params.dir) / out
    return RunSettings(
        rig=get("rig", "sim"),
        dut=get("dut", "reference"),
        budgets=get("budgets", None),
        repeat=repeat,
        out_dir=out,
        corpus=get("corpus", None),
        limit=max(0, get("limit", 0)),
        baseline=get("baseline", None),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "corpus(category=None, ids=None, limit=0): parametrise the test's `utterance` argument "
        "over corpus utterances (ids are utterance ids)",
    )
    config.addinivalue_line(
        "markers",
        "tympan_budget(metric, p50=None, p95=None, p99=None, max=None): this test's budget "
        "for a metric (overrides the budget file)",
    )
    settings = settings_from(config)
    config.stash[SETTINGS_KEY] = settings
    session_of(config)  # bad settings are a usage error before anything runs


def session_of(config: pytest.Config) -> HarnessSession:
    """The run's `HarnessSession`, made on first use (bad settings: a usage error)."""
    if SESSION_KEY not in config.stash:
        try:
            session = HarnessSession(config.stash[SETTINGS_KEY], progress=_progress(config))
        except HarnessError as exc:
            raise pytest.UsageError(f"tympan: {exc}") from None
        config.stash[SESSION_KEY] = session
    return config.stash[SESSION_KEY]


def _progress(config: pytest.Config) -> Any:
    def show(line: str) -> None:
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if tr is None:
            return
        capture = config.pluginmanager.get_plugin("capturemanager")
        # a progress line is for the person watching, not for the test's captured output
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            tr.ensure_newline()
            tr.write_line(f"tympan: {line}")

    return show


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("corpus")
    settings = metafunc.config.stash[SETTINGS_KEY]
    if "utterance" in metafunc.fixturenames and marker is not None:
        session = session_of(metafunc.config)
        category = marker.kwargs.get("category")
        ids = marker.kwargs.get("ids")
        try:
            if ids:
                found = [session.corpus.by_id(i) for i in ids]
            elif category:
                found = list(session.corpus.by_category(category))
            else:
                raise pytest.UsageError(
                    f"{metafunc.definition.nodeid}: @pytest.mark.corpus needs category= or ids="
                )
        except HarnessError as exc:
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: {exc}") from None
        limits = [n for n in (marker.kwargs.get("limit", 0), settings.limit) if n]
        if limits:
            found = found[: min(limits)]
        if not found:
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid}: the corpus has no utterances of {category!r}"
            )
        metafunc.parametrize("utterance", found, ids=[u.id for u in found])
    if "tympan_trial" in metafunc.fixturenames and settings.repeat > 1:
        metafunc.parametrize(
            "tympan_trial",
            range(settings.repeat),
            ids=[f"trial{k + 1}" for k in range(settings.repeat)],
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A broken contract is reported by its message (contract, rule, what was seen, the
    evidence), not by a traceback through the harness."""
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(ContractError):
        report.longrepr = f"{item.nodeid}\n{call.excinfo.value}"
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    tympan = session.config.stash.get(SESSION_KEY, None)
    if tympan is None:
        return
    tympan.close()
    if tympan.finished is not None and tympan.finished.regressions and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a regression fails the run


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    tympan = config.stash.get(SESSION_KEY, None)
    if tympan is None or not tympan.outcomes:
        return
    from harness.report.text import format_summary_table, format_worst_turns

    tr = terminalreporter
    tr.section("tympan latency summary")
    records = [o.record for o in tympan.outcomes if o.record is not None]
    summary = tympan.summary()
    tr.write_line(format_summary_table(summary))
    worst = format_worst_turns(records, "ttfa_ms", k=3)
    if worst:
        tr.write_line(worst)
    rates = tympan.check_rates()
    flaky = [r for r in rates.values() if r.failed]
    if flaky:
        tr.write_line("checks that failed (failed/turns):")
        for r in sorted(flaky, key=lambda r: -r.failed):
            tr.write_line(f"  {r.failed}/{r.applicable} {r.label}")
    discards = tympan.discard_reasons()
    if discards:
        tr.write_line(
            "discarded turns: " + ", ".join(f"{k} {v}" for k, v in sorted(discards.items()))
        )
    tr.write_line(f"results: {tympan.out_dir / 'results.json'} ({len(records)} turns)")
    done = tympan.finished
    if done is not None:
        if tympan.settings.baseline:
            from harness.report.run import comparison_lines

            for line in comparison_lines(
                done.regressions, done.not_compared, tympan.settings.baseline
            ):
                regressed = bool(done.regressions) and not line.startswith("  not compared")
                tr.write_line(
                    line.replace("regressions against", "REGRESSIONS against"), red=regressed
                )
        tr.write_line(f"report: {done.report_path}")
        if not config.getoption("allure_report_dir", None):
            # plain pytest without --alluredir: nothing was meant to be recorded
            tr.write_line("allure: not recorded (pytest --alluredir=DIR, as `tympan run` does)")
        elif done.allure_note:
            tr.write_line(f"allure: {done.allure_note}")
