"""DUT specs: every form parses; bad ones name the spec, the forms and what was seen."""

from __future__ import annotations

import pytest

from harness.errors import InputError
from harness.scenario import FORMS, DutSpec, DutSpecError, parse_dut_spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("reference", DutSpec("reference", "reference")),
        (
            "reference:fault=no-cancel",
            DutSpec("reference", "reference:fault=no-cancel", options=(("fault", "no-cancel"),)),
        ),
        ("scripted", DutSpec("scripted", "scripted")),
        ("jack:my-agent", DutSpec("jack", "jack:my-agent", client="my-agent")),
        (
            "reference:fault=stale-audio,serial=rfc2217://lab:4000?ign_set_control",
            DutSpec(
                "reference",
                "reference:fault=stale-audio,serial=rfc2217://lab:4000?ign_set_control",
                options=(("fault", "stale-audio"),),
                serial_url="rfc2217://lab:4000?ign_set_control",
            ),
        ),
        (
            "scripted,serial=loop://",
            DutSpec("scripted", "scripted,serial=loop://", serial_url="loop://"),
        ),
        (
            "jack:bot,serial=/dev/ttyUSB0",
            DutSpec(
                "jack", "jack:bot,serial=/dev/ttyUSB0", client="bot", serial_url="/dev/ttyUSB0"
            ),
        ),
    ],
)
def test_good_specs(text, expected):
    spec = parse_dut_spec(text)
    assert spec == expected
    assert spec.fault == dict(expected.options).get("fault")


def test_a_framework_bot_is_its_script_and_arguments():
    bot = parse_dut_spec("pipecat:examples/pipecat_bot/bot.py")
    assert (bot.kind, bot.command, bot.argv) == (
        "pipecat",
        "examples/pipecat_bot/bot.py",
        ("examples/pipecat_bot/bot.py",),
    )
    agent = parse_dut_spec("livekit:agent.py")
    assert agent.argv == ("agent.py", "console")  # LiveKit's own offline mode by default
    own = parse_dut_spec("livekit:agent.py,python=/opt/lk/bin/python,args=jack --x 'a b'")
    assert own.argv == ("agent.py", "jack", "--x", "a b")
    assert own.option("python") == "/opt/lk/bin/python"


def test_cmd_keeps_the_command_and_splits_it():
    spec = parse_dut_spec("cmd:\"python examples/delay_bot.py --delay-ms 700 --name 'a b'\"")
    assert spec.kind == "cmd"
    assert spec.command == "python examples/delay_bot.py --delay-ms 700 --name 'a b'"
    assert spec.argv == ("python", "examples/delay_bot.py", "--delay-ms", "700", "--name", "a b")
    assert spec.serial_url is None
    with_serial = parse_dut_spec('cmd:"bot --x 1",serial=socket://localhost:5000')
    assert with_serial.argv == ("bot", "--x", "1")
    assert with_serial.serial_url == "socket://localhost:5000"
    unquoted = parse_dut_spec("cmd:bot --fast")
    assert unquoted.argv == ("bot", "--fast")


@pytest.mark.parametrize(
    ("text", "seen"),
    [
        ("", "empty"),
        ("robot", "unknown DUT kind 'robot'"),
        ("reference:fault=slow-tts", "unknown fault 'slow-tts'"),
        ("reference:colour=red", "no option 'colour'"),
        ("reference:fault", "'fault' is not KEY=VALUE"),
        ("jack:", "needs a JACK client name"),
        ("cmd:", "the command is empty"),
        ('cmd:"bot --x', "never closed"),
        ('cmd:"bot" --x', "unexpected '--x'"),
        ("scripted:fast", "takes no options"),
        ("pipecat:", "needs the bot's script"),
        ("livekit:a.py,colour=red", "unknown option 'colour=red'"),
        ("pipecat:b.py,args='x", "cannot split args"),
        ("pipecat:b.py,serial=loop://", "takes no serial="),
    ],
)
def test_bad_specs_say_what_was_expected_and_seen(text, seen):
    with pytest.raises(DutSpecError) as err:
        parse_dut_spec(text)
    msg = str(err.value)
    assert isinstance(err.value, InputError)  # the CLI's exit status 2, no traceback
    assert f"--dut {text!r}" in msg
    assert seen in msg
    for form in FORMS:
        assert form in msg
    if "fault" in text:
        assert "no-cancel" in msg and "serialized-llm" in msg  # the fault names are listed
