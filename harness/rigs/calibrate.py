"""Calibration: measure a rig's own delay, noise and drift with a repeated log sweep.

The measurement (as OboeTester and the Android CTS audio latency verifier do it): half a
second of silence (the noise floor), then `repeats` exponential sweeps of 0.4 s
(50 Hz .. 0.45 fs, 5 ms fades) each followed by 0.35 s of silence, played at the mouth and
recorded at ref and ear on the one duplex stream. Each sweep is located in each channel by
normalised cross-correlation within `max_latency_s` after it was played, then refined to a
sub-sample lag.

Per path (mouth -> ref; mouth -> ear when the ear hears the mouth, through a pass-through
DUT or the room): latency in samples (median of the repeats, rounded) and ms, spread
(max - min of the rounded lags), SNR (sweep power over the leading silence's power, dB,
capped at 150), peak level (dBFS) with advice, drift in ppm (slope of the sub-sample lags
against time), and a confidence: the median of the repeats' correlation confidences times the
share of repeats within one sample of the median lag. Calibration is refused (`CalibrationRefused`)
when the ref hears nothing, is buried in noise, or the repeats disagree.

Results are cached per profile (`cache_path`) so later turns can subtract the rig's delay.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import InputError
from harness.rigs.base import AudioRig, CalibrationRefused, Capture, RigError, play_and_record
from harness.rigs.profile import RigProfile
from harness.signal import locate, refine_lag

SWEEP_S = 0.4
GAP_S = 0.35
LEAD_S = 0.5
SNR_CAP_DB = 150.0
MIN_SNR_DB = 6.0
MIN_CONFIDENCE = 0.5
ROOM_MIN_CONFIDENCE = 0.3
QUIET_DBFS = -50.0
LEVEL_RANGE_DBFS = (-60.0, 0.0)
"""The sweep peaks a calibration may be played at (dBFS)."""
CLIP_DBFS = -0.5


def log_sweep(
    sample_rate_hz: int, seconds: float = SWEEP_S, level_dbfs: float = -6.0
) -> np.ndarray:
    """An exponential sine sweep 50 Hz .. 0.45 fs with 5 ms raised-cosine fades, float32."""
    fs = sample_rate_hz
    n = int(round(seconds * fs))
    t = np.arange(n) / fs
    f0, f1 = 50.0, 0.45 * fs
    k = math.log(f1 / f0)
    x = np.sin(2 * np.pi * f0 * seconds / k * (np.exp(t / seconds * k) - 1))
    fade = int(0.005 * fs)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    x[:fade] *= ramp
    x[-fade:] *= ramp[::-1]
    return (x * 10 ** (level_dbfs / 20)).astype(np.float32)


@dataclass(frozen=True)
class PathCalibration:
    """One path's figures (see the module docstring). lags_samples: sub-sample lag per repeat."""

    latency_samples: int
    latency_ms: float
    latency_spread_samples: int
    snr_db: float
    noise_floor_dbfs: float
    peak_dbfs: float
    drift_ppm: float
    confidence: float
    advice: str
    lags_samples: tuple[float, ...]


@dataclass(frozen=True)
class Calibration:
    """A rig's calibration: the mouth -> ref path, and mouth -> ear when the ear heard it."""

    rig: str
    profile: str
    sample_rate_hz: int
    repeats: int
    ref: PathCalibration
    ear: PathCalibration | None
    ear_note: str
    expected_latency_samples: int | None
    xruns: int
    measured_at_unix_s: float

    def to_json(self) -> dict[str, Any]:
        """One flat-at-the-top JSON object: the ref path's figures first, then the rest."""
        ref = asdict(self.ref)
        ref["lags_samples"] = [round(v, 4) for v in ref["lags_samples"]]
        out: dict[str, Any] = {
            "latency_samples": ref["latency_samples"],
            "latency_ms": round(ref["latency_ms"], 4),
            "latency_spread_samples": ref["latency_spread_samples"],
            "snr_db": round(ref["snr_db"], 2),
            "drift_ppm": round(ref["drift_ppm"], 3),
            "confidence": round(ref["confidence"], 4),
            "noise_floor_dbfs": round(ref["noise_floor_dbfs"], 2),
            "peak_dbfs": round(ref["peak_dbfs"], 2),
            "advice": ref["advice"],
            "lags_samples": ref["lags_samples"],
            "expected_latency_samples": self.expected_latency_samples,
            "rig": self.rig,
            "profile": self.profile,
            "sample_rate_hz": self.sample_rate_hz,
            "repeats": self.repeats,
            "xruns": self.xruns,
            "measured_at_unix_s": round(self.measured_at_unix_s, 3),
            "ear": None,
            "ear_note": self.ear_note,
        }
        if self.ear is not None:
            ear = asdict(self.ear)
            ear["lags_samples"] = [round(v, 4) for v in ear["lags_samples"]]
            out["ear"] = ear
        return out


def _db(power: float) -> float:
    return 10 * math.log10(max(power, 1e-30))


def analyse_path(
    channel: np.ndarray,
    sweep: np.ndarray,
    starts: list[int],
    sample_rate_hz: int,
    max_latency_samples: int,
    *,
    exclusion_s: float = 0.002,
    min_confidence: float = MIN_CONFIDENCE,
) -> PathCalibration | str:
    """Locate every sweep in `channel`; the figures, or a reason string when it is unusable.

    exclusion_s: half-width of the correlation's main lobe; widen it for a path through a
    room, whose reflections are echoes of the one answer, not rival answers.
    min_confidence: the median correlation confidence needed (a room path scores lower than
    a cable: its reflections count as sidelobes).

    The sweeps are found by `_locate_sweeps`; each refusal then needs the figures computed
    just before it, and `_advice` words the level.
    """
    fs = sample_rate_hz
    x = np.asarray(channel, dtype=np.float64)
    noise = x[: max(1, starts[0] // 2)]
    noise_power = float(np.mean(noise**2)) if noise.size else 0.0
    lags, confs, powers = _locate_sweeps(x, sweep, starts, fs, max_latency_samples, exclusion_s)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    peak_dbfs = 20 * math.log10(max(peak, 1e-15))
    signal_power = float(np.median(powers))
    snr = min(SNR_CAP_DB, _db(signal_power) - _db(max(noise_power, 1e-15)))
    rounded = np.round(lags).astype(int)
    median = int(np.round(np.median(lags)))
    agree = float(np.mean(np.abs(rounded - median) <= 1))
    confidence = float(np.median(confs)) * agree
    if peak_dbfs < -90:
        return f"no signal (peak {peak_dbfs:.0f} dBFS)"
    if snr < MIN_SNR_DB:
        return (
            f"the sweep is buried in noise: SNR {snr:.1f} dB < {MIN_SNR_DB:g} dB "
            f"(noise floor {_db(noise_power):.1f} dBFS)"
        )
    if not (np.median(confs) >= min_confidence and min(confs) >= min_confidence / 2):
        worst = int(np.argmin(confs))
        return (
            f"the sweeps were not found reliably (median correlation confidence "
            f"{np.median(confs):.2f}, worst {confs[worst]:.2f} at sweep {worst + 1}; needed "
            f"{min_confidence} and {min_confidence / 2}); lags seen: "
            + ", ".join(f"{v:.1f}" for v in lags)
        )
    spread = int(rounded.max() - rounded.min())
    if spread > 2:
        return (
            f"the repeats disagree by {spread} samples (lags "
            + ", ".join(str(v) for v in rounded)
            + "): the path's delay is not stable (xruns? an adaptive resampler?)"
        )
    t = np.asarray(starts, dtype=np.float64)
    drift = float(np.polyfit(t, np.asarray(lags), 1)[0] * 1e6) if len(starts) >= 3 else 0.0
    advice = _advice(peak_dbfs, snr)
    return PathCalibration(
        latency_samples=median,
        latency_ms=median / fs * 1000,
        latency_spread_samples=spread,
        snr_db=snr,
        noise_floor_dbfs=_db(noise_power) if noise_power > 0 else -150.0,
        peak_dbfs=peak_dbfs,
        drift_ppm=drift,
        confidence=confidence,
        advice=advice,
        lags_samples=tuple(float(v) for v in lags),
    )


def _locate_sweeps(
    x: np.ndarray,
    sweep: np.ndarray,
    starts: list[int],
    fs: int,
    max_latency_samples: int,
    exclusion_s: float,
) -> tuple[list[float], list[float], list[float]]:
    """(lag after its start, samples; correlation confidence; the channel's mean power over
    it) of each sweep played at `starts`, searched up to `max_latency_samples` late."""
    lags, confs, powers = [], [], []
    for s in starts:
        m = locate(x, sweep, fs, search=(s, s + max_latency_samples + 1), exclusion_s=exclusion_s)
        lag = refine_lag(x, sweep, m.lag_samples) if m.peak > 0.05 else m.lag_samples
        lags.append(lag - s)
        confs.append(m.confidence)
        a = int(round(lag))
        seg = x[max(0, a) : max(0, a) + len(sweep)]
        powers.append(float(np.mean(seg**2)) if seg.size else 0.0)
    return lags, confs, powers


def _advice(peak_dbfs: float, snr: float) -> str:
    """What to change about a path's level ("ok" when nothing)."""
    if peak_dbfs >= CLIP_DBFS:
        return f"clipping (peak {peak_dbfs:.1f} dBFS): lower the mouth or input gain"
    if peak_dbfs < QUIET_DBFS:
        return f"too quiet (peak {peak_dbfs:.1f} dBFS): raise the input gain"
    if snr < 30:
        return f"noisy (SNR {snr:.0f} dB): raise the level or quieten the room"
    return "ok"


def check_level_dbfs(level_dbfs: float, option: str = "level_dbfs") -> float:
    """`level_dbfs` if it is a finite sweep peak in `LEVEL_RANGE_DBFS`, else InputError
    naming `option` (a NaN level made a silent sweep that "calibrated" to 0 samples)."""
    lo, hi = LEVEL_RANGE_DBFS
    if not (isinstance(level_dbfs, int | float) and math.isfinite(level_dbfs)):
        raise InputError(
            f"{option} {level_dbfs!r}: expected a finite level in dBFS, {lo:g}..{hi:g}"
        )
    if not lo <= level_dbfs <= hi:
        raise InputError(f"{option} {level_dbfs:g}: expected {lo:g}..{hi:g} dBFS")
    return float(level_dbfs)


def measurement_signal(
    sample_rate_hz: int, repeats: int, level_dbfs: float = -6.0
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(mouth signal, the sweep, the sweeps' start samples)."""
    fs = sample_rate_hz
    sweep = log_sweep(fs, SWEEP_S, level_dbfs)
    step = len(sweep) + int(GAP_S * fs)
    starts = [int(LEAD_S * fs) + i * step for i in range(repeats)]
    mouth = np.zeros(starts[-1] + step + int(0.2 * fs), dtype=np.float32)
    for s in starts:
        mouth[s : s + len(sweep)] = sweep
    return mouth, sweep, starts


def calibrate(
    rig: AudioRig,
    *,
    repeats: int = 8,
    level_dbfs: float = -6.0,
    max_latency_s: float = 0.3,
) -> Calibration:
    """Run the measurement on an open rig and analyse it (CalibrationRefused when poor)."""
    if not 1 <= repeats <= 200:
        raise ValueError(f"repeats must be 1..200, got {repeats}")
    check_level_dbfs(level_dbfs)
    fs = rig.sample_rate_hz
    mouth, sweep, starts = measurement_signal(fs, repeats, level_dbfs)
    cap: Capture = play_and_record(rig, mouth, len(mouth) / fs)
    return analyse_capture(cap, sweep, starts, rig, max_latency_s=max_latency_s)


def analyse_capture(
    cap: Capture,
    sweep: np.ndarray,
    starts: list[int],
    rig: AudioRig,
    *,
    max_latency_s: float = 0.3,
) -> Calibration:
    """Figures from a calibration capture (see `calibrate`)."""
    fs = cap.sample_rate_hz
    max_lat = int(max_latency_s * fs)
    ref = analyse_path(cap.ref, sweep, starts, fs, max_lat)
    if isinstance(ref, str):
        raise CalibrationRefused(
            f"rig {rig.name!r}: mouth -> ref: {ref}. Is the mouth output looped back to the "
            f"ref input (channel {rig.channels.ref + 1})?"
        )
    ear = analyse_path(
        cap.ear, sweep, starts, fs, max_lat, exclusion_s=0.03, min_confidence=ROOM_MIN_CONFIDENCE
    )
    ear_note = "" if not isinstance(ear, str) else f"mouth -> ear not measured: {ear}"
    profile = getattr(rig, "profile", None)
    return Calibration(
        rig=rig.name,
        profile=str(profile.path or profile.source) if profile is not None else "",
        sample_rate_hz=fs,
        repeats=len(starts),
        ref=ref,
        ear=None if isinstance(ear, str) else ear,
        ear_note=ear_note,
        expected_latency_samples=rig.latency().expected_mouth_to_ref,
        xruns=cap.status.xrun_count,
        measured_at_unix_s=time.time(),
    )


# ------------------------------------------------------------------------------------------
# Cache
# ------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where calibrations are kept: $TYMPAN_CACHE_DIR, else $XDG_CACHE_HOME/tympan/calibration
    (~/.cache/tympan/calibration); never inside the repository."""
    if os.environ.get("TYMPAN_CACHE_DIR"):
        return Path(os.environ["TYMPAN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tympan" / "calibration"


def cache_path(profile: RigProfile) -> Path:
    """The cache file of one profile (by name and where it lives)."""
    where = str(profile.path.resolve()) if profile.path else profile.source
    key = hashlib.sha256(where.encode()).hexdigest()[:12]
    return cache_dir() / f"{profile.name}-{key}.json"


def calibration_problem(doc: dict[str, Any]) -> str | None:
    """Why a calibration (its JSON) must not be used, or None: the mouth -> ref latency a
    whole number of samples >= 0, and a confidence that is a finite number >= the
    threshold (a NaN one once wrote "0 samples" into the cache, and every later run on the
    rig was off by its true latency)."""
    lat, conf = doc.get("latency_samples"), doc.get("confidence")
    if isinstance(lat, bool) or not isinstance(lat, int) or lat < 0:
        return f"latency_samples {lat!r} is not a whole number of samples >= 0"
    if isinstance(conf, bool) or not isinstance(conf, int | float) or not math.isfinite(conf):
        return f"confidence {conf!r} is not a finite number"
    if conf < MIN_CONFIDENCE:
        return f"confidence {conf:.3f} is below {MIN_CONFIDENCE}"
    return None


def save_cached(profile: RigProfile, calibration: Calibration) -> Path:
    """Write the calibration next to the profile's other cached results; returns the path.
    CalibrationRefused (nothing written) when it is not fit to be used
    (`calibration_problem`)."""
    why = calibration_problem(calibration.to_json())
    if why is not None:
        raise CalibrationRefused(f"{profile.name}: not saved: {why}")
    path = cache_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = calibration.to_json() | {"profile_sha256": profile.sha256}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(path)
    return path


def load_cached(profile: RigProfile) -> dict[str, Any] | None:
    """The cached calibration of this profile, if any and if the profile has not changed.

    Raises RigError naming the file when the cache holds a calibration that must not be
    used (`calibration_problem`): a later run would otherwise be off by the rig's latency.
    """
    path = cache_path(profile)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("profile_sha256") != profile.sha256:
        return None
    why = calibration_problem(doc)
    if why is not None:
        raise CachedCalibrationError(
            f"{path}: the cached calibration of rig {profile.name!r} cannot be used: {why}; "
            f"run `tympan calibrate --rig {profile.path or profile.name}` again, or delete the file"
        )
    return doc


class CachedCalibrationError(RigError, InputError):
    """A calibration cache file holds figures that must not be used (the file is named)."""
