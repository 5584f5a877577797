"""tympan's host side: everything that measures and judges.

Map:
    harness.signal      pure numpy/scipy: correlation, onset/segments, leakage removal, drift
    harness.audiofile   reading captures and stimuli with checks that name the file
    harness.analysis    capture (+ stimulus, + reply reference, + barge-in clip) -> TurnMetrics
    harness.corpus      the utterance corpus: manifest, labels (validation: corpus_check;
                        relabelling and writing a manifest: corpus_write)
    harness.groundtruth synthetic turns with exactly known timing (tests, benchmarks, demo)
    harness.cli         the `tympan` command (one subcommand a module)
"""

from harness.errors import HarnessError, InputError

__version__ = "0.1.0"
__all__ = ["HarnessError", "InputError", "__version__"]
