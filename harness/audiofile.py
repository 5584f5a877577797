"""Reading captures, stimuli and clips, with errors that name the file and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from harness.errors import InputError


def read_audio(path: str | Path, *, role: str) -> tuple[np.ndarray, int]:
    """Read an audio file as float64 (samples, channels) in [-1, 1] and its sample rate in Hz.

    `role` says what the file is for ("capture", "stimulus", ...) so an error can say it.
    Raises InputError for a missing, unreadable, empty, NaN-holding or all-zero file.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file (the {role})")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected an audio file (the {role})")
    try:
        data, rate = sf.read(str(p), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise InputError(f"{p}: not a readable audio file (the {role}): {err}") from err
    if data.shape[0] == 0:
        raise InputError(f"{p}: holds no samples (the {role})")
    if not np.all(np.isfinite(data)):
        bad = int(np.flatnonzero(~np.isfinite(data).all(axis=1))[0])
        raise InputError(
            f"{p}: contains NaN or infinite samples (first at sample {bad}, "
            f"{bad / rate:.3f} s); the {role} must be finite audio"
        )
    if not np.any(data):
        raise InputError(f"{p}: is all zeros (digital silence); the {role} must hold sound")
    return data, int(rate)
