"""Pure signal processing for tympan: arrays in, arrays and values out. No I/O, no clocks.

correlate   locate a template in a signal (normalised cross-correlation, confidence)
activity    noise floor, segments of sound, sample-accurate onsets and ends
leakage     subtract the mouth's leakage from the ear (least-squares FIR on the ref channel)
drift       clock drift between two recordings of the same signal, and its correction
"""

from harness.signal.activity import Activity, NoiseFloor, Segment, detect_activity
from harness.signal.correlate import Match, locate, refine_lag
from harness.signal.drift import DriftFit, correct_drift, fit_drift
from harness.signal.leakage import LeakageFit, remove_leakage

__all__ = [
    "Activity",
    "DriftFit",
    "LeakageFit",
    "Match",
    "NoiseFloor",
    "Segment",
    "correct_drift",
    "detect_activity",
    "fit_drift",
    "locate",
    "refine_lag",
    "remove_leakage",
]
