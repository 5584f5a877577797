"""``tympan run``: the conformance suite through pytest, the latency table, the report.

    tympan run [--rig sim|loopback|PROFILE.toml] [--dut SPEC] [--repeat N] [--budgets PATH]
               [--out DIR] [--limit N] [--baseline RESULTS.json] [--selftest N]
               [-- PYTEST ARGS...]

With no arguments: the JACK loopback rig (it starts its own jackd), the reference agent with
its default engines, the whole suite, results in out/run. The arguments are checked before
anything starts (a bad rig, DUT spec or budget file: one line, exit 2). Exit status 0 only
if every check of every turn held, every budget held and (with --baseline) nothing
regressed; 1 when a contract, budget or baseline failed; 3 when every contract held but
something could not be judged: some turn could not be measured on this host (only
`[infrastructure]` checks failed: the host stalled through every attempt, the capture fell
behind the wall clock, a sound card lost audio), a budget held on fewer turns than its
percentile needs (a p95 needs 20, a p99 100: "not judged"), or (with --baseline) a metric
had too few turns to compare ("not compared: ..."), or (with --selftest) the rig failed
its self-test and no agent was judged; 2 for bad input.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.errors import InputError

SUITE_DIR = Path(__file__).resolve().parent.parent / "conformance"


def add_parser(subparsers: Any) -> None:
    """Register ``tympan run`` on the main CLI."""
    p = subparsers.add_parser(
        "run",
        help="run the conformance suite against a DUT and write results and a report",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--rig", default="loopback", help="sim, loopback or a profile .toml")
    p.add_argument("--dut", default="reference", help="DUT spec (default: reference)")
    p.add_argument("--repeat", type=int, default=1, help="trials per utterance (default 1)")
    p.add_argument("--budgets", type=Path, help="budget file (default fixtures/budgets.toml)")
    p.add_argument("--out", type=Path, default=Path("out/run"), help="output folder")
    p.add_argument("--limit", type=int, default=0, help="utterances per category, 0 = all")
    p.add_argument("--baseline", type=Path, help="an earlier results.json to compare with")
    p.add_argument(
        "--selftest",
        type=int,
        default=0,
        metavar="N",
        help="first play N turns of `tympan selftest` on the rig; judge no agent on a rig "
        "that fails it (exit 3)",
    )
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- then pytest arguments")
    p.set_defaults(func=run_command)


def _validate(args: argparse.Namespace) -> None:
    """Check every argument before anything starts (InputError: exit 2)."""
    from harness.budgets import load_budgets
    from harness.rigs import load_profile
    from harness.rigs.calibrate import load_cached
    from harness.scenario import parse_dut_spec

    load_cached(load_profile(args.rig))  # a cached calibration that must not be used: exit 2
    parse_dut_spec(args.dut)
    load_budgets(args.budgets)
    if args.repeat < 1:
        raise InputError(f"--repeat {args.repeat}: expected a number of trials >= 1")
    if args.limit < 0:
        raise InputError(f"--limit {args.limit}: expected 0 (all) or more")
    if not 0 <= args.selftest <= 1000:
        raise InputError(f"--selftest {args.selftest}: expected 0 (none) to 1000 turns")
    if args.baseline is not None:
        from harness.report.results import load_results

        load_results(args.baseline)
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out}: exists and is not a folder")


def pytest_command(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """The pytest command line that runs the suite."""
    out = args.out.resolve()
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(SUITE_DIR),
        "-c",
        str(out / "pytest.ini"),
        "--rootdir",
        str(out),
        "-p",
        "no:cacheprovider",
        f"--tympan-rig={args.rig}",
        f"--tympan-dut={args.dut}",
        f"--tympan-repeat={args.repeat}",
        f"--tympan-out={out}",
        f"--tympan-limit={args.limit}",
    ]
    if args.budgets is not None:
        cmd.append(f"--tympan-budgets={args.budgets.resolve()}")
    if args.baseline is not None:
        cmd.append(f"--tympan-baseline={args.baseline.resolve()}")
    # Whether the plugin is there, without importing it (only harness.report imports allure).
    if importlib.util.find_spec("allure_pytest") is not None:
        cmd += ["--alluredir", str(out / "allure-results")]
    else:
        print("tympan run: allure-pytest is not installed: no allure-results", file=sys.stderr)
    return cmd + extra


PREVIOUS_RUN_ITEMS = (
    "results.json",
    "results.jsonl",
    "results.csv",
    "report.html",
    "turns",
    "allure-results",
    "allure-report",
    "dut",
    "serial",
)
"""What one run leaves in OUT (history/ and previous/ stay across runs)."""


def _fresh_out(out: Path, baseline: Path | None) -> Path | None:
    """Make OUT ready for a new run without losing the last one: its results and evidence
    move to OUT/previous/<time>/. Returns where the baseline file now is (it may have been
    in OUT)."""
    import shutil
    import time

    out.mkdir(parents=True, exist_ok=True)
    present = [name for name in PREVIOUS_RUN_ITEMS if (out / name).exists()]
    if present:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime((out / present[0]).stat().st_mtime))
        dest = out / "previous" / stamp
        n = 1
        while dest.exists():
            n += 1
            dest = out / "previous" / f"{stamp}-{n}"
        dest.mkdir(parents=True)
        for name in present:
            moved = shutil.move(str(out / name), str(dest / name))
            if baseline is not None and baseline.resolve() == (out / name).resolve():
                baseline = Path(moved)
        print(f"tympan run: the previous run in {out} moved to {dest}")
    (out / "pytest.ini").write_text(
        "# written by tympan run: the suite's own pytest configuration\n[pytest]\naddopts = -ra\n",
        encoding="utf-8",
    )
    return baseline


INFRASTRUCTURE_ONLY = 3
"""Exit status when every contract held but something could not be judged: some turns could
not be measured on this host, a budget had too few turns for its percentile, or the
baseline comparison had too few turns of a metric."""


def _failed_checks(results: dict, *, infrastructure: bool = False) -> list[str]:
    """Failed checks and budgets (`infrastructure`: only the `[infrastructure]` checks;
    otherwise everything else)."""
    bad = []
    for t in results.get("turns", []):
        for c in t.get("checks", []):
            if not c.get("passed") and (c.get("contract") == "infrastructure") == infrastructure:
                bad.append(f"{t.get('turn')}: {c.get('message') or c.get('name')}")
    if infrastructure:
        return bad
    for metric, s in (results.get("summary") or {}).items():
        if s.get("passed") is False:
            bad.append(f"budget {metric}: {s.get('budget')}")
    return bad


def _rig_selftest(rig: str, turns: int, out: Path) -> int | None:
    """`tympan selftest` on `rig` first (its own process: it starts and stops what it
    needs); None when the rig passed, else the exit status of a run that judged nothing."""
    cmd = [sys.executable, "-m", "harness.cli", "selftest", "--rig", rig]
    cmd += ["--turns", str(turns), "--out", str(out)]
    print(f"tympan run: the rig's self-test first ({turns} turns)", flush=True)
    status = subprocess.run(cmd, check=False).returncode
    if status == 0:
        return None
    if status == 1:
        print(
            f"tympan run: rig {rig} failed its self-test ({out / 'selftest.json'}): no agent is "
            f"judged on it; NOT JUDGED (exit {INFRASTRUCTURE_ONLY})"
        )
        return INFRASTRUCTURE_ONLY
    print(f"tympan run: the self-test could not run (exit {status})", file=sys.stderr)
    return 2


def run_command(args: argparse.Namespace) -> int:
    """``tympan run``: validate, run pytest on the suite, report, judge (`_verdict`)."""
    extra = list(args.pytest_args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    _validate(args)
    out = args.out.resolve()
    if args.baseline is not None and args.baseline.is_dir():
        args.baseline = args.baseline / "results.json"
    args.baseline = _fresh_out(out, args.baseline)
    if args.selftest:
        verdict = _rig_selftest(args.rig, args.selftest, out / "selftest")
        if verdict is not None:
            return verdict
    cmd = pytest_command(args, extra)
    print(f"tympan run: rig {args.rig}, DUT {args.dut}, results in {out}", flush=True)
    env = dict(os.environ)
    status = subprocess.run(cmd, env=env, check=False).returncode
    if status in (3, 4):
        print(f"tympan run: pytest could not run the suite (exit {status})", file=sys.stderr)
        return 2
    results_path = out / "results.json"
    if not results_path.is_file():
        print("tympan run: no turn was played, so there is nothing to report", file=sys.stderr)
        return 1 if status else 2
    results = json.loads(results_path.read_text(encoding="utf-8"))
    return _verdict(results, status, args.baseline, out)


def _verdict(results: dict, status: int, baseline: Path | None, out: Path) -> int:
    """Print what a finished run's `results` (results.json) say after pytest's exit `status`:
    the checks that did not hold, the regressions against `baseline`, what this host could
    not measure, the budgets and metrics not judged, the report in `out`, the verdict; return
    the exit code (0, 1 or INFRASTRUCTURE_ONLY)."""
    code = 0 if status == 0 else 1
    failed = _failed_checks(results)
    if failed:
        code = 1
        print(f"tympan run: {len(failed)} check(s) did not hold:")
        for line in failed[:20]:
            print(f"  {line}")
    regressions = results.get("regressions") or []
    if regressions:
        code = 1
        print(f"tympan run: {len(regressions)} regression(s) against {baseline}")
    unmeasured = _failed_checks(results, infrastructure=True)
    if unmeasured:
        print(f"tympan run: {len(unmeasured)} turn check(s) say this host could not measure:")
        for line in unmeasured[:20]:
            print(f"  {line}")
        if code == 0:
            code = INFRASTRUCTURE_ONLY
    thin = [
        f"{metric} {line}"
        for metric, row in (results.get("summary") or {}).items()
        for line in row.get("not_judged") or []
    ]
    if thin:
        print(
            f"tympan run: {len(thin)} budget(s) held on too few turns to be judged (use --repeat):"
        )
        for line in thin[:20]:
            print(f"  {line}")
        if code == 0:
            code = INFRASTRUCTURE_ONLY
    unjudged = results.get("not_compared") or []
    if unjudged:
        print(
            f"tympan run: the comparison with {baseline} did not judge {len(unjudged)} metric(s):"
        )
        for line in unjudged[:20]:
            print(f"  {line}")
        if code == 0:
            code = INFRASTRUCTURE_ONLY
    report = out / "report.html"
    if report.is_file():
        print(f"tympan run: report {report}")
    not_judged = "; ".join(
        why
        for why, seen in (
            ("NOT MEASURED on this host", unmeasured),
            ("budgets NOT JUDGED on too few turns", thin),
            ("NOT COMPARED with the baseline", unjudged),
        )
        if seen
    )
    verdict = {0: "every check held", INFRASTRUCTURE_ONLY: "every contract held on what"
               f" could be judged; {not_judged}"}.get(code, "FAILED")  # fmt: skip
    print(f"tympan run: {verdict} (exit {code})")
    return code
