"""Rigs: the audio path between the harness and a DUT, behind one interface.

Map:
    base        AudioRig (Protocol), RigSession, Capture, RigStatus, play_and_record, errors
    profile     rig profiles (fixtures/*.toml): load and validate
    sim         in-process simulated room with a Python DUT (ScriptedDut, PassthroughDut, ...)
    jackd       start/stop a JACK server by PID, never leaving an orphan
    loopback    JACK virtual loopback (JACK-Client): what CI uses
    soundcard   a lab rig on a real interface (python-sounddevice), also usable through JACK
    calibrate   latency / SNR / drift measurement with a log sweep, and its cache
    cli         `tympan calibrate`, `tympan devices`

``open_rig("sim" | "loopback" | "path/to/profile.toml")`` returns an unopened rig; use it as a
context manager. Backends are looked up by the profile's ``[rig] kind`` in `BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.rigs.base import (
    AudioRig,
    Block,
    CalibrationRefused,
    Capture,
    ChannelMap,
    ProfileError,
    RigError,
    RigLatency,
    RigSession,
    RigStatus,
    RigUnavailable,
    SessionError,
    Xrun,
    play_and_record,
)
from harness.rigs.clock import HostClockMap, fit_host_clock
from harness.rigs.profile import RigProfile, load_profile


def _sim(profile: RigProfile, **kw: Any) -> AudioRig:
    from harness.rigs.sim import SimRig

    return SimRig(profile, **kw)


def _loopback(profile: RigProfile, **kw: Any) -> AudioRig:
    from harness.rigs.loopback import LoopbackRig

    return LoopbackRig(profile, **kw)


def _soundcard(profile: RigProfile, **kw: Any) -> AudioRig:
    from harness.rigs.soundcard import SoundcardRig

    return SoundcardRig(profile, **kw)


BACKENDS: dict[str, Callable[..., AudioRig]] = {
    "sim": _sim,
    "loopback": _loopback,
    "soundcard": _soundcard,
}
"""Backend constructors by profile kind; each takes (profile, **backend options)."""


def open_rig(spec: str | Path | RigProfile, *, use_cache: bool = True, **options: Any) -> AudioRig:
    """The rig a short name ("sim", "loopback"), a profile path or a loaded profile describes.

    options go to the backend: ``dut=`` (a SimDut object) for sim, ``dut="CLIENT"`` for
    loopback. With `use_cache`, the last calibration of this profile (if any) fills the rig's
    calibrated latency figures. The rig is not opened yet: ``with open_rig("sim") as rig: ...``.
    """
    profile = spec if isinstance(spec, RigProfile) else load_profile(spec)
    rig = BACKENDS[profile.kind](profile, **options)
    if use_cache:
        from harness.rigs.calibrate import load_cached

        cached = load_cached(profile)
        if cached is not None:
            rig.calibrated_mouth_to_ref = cached.get("latency_samples")  # type: ignore[attr-defined]
            ear = cached.get("ear") or {}
            rig.calibrated_mouth_to_ear = ear.get("latency_samples")  # type: ignore[attr-defined]
    return rig


__all__ = [
    "BACKENDS",
    "AudioRig",
    "Block",
    "CalibrationRefused",
    "Capture",
    "ChannelMap",
    "HostClockMap",
    "ProfileError",
    "RigError",
    "RigLatency",
    "RigProfile",
    "RigSession",
    "RigStatus",
    "RigUnavailable",
    "SessionError",
    "Xrun",
    "fit_host_clock",
    "load_profile",
    "open_rig",
    "play_and_record",
]
