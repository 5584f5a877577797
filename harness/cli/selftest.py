"""``tympan selftest``: prove the rig measures TTFA right before judging an agent on it.

    tympan selftest --rig sim|loopback|PROFILE.toml [--turns N] [--seed S]
                    [--tolerance-ms T] [--out DIR] [--json]

Plays N known turns through the rig, each answered by the self-test's own DUT a delay drawn
at random (from --seed) that the measurement never sees, and prints per turn the true and
the measured TTFA and their difference, then a summary. Writes OUT/selftest.json (``ok``
is what a nightly checks). Exit status: 0 every turn measured within the tolerance and the
median error within its bound; 1 the rig failed (a turn off by more, refused, unmeasured, a
ref lag that is not the rig's own figure, a shifted median); 2 bad input (one line naming
it). docs/lab-rig.md, "Self-test", has the design and each rig kind's tolerance.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.rigs.base import RigError

MAX_TURNS = 1000


def _ms(v: float | None, width: int = 9, sign: str = "") -> str:
    """`v` ms to 3 decimals ("-" for None; never "-0.000")."""
    return f"{'-':>{width}}" if v is None else f"{round(v, 3) + 0.0:{sign}{width}.3f}"


def _turn_line(t: Any, n: int) -> str:
    head = (
        f"turn {t.index:>{len(str(n))}}/{n}  {t.stimulus:<20} -> {t.reply:<20} delay "
        f"{t.delay_ms:8.3f}  true {_ms(t.true_ttfa_ms)}  measured {_ms(t.measured_ttfa_ms)}  "
        f"error {_ms(t.error_ms, sign='+')} ms  conf {t.confidence:.2f}"
    )
    return head + ("  ok" if t.ok else f"  FAIL: {t.problem}")


def _validate(args: argparse.Namespace) -> Any:
    from harness.rigs.calibrate import load_cached
    from harness.rigs.profile import load_profile
    from harness.selftest import check_supported

    if not 1 <= args.turns <= MAX_TURNS:
        raise InputError(f"--turns {args.turns}: expected a number of turns 1..{MAX_TURNS}")
    if args.seed is not None and args.seed < 0:
        raise InputError(f"--seed {args.seed}: expected a whole number >= 0")
    t = args.tolerance_ms
    if t is not None and not (math.isfinite(t) and 0 < t <= 1000):
        raise InputError(f"--tolerance-ms {t}: expected a finite number of ms in (0, 1000]")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out}: exists and is not a folder")
    profile = load_profile(args.rig)
    check_supported(profile)
    load_cached(profile)  # a cached calibration that must not be used: exit 2
    return profile


def _selftest(args: argparse.Namespace) -> int:
    from harness.selftest import run_selftest

    profile = _validate(args)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    quiet = args.json
    if not quiet:
        print(
            f"self-test of rig {profile.name} ({profile.kind}, {profile.source}): "
            f"{args.turns} turns, seed {seed}"
        )

    def show(turn: Any) -> None:
        if not quiet:
            print(_turn_line(turn, args.turns), flush=True)

    try:
        result = run_selftest(
            profile,
            turns=args.turns,
            seed=seed,
            out_dir=args.out,
            tolerance_ms=args.tolerance_ms,
            on_turn=show,
        )
    except InputError:
        raise
    except RigError as err:
        print(f"tympan: error: {err}", file=sys.stderr)
        return 1
    doc = result.to_json()
    if args.json:
        print(json.dumps(doc))
        return 0 if result.ok else 1
    s = result.summary()
    med, worst = s["median_error_ms"], s["max_abs_error_ms"]
    stated = result.mouth_to_ref_samples
    lags = [t.ref_lag_samples for t in result.turns if t.ref_lag_samples is not None]
    if not lags:
        lag_text = "nothing"
    elif max(lags) - min(lags) < 0.01:
        lag_text = f"{lags[0]:.2f} samples on every turn"
    else:
        lag_text = f"{min(lags):.2f}..{max(lags):.2f} samples"
    lines = [
        f"{s['turns']} turns: {s['measured']} measured, {s['refused']} refused, "
        f"{s['unmeasured'] - s['refused']} otherwise unmeasured (refusals and the rest count "
        "against the rig: a self-test turn is built to be measurable)",
        f"error (measured - true): median {_ms(med, 0, '+')} ms, "
        f"max |error| {_ms(worst, 0)} ms; tolerance {result.tolerance_ms:g} ms a turn "
        f"({result.tolerance_from}), {result.median_tolerance_ms:g} ms on the median"
        + ("" if s["median_judged"] else " (not judged: too few measured turns)"),
        *(f"FAIL: {p}" for p in s["problems"]),
        f"mouth -> ref: measured {lag_text}; the rig's {result.mouth_to_ref_from} figure "
        f"{'-' if stated is None else stated}",
        f"evidence: {args.out / 'selftest.json'} (and one folder per turn)",
        f"tympan selftest: {'PASS' if result.ok else 'FAIL'} on rig {result.rig} "
        f"(exit {0 if result.ok else 1})",
    ]
    print("\n".join(lines))
    return 0 if result.ok else 1


def add_parser(subparsers: Any) -> None:
    """Register ``tympan selftest`` on the main CLI."""
    p = subparsers.add_parser(
        "selftest",
        help="prove the rig measures TTFA right: known turns with hidden random delays",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "--rig",
        default=os.environ.get("TYMPAN_RIG", "sim"),
        metavar="sim|loopback|PATH.toml",
        help="rig profile (default: $TYMPAN_RIG or sim)",
    )
    p.add_argument("--turns", type=int, default=8, metavar="N", help="turns (default 8)")
    p.add_argument("--seed", type=int, metavar="S", help="seed of the draws (default: random)")
    p.add_argument(
        "--tolerance-ms",
        type=float,
        metavar="T",
        help="largest |measured - true| allowed, ms (default: the rig kind's, docs/lab-rig.md)",
    )
    p.add_argument(
        "--out", type=Path, default=Path("out/selftest"), help="output folder (out/selftest)"
    )
    p.add_argument("--json", action="store_true", help="print selftest.json's object only")
    p.set_defaults(func=_selftest)
