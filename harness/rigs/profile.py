"""Rig profiles: TOML files in ``fixtures/`` that say which rig, devices, channels and options.

A profile has a ``[rig]`` table (``kind``, ``sample_rate_hz``, ``block_frames``) and one table
for its kind (``[sim]``, ``[loopback]`` or ``[soundcard]``, with sub-tables). Every key is
checked on load: an unknown key, a wrong type or a value out of range is a `ProfileError`
naming the file, the key, the value and what is allowed. Defaults fill what is left out, so
``[rig] kind = "sim"`` alone is a valid profile. The short names ``sim`` and ``loopback``
stand for ``fixtures/sim.toml`` and ``fixtures/loopback.toml``.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.rigs.base import ChannelMap, ProfileError

FIXTURES_DIR: Path = Path(__file__).resolve().parent.parent.parent / "fixtures"
"""The repository's fixtures folder (rig profiles)."""

KINDS: tuple[str, ...] = ("sim", "loopback", "soundcard")

_NUM = (int, float)


@dataclass(frozen=True)
class Field:
    """One allowed key: its type(s), default, and the allowed choices or range."""

    types: type | tuple[type, ...]
    default: Any = None
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    length: int | None = None  # for lists: exact length
    required: bool = False

    def allowed(self) -> str:
        """What is allowed, in words."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        names = {int: "an integer", float: "a number", str: "a string", bool: "true/false"}
        types = self.types if isinstance(self.types, tuple) else (self.types,)
        if list in types:
            what = f"a list of {self.length} numbers" if self.length else "a list"
        elif set(types) == {int, float}:
            what = "a number"
        else:
            what = " or ".join(names.get(t, t.__name__) for t in types)
        if self.min is not None and self.max is not None:
            what += f" in {self.min:g}..{self.max:g}"
        elif self.min is not None:
            what += f" >= {self.min:g}"
        elif self.max is not None:
            what += f" <= {self.max:g}"
        return what


# Every table a profile may have, with its keys. Sub-tables are "parent.child".
SCHEMA: dict[str, dict[str, Field]] = {
    "rig": {
        "kind": Field(str, choices=KINDS, required=True),
        "sample_rate_hz": Field(int, 48000, min=8000, max=384000),
        "block_frames": Field(int, 1024, min=16, max=16384),
        "description": Field(str, ""),
    },
    "sim": {
        "seed": Field(int, 0, min=0),
        "output_latency_samples": Field(int, 64, min=0, max=96000),
        "input_latency_samples": Field(int, 64, min=0, max=96000),
        "ref_noise_dbfs": Field(_NUM, -120.0, max=0),
        "ear_noise_dbfs": Field(_NUM, -100.0, max=0),
        "dut": Field(str, "scripted", choices=("scripted", "passthrough", "silent")),
    },
    "sim.room": {
        "size_m": Field(list, [5.0, 4.0, 2.8], length=3),
        "rt60_s": Field(_NUM, 0.0, min=0.0, max=2.0),
        "mouth_m": Field(list, [1.5, 2.0, 1.2], length=3),
        "dut_mic_m": Field(list, [2.5, 2.0, 1.2], length=3),
        "dut_speaker_m": Field(list, [2.6, 2.0, 1.2], length=3),
        "ear_m": Field(list, [3.0, 2.0, 1.2], length=3),
    },
    "sim.paths": {
        "mouth_to_dut_db": Field(_NUM, 0.0, min=-120, max=20),
        "dut_to_ear_db": Field(_NUM, 0.0, min=-120, max=20),
        "mouth_to_ear_db": Field(_NUM, -20.0, min=-120, max=20),
        "dut_echo_db": Field(_NUM, -120.0, min=-120, max=20),
    },
    "sim.noise": {
        "bed": Field(str, ""),
        "level_dbfs": Field(_NUM, -60.0, max=0),
    },
    "sim.clock": {
        "dut_drift_ppm": Field(_NUM, 0.0, min=-2000, max=2000),
    },
    "sim.dropouts": {
        "at": Field(list, []),
        "per_minute": Field(_NUM, 0.0, min=0, max=600),
        "length_ms": Field(_NUM, 10.0, min=0.1, max=1000),
    },
    "sim.scripted": {
        "reply": Field(str, "corpus:sq01_time"),
        "trigger": Field(str, "speech_end", choices=("speech_end", "fixed")),
        "delay_ms": Field(_NUM, 600.0, min=0, max=60000),
        "at_s": Field(_NUM, 1.0, min=0),
        "threshold_dbfs": Field(_NUM, -45.0, max=0),
        "hangover_ms": Field(_NUM, 300.0, min=1, max=10000),
        "min_speech_ms": Field(_NUM, 100.0, min=0, max=10000),
        "stop_after_ms": Field(_NUM, -1.0, min=-1, max=60000),
        "passthrough_delay_samples": Field(int, 0, min=0, max=480000),
        "real_time": Field(bool, False),
    },
    "loopback": {
        "server": Field(str, ""),
        "period": Field(int, 1024, choices=(64, 128, 256, 512, 1024, 2048, 4096)),
        "client_name": Field(str, "tympan"),
        "dut": Field(str, ""),
        "start_timeout_s": Field(_NUM, 15.0, min=0.5, max=120),
    },
    "soundcard": {
        "device": Field((str, int), "", required=True),
        "input_device": Field((str, int), ""),
        "output_device": Field((str, int), ""),
        "host_api": Field(str, ""),
        "mouth_out": Field(list, [1]),
        "ref_in": Field(int, 1, min=1, max=64),
        "ear_in": Field(int, 2, min=1, max=64),
        "latency": Field((str, float), "low"),
        "jack_server": Field(str, ""),
        "jack_client_name": Field(str, "tympan"),
    },
    "serial": {
        "port": Field(str, ""),
        "baudrate": Field(int, 115200, min=50),
    },
}


@dataclass(frozen=True)
class RigProfile:
    """A validated profile.

    source: where it came from (a path, or "<name>" for a mapping). sha256: of the validated
    content (defaults filled in); a calibration cached under another hash is stale.
    tables: every table of SCHEMA with defaults filled in.
    """

    source: str
    path: Path | None
    name: str
    kind: str
    sample_rate_hz: int
    block_frames: int
    tables: dict[str, dict[str, Any]]
    sha256: str

    def table(self, name: str) -> dict[str, Any]:
        """One table (e.g. "sim.room") with defaults filled in."""
        return self.tables[name]

    def channels(self) -> ChannelMap:
        """The channel map (0-based) this profile describes."""
        if self.kind != "soundcard":
            return ChannelMap()
        sc = self.tables["soundcard"]
        mouth = tuple(int(c) - 1 for c in sc["mouth_out"])
        ref, ear = sc["ref_in"] - 1, sc["ear_in"] - 1
        return ChannelMap(mouth, ref, ear, outputs=max(mouth) + 1, inputs=max(ref, ear) + 1)


def _bad(source: str, key: str, value: object, allowed: str) -> ProfileError:
    return ProfileError(f"{source}: key {key} = {value!r} is not allowed; expected {allowed}")


def _check_value(source: str, key: str, value: object, spec: Field) -> object:
    types = spec.types if isinstance(spec.types, tuple) else (spec.types,)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok and float in types and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise _bad(source, key, value, spec.allowed())
    if spec.choices is not None and value not in spec.choices:
        raise _bad(source, key, value, spec.allowed())
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    too_low = is_number and spec.min is not None and value < spec.min  # type: ignore[operator]
    too_high = is_number and spec.max is not None and value > spec.max  # type: ignore[operator]
    if too_low or too_high:
        raise _bad(source, key, value, spec.allowed())
    if isinstance(value, list) and spec.length is not None:
        if len(value) != spec.length or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            raise _bad(source, key, value, spec.allowed())
        value = [float(v) for v in value]
    return value


def validate(data: dict[str, Any], source: str, path: Path | None = None) -> RigProfile:
    """Check a parsed profile against SCHEMA; fill defaults. Raises ProfileError."""
    tables: dict[str, dict[str, Any]] = {}

    def walk(prefix: str, table: dict[str, Any]) -> None:
        for key, value in table.items():
            full = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                if full not in SCHEMA:
                    allowed = sorted(t for t in SCHEMA if t.count(".") == full.count("."))
                    raise ProfileError(
                        f"{source}: unknown table [{full}]; allowed: "
                        + ", ".join(f"[{t}]" for t in allowed)
                    )
                tables[full] = {}
                walk(full, value)
            elif not prefix:
                raise ProfileError(
                    f"{source}: key {key} must be inside a table such as [rig] or [{key}]"
                )
            else:
                spec = SCHEMA[prefix].get(key)
                if spec is None:
                    raise ProfileError(
                        f"{source}: unknown key {full}; allowed in [{prefix}]: "
                        + ", ".join(sorted(SCHEMA[prefix]))
                    )
                tables[prefix][key] = _check_value(source, full, value, spec)

    walk("", data)
    if "rig" not in tables:
        raise ProfileError(f'{source}: missing table [rig] (with kind = "sim", "loopback" or ...)')
    for name, fields in SCHEMA.items():
        have = tables.setdefault(name, {})
        for key, spec in fields.items():
            if key not in have:
                if spec.required and (name == "rig" or name == tables["rig"].get("kind")):
                    raise ProfileError(f"{source}: missing key {name}.{key}; {spec.allowed()}")
                have[key] = list(spec.default) if isinstance(spec.default, list) else spec.default
    kind = tables["rig"]["kind"]
    for other in KINDS:
        if other != kind and other in data:
            raise ProfileError(f"{source}: has a [{other}] table but [rig] kind = {kind!r}")
    _check_cross(tables, source, kind)
    text = repr(sorted((k, sorted(v.items())) for k, v in tables.items()))
    name = path.stem if path is not None else source.strip("<>")
    return RigProfile(
        source=source,
        path=path,
        name=name,
        kind=kind,
        sample_rate_hz=tables["rig"]["sample_rate_hz"],
        block_frames=tables["rig"]["block_frames"],
        tables=tables,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


def _check_cross(tables: dict[str, dict[str, Any]], source: str, kind: str) -> None:
    if kind == "sim":
        room = tables["sim.room"]
        for key in ("mouth_m", "dut_mic_m", "dut_speaker_m", "ear_m"):
            pos = room[key]
            if not all(0 < p < s for p, s in zip(pos, room["size_m"], strict=True)):
                raise _bad(
                    source, f"sim.room.{key}", pos, f"a point inside the room {room['size_m']} m"
                )
        for i, item in enumerate(tables["sim.dropouts"]["at"]):
            if not (
                isinstance(item, list)
                and len(item) == 2
                and all(isinstance(v, (int, float)) and v >= 0 for v in item)
            ):
                raise _bad(
                    source, f"sim.dropouts.at[{i}]", item, "[start_s, length_ms] (two numbers)"
                )
        sc = tables["sim.scripted"]
        if sc["trigger"] == "speech_end" and sc["delay_ms"] < sc["hangover_ms"]:
            raise _bad(
                source,
                "sim.scripted.delay_ms",
                sc["delay_ms"],
                f">= hangover_ms ({sc['hangover_ms']:g}): the DUT knows speech ended only then",
            )
    if kind == "soundcard":
        mouth = tables["soundcard"]["mouth_out"]
        if not mouth or not all(isinstance(c, int) and 1 <= c <= 64 for c in mouth):
            raise _bad(source, "soundcard.mouth_out", mouth, "a list of channel numbers 1..64")
        sc = tables["soundcard"]
        if sc["ref_in"] == sc["ear_in"]:
            raise _bad(source, "soundcard.ear_in", sc["ear_in"], "a channel other than ref_in")
        if isinstance(sc["latency"], str) and sc["latency"] not in ("low", "high"):
            raise _bad(source, "soundcard.latency", sc["latency"], '"low", "high" or seconds')


def resolve(spec: str | Path) -> Path:
    """The profile file for a short name ("sim", "loopback") or a path."""
    text = str(spec)
    if text.endswith(".toml") or "/" in text:
        return Path(text)
    return FIXTURES_DIR / f"{text}.toml"


def _has_rig_table(path: Path) -> bool:
    """True for a rig profile (fixtures/ also holds budget files)."""
    try:
        return "rig" in tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False


def load_profile(spec: str | Path) -> RigProfile:
    """Load and validate a profile by short name or path. Raises ProfileError."""
    path = resolve(spec)
    if not path.is_file():
        known = sorted(p.stem for p in FIXTURES_DIR.glob("*.toml") if _has_rig_table(p))
        raise ProfileError(
            f"{path}: no such rig profile; use a short name ({', '.join(known)}) "
            "or the path of a .toml file"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"{path}: not valid TOML: {err}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ProfileError(f"{path}: cannot read: {err}") from err
    return validate(data, str(path), path)
