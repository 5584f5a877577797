"""The house keeps its shape: the import rules of docs/architecture.md, checked on the source.

Every module under harness/ and device/ is parsed (not imported); each `import` and
`from ... import` statement counts, those inside functions too (a lazy import is still a
dependency).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for base in ("harness", "device"):
        for p in (ROOT / base).rglob("*.py"):
            if "firmware" in p.parts:
                continue
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = p
    return mods


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every module name `path` imports (``from a.b import c`` gives a.b and a.b.c)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _top(name: str) -> str:
    return name.split(".")[0]


def _offenders(prefix: str, banned: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{m} imports {i}"
        for m, names in IMPORTS.items()
        if m == prefix or m.startswith(prefix + ".")
        for i in names
        if any(i == b or i.startswith(b + ".") for b in banned)
    )


def test_the_map_lists_real_modules():
    assert len(MODULES) > 50
    assert "harness.analysis" in MODULES and "device.agent.pipeline" in MODULES


def test_harness_never_imports_the_reference_agent():
    assert _offenders("harness", ("device.agent",)) == []


def test_device_never_imports_pytest():
    assert _offenders("device", ("pytest", "_pytest")) == []


PURE_ALLOWED = {
    "__future__",
    "collections",
    "dataclasses",
    "enum",
    "functools",
    "itertools",
    "math",
    "numbers",
    "numpy",
    "scipy",
    "typing",
}


def test_signal_and_the_records_are_pure():
    """harness.signal, records, reasons, turnmetrics and stalls: numpy, scipy, maths and data
    modules of the standard library, themselves. No files, sound devices, clocks, threads
    or processes."""
    pure = (
        "harness.signal",
        "harness.records",
        "harness.reasons",
        "harness.turnmetrics",
        "harness.labeller",
        "harness.rigs.clock",
        "harness.stalls",
    )
    bad = sorted(
        f"{m} imports {i}"
        for m, names in IMPORTS.items()
        if m.startswith(pure)
        for i in names
        if _top(i) not in PURE_ALLOWED | {"re"} and not i.startswith(pure)
    )
    assert bad == []


def test_only_the_report_imports_allure_and_matplotlib():
    bad = [
        f
        for f in _offenders("harness", ("allure", "allure_pytest", "matplotlib"))
        if not f.startswith("harness.report")
    ]
    bad += _offenders("device", ("allure", "allure_pytest", "matplotlib"))
    assert bad == []


def test_the_observer_runs_in_a_framework_virtualenv():
    """device.observer runs inside a Pipecat or LiveKit bot's own virtualenv, where none of
    tympan's dependencies are: the standard library, the protocol and the emulator's
    protocol engine only; each framework's module imports its own framework and no other."""
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    allowed = ("device.protocol", "device.emulator.device", "device.observer")
    own = {
        "device.observer.pipecat": {"pipecat"},
        "device.observer.livekit": {"livekit"},
        # each inside its framework's hook (LiveKit plays through sounddevice)
        "device.observer.launch": {"pipecat", "livekit", "sounddevice"},
    }
    bad = sorted(
        f"{m} imports {i}"
        for m, names in IMPORTS.items()
        if m.startswith("device.observer")
        for i in names
        if _top(i) not in stdlib
        and not any(i == a or i.startswith(a + ".") for a in allowed)
        and _top(i) not in own.get(m, set())
    )
    assert bad == []
    # the emulator's engine may then never grow a dependency of its own
    assert {_top(i) for i in IMPORTS["device.emulator.device"]} <= stdlib | {"device"}


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {m: {r for i in names if (r := _resolve(i)) and r != m} for m, names in IMPORTS.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert _cycles() == []


@pytest.mark.parametrize("rule", ["harness", "device"])
def test_the_rules_would_catch_a_breach(rule, monkeypatch):
    """The checks above can fail: a module that breaks a rule is reported."""
    fake = "harness.signal.fake" if rule == "harness" else "device.fake"
    monkeypatch.setitem(IMPORTS, fake, {"device.agent.pipeline", "pytest", "time"})
    if rule == "harness":
        assert _offenders("harness", ("device.agent",)) == [
            "harness.signal.fake imports device.agent.pipeline"
        ]
    else:
        assert _offenders("device", ("pytest",)) == ["device.fake imports pytest"]


def test_tympan_run_finds_the_suite_it_ships():
    """`tympan run` hands pytest the conformance suite's folder: after the CLI became a
    package, a path one level off made every `tympan run` collect nothing (exit 4)."""
    from harness.cli.run import SUITE_DIR

    assert Path(__file__).resolve().parents[1] / "harness" / "conformance" == SUITE_DIR
    assert {"test_01_streaming.py", "test_05_budgets.py"} <= {
        p.name for p in SUITE_DIR.glob("test_*.py")
    }
