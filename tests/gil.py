"""A real thread holding the GIL for a measured time, as C code in the harness's process,
another tenant's load or the hypervisor would hold up a turn.

Python's regex engine keeps the GIL while it backtracks, and `(a+)+b` against n "a"s
backtracks about 2**n steps: each extra "a" doubles the hold. How long one step takes
depends on the machine and its load, so the text is calibrated here, not fixed.
"""

from __future__ import annotations

import functools
import re
import time

BACKTRACK = re.compile(r"(a+)+b")


@functools.cache
def gil_holding_text(at_least_s: float) -> str:
    """A string whose `BACKTRACK.match` holds the GIL for at least `at_least_s` seconds
    on this machine (at most about twice that, unless the load changes meanwhile)."""
    n = 14
    while True:
        began = time.monotonic()
        BACKTRACK.match("a" * n)
        if time.monotonic() - began >= at_least_s:
            return "a" * n
        n += 1


def hold_gil_for(at_least_s: float) -> float:
    """Hold the GIL in the regex engine for at least `at_least_s` s; returns how long, s."""
    text = gil_holding_text(at_least_s)
    began = time.monotonic()
    BACKTRACK.match(text)
    return time.monotonic() - began
