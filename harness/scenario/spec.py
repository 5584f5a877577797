"""DUT specs: the text after ``--dut`` (and ``--tympan-dut``), parsed and checked.

Forms (each optionally followed by ``,serial=URL`` for a telemetry link)::

    reference                   the reference agent (a registered backend, see duts.py)
    reference:fault=NAME        ... with one classic pipeline mistake switched on
    scripted                    the sim rig's own profile DUT ([sim] dut), faster than real time
    jack:CLIENT                 an already running JACK client, wired by name (loopback)
    cmd:"COMMAND ARGS"          start COMMAND, wait for its new JACK client, wire it (loopback)
    pipecat:BOT.py[,python=PY][,args=A B]   a Pipecat bot, unmodified, observed (loopback)
    livekit:AGENT.py[,python=PY][,args=A B] a LiveKit agent (default args: console), the same

Other backends registered under the ``tympan.duts`` entry-point group take the reference
form: ``NAME[:KEY=VALUE,...]``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from harness.scenario.backends import (
    FRAMEWORK_ARGS,
    FRAMEWORK_KINDS,
    DutSpecError,
    backend_names,
    load_backend,
)

__all__ = ["FORMS", "DutSpec", "DutSpecError", "parse_dut_spec"]


FORMS = (
    "reference",
    "reference:fault=NAME",
    "scripted",
    "jack:CLIENT",
    'cmd:"COMMAND ARGS"',
    "pipecat:BOT.py[,python=PY][,args=ARGS]",
    "livekit:AGENT.py[,python=PY][,args=ARGS]",
)
"""The spec forms, as error messages list them."""


@dataclass(frozen=True)
class DutSpec:
    """A parsed DUT spec.

    kind: "reference", "scripted", "jack", "cmd", "pipecat", "livekit" or another
    registered backend's name. text: the spec as given. client: the JACK client name (jack).
    command: the command line (cmd) or the bot's script (pipecat, livekit), and argv its
    shlex split. options: ``(key, value)`` pairs of a backend (e.g.
    ``(("fault", "no-cancel"),)``). serial_url: the telemetry link's pyserial URL, or None.
    """

    kind: str
    text: str
    client: str | None = None
    command: str | None = None
    argv: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()
    serial_url: str | None = None

    def option(self, key: str, default: str | None = None) -> str | None:
        """A backend option's value, or `default`."""
        return dict(self.options).get(key, default)

    @property
    def fault(self) -> str | None:
        """The reference agent's fault knob, or None."""
        return self.option("fault")


_SERIAL = re.compile(r",serial=(?P<url>[^,\s]+)$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


def _expected(faults: tuple[str, ...] | None = None) -> str:
    text = "expected one of: " + ", ".join(FORMS) + " (each optionally followed by ,serial=URL)"
    if faults:
        text += "; fault NAME is one of: " + ", ".join(faults)
    return text


def parse_dut_spec(text: str) -> DutSpec:
    """Parse a DUT spec (see the module docstring); raises `DutSpecError` naming the spec,
    what was expected (the forms, and for ``fault=`` the fault names) and what was seen."""
    raw = text
    if not isinstance(text, str) or not text.strip():
        raise DutSpecError(f"--dut {raw!r}: empty DUT spec; {_expected()}")
    s = text.strip()
    serial = None
    kind, sep, rest = s.partition(":")
    if kind == "cmd" and sep:
        return _parse_cmd(raw, rest)
    if kind in FRAMEWORK_KINDS:
        return _parse_framework(raw, kind, rest if sep else "")
    m = _SERIAL.search(s)
    if m:
        serial = m.group("url")
        s = s[: m.start()]
        kind, sep, rest = s.partition(":")
    kind = kind.strip()
    if "," in kind:  # "reference,serial=..." is handled above; anything else is not a form
        kind, _, extra = kind.partition(",")
        raise DutSpecError(f"--dut {raw!r}: unknown option {extra!r} after {kind!r}; {_expected()}")
    if kind == "scripted":
        if sep:
            raise DutSpecError(f"--dut {raw!r}: 'scripted' takes no options; {_expected()}")
        return DutSpec("scripted", raw, serial_url=serial)
    if kind == "jack":
        client = rest.strip()
        if not client:
            raise DutSpecError(f"--dut {raw!r}: jack: needs a JACK client name; {_expected()}")
        return DutSpec("jack", raw, client=client, serial_url=serial)
    if kind == "cmd":
        raise DutSpecError(f"--dut {raw!r}: cmd: needs a command; {_expected()}")
    names = backend_names()
    if kind not in names:
        raise DutSpecError(
            f"--dut {raw!r}: unknown DUT kind {kind!r} (registered backends: "
            f"{', '.join(sorted(names)) or 'none'}); {_expected()}"
        )
    backend = load_backend(kind)
    choices: dict[str, tuple[str, ...]] = dict(getattr(backend, "option_choices", {}))
    options: list[tuple[str, str]] = []
    if sep:
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not eq or not key or not value:
                raise DutSpecError(
                    f"--dut {raw!r}: option {item!r} is not KEY=VALUE; "
                    f"{_expected(choices.get('fault'))}"
                )
            if key not in choices:
                raise DutSpecError(
                    f"--dut {raw!r}: {kind} has no option {key!r} (options: "
                    f"{', '.join(sorted(choices)) or 'none'}); {_expected(choices.get('fault'))}"
                )
            allowed = choices[key]
            if allowed and value not in allowed:
                raise DutSpecError(
                    f"--dut {raw!r}: unknown {key} {value!r}; {_expected(choices.get('fault'))}"
                    if key == "fault"
                    else f"--dut {raw!r}: unknown {key} {value!r} (one of: {', '.join(allowed)})"
                )
            options.append((key, value))
    return DutSpec(kind, raw, options=tuple(options), serial_url=serial)


def _parse_cmd(raw: str, rest: str) -> DutSpec:
    rest = rest.strip()
    serial = None
    if rest[:1] in ("'", '"'):
        quote = rest[0]
        command, close = _unquote(rest, quote)
        if close < 0:
            raise DutSpecError(
                f"--dut {raw!r}: cmd: the quote {quote} is never closed; {_expected()}"
            )
        tail = rest[close + 1 :].strip()
        if tail:
            m = _SERIAL.fullmatch(tail) if tail.startswith(",") else None
            if m is None:
                raise DutSpecError(
                    f"--dut {raw!r}: unexpected {tail!r} after the quoted command; {_expected()}"
                )
            serial = m.group("url")
    else:
        m = _SERIAL.search(rest)
        if m:
            serial, rest = m.group("url"), rest[: m.start()]
        command = rest
    try:
        argv = tuple(shlex.split(command))
    except ValueError as exc:
        raise DutSpecError(
            f"--dut {raw!r}: cannot split the command: {exc}; {_expected()}"
        ) from None
    if not argv:
        raise DutSpecError(f"--dut {raw!r}: cmd: the command is empty; {_expected()}")
    return DutSpec("cmd", raw, command=command, argv=argv, serial_url=serial)


def _parse_framework(raw: str, kind: str, rest: str) -> DutSpec:
    """``KIND:SCRIPT[,python=PY][,args=ARGS]``: a framework's bot script, the Python of the
    framework's virtualenv (default: the one `make setup` made, see
    `harness.scenario.duts.framework_python`) and the script's arguments (shell words, no
    commas: the spec's items are split at commas first)."""
    script, *items = [part.strip() for part in rest.split(",")]
    if not script:
        raise DutSpecError(
            f"--dut {raw!r}: {kind}: needs the bot's script (e.g. "
            f"{kind}:examples/{kind}_{'bot/bot' if kind == 'pipecat' else 'agent/agent'}.py); "
            f"{_expected()}"
        )
    options: list[tuple[str, str]] = []
    for item in items:
        key, eq, value = (x.strip() for x in item.partition("="))
        if key == "serial":
            raise DutSpecError(
                f"--dut {raw!r}: {kind}: takes no serial= (its telemetry comes over the "
                f"observer tympan starts with it); {_expected()}"
            )
        if key in ("python", "args") and eq and value:
            options.append((key, value))
        else:
            raise DutSpecError(
                f"--dut {raw!r}: {kind}: unknown option {item!r} (options: python=PATH, "
                f"args=ARGS); {_expected()}"
            )
    args = dict(options).get("args")
    try:
        words = tuple(shlex.split(args)) if args is not None else FRAMEWORK_ARGS[kind]
    except ValueError as exc:
        raise DutSpecError(f"--dut {raw!r}: cannot split args: {exc}; {_expected()}") from None
    return DutSpec(
        kind,
        raw,
        command=script,
        argv=(script, *words),
        options=tuple(options),
    )


def _unquote(text: str, quote: str) -> tuple[str, int]:
    """The content of the quoted string opening `text` and the index of its closing quote
    (-1 if none). Inside double quotes a backslash escapes ``"`` and ``\\`` (as in a shell);
    single quotes take everything literally."""
    out = []
    i = 1
    while i < len(text):
        c = text[i]
        if quote == '"' and c == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            out.append(text[i + 1])
            i += 2
            continue
        if c == quote:
            return "".join(out), i
        out.append(c)
        i += 1
    return "".join(out), -1
