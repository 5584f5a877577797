"""The turn runner: DUTs on rigs, one turn at a time, with reactive barge-in.

Map:
    backends  the tympan.duts entry-point registry, DutBackend (a backend's shape)
    spec    DutSpec, parse_dut_spec: "reference[:fault=NAME]", "scripted", "jack:CLIENT",
            'cmd:"COMMAND"', each optionally ",serial=URL"
    duts    open_dut -> Dut (a context manager): the DUT a spec names, started and wired on a
            rig; backends registered in the ``tympan.duts`` entry-point group
    live    EarWatcher: the ear watched while a session streams (reply onset, quiet)
    turn    TurnPlan, run_turn -> TurnResult, TurnTimeout; AnalysisPool (analysis in a worker
            process, overlapping the next turn)
    call    run_call -> CallResult: several turns in one session, one capture, measured as
            a recorded call is (harness.conversation)

::

    with open_rig("sim") as rig, open_dut(parse_dut_spec("reference"), rig) as dut:
        result = run_turn(rig, dut, TurnPlan(stimulus=utt), out_dir=out / "t1")
        result.metrics.ttfa_ms, result.timeout, result.paths["capture_wav"]
"""

from harness.scenario.backends import ENTRY_POINT_GROUP, DutBackend, backend_names, load_backend
from harness.scenario.call import CallResult, CallTurn, run_call
from harness.scenario.duts import Dut, DutError, open_dut
from harness.scenario.spec import FORMS, DutSpec, DutSpecError, parse_dut_spec
from harness.scenario.turn import AnalysisPool, TurnPlan, TurnResult, TurnTimeout, run_turn

__all__ = [
    "ENTRY_POINT_GROUP",
    "FORMS",
    "AnalysisPool",
    "CallResult",
    "CallTurn",
    "Dut",
    "DutBackend",
    "DutError",
    "DutSpec",
    "DutSpecError",
    "TurnPlan",
    "TurnResult",
    "TurnTimeout",
    "backend_names",
    "load_backend",
    "open_dut",
    "parse_dut_spec",
    "run_call",
    "run_turn",
]
