"""The rig's self-test: a blind test with a hidden gap.

Known turns through the rig, each answered by the self-test's own DUT a delay the harness
draws at random and never hands the measurement; the measured TTFA minus the true one, per
turn. A nightly runs it first and refuses to judge an agent on a rig that fails it.

Map:
    duts    the self-test's DUT per rig kind (the sim's scripted DUT; a JACK delay client
            in this process on the loopback) and the true TTFA each knows to the sample
    run     run_selftest -> SelfTestResult: the draws, the turns, the checks, selftest.json
"""

from harness.selftest.run import (
    DEFAULT_TOLERANCE_MS,
    SelfTestResult,
    SelfTestTurn,
    check_supported,
    run_selftest,
)

__all__ = [
    "DEFAULT_TOLERANCE_MS",
    "SelfTestResult",
    "SelfTestTurn",
    "check_supported",
    "run_selftest",
]
