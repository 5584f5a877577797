"""The pytest plugin, driven through pytester on the sim rig with its scripted DUT (fast and
deterministic: it answers 600 ms after the user stops, and stops 200 ms into a barge-in)."""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]

SIM = ("--tympan-rig=sim", "--tympan-dut=scripted")


def results(pytester: pytest.Pytester, out: str = "out") -> dict:
    return json.loads((pytester.path / out / "results.json").read_text())


def test_options_are_in_their_own_help_group(pytester: pytest.Pytester):
    result = pytester.runpytest_subprocess("--help")
    text = result.stdout.str()
    assert "tympan: latency, chunking and barge-in of voice agents" in text
    for name in ("rig", "dut", "budgets", "repeat", "out", "corpus", "limit"):
        assert f"--tympan-{name}" in text


def test_corpus_marker_parametrises_with_readable_ids_and_writes_results(
    pytester: pytest.Pytester,
):
    pytester.makepyfile(
        """
        import pytest
        from harness.assertions import assert_checks

        @pytest.mark.corpus(category="short_question", limit=2)
        def test_answered(turn, utterance):
            t = turn(utterance)
            assert t.metrics.ttfa_ms is not None
            assert_checks(t.checks_of("turn-taking"), t)
        """
    )
    result = pytester.runpytest_subprocess(*SIM, "--tympan-out=out", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_answered[[]sq01_time[]] PASSED*",
            "*test_answered[[]sq02_weather_today[]] PASSED*",
            "*tympan latency summary*",
            "ttfa_ms * 2 *",
        ]
    )
    assert "tympan: sq01_time" in result.stdout.str()  # one progress line per turn
    r = results(pytester)
    assert [t["utterance"] for t in r["turns"]] == ["sq01_time", "sq02_weather_today"]
    for t in r["turns"]:
        # the scripted DUT answers 600 ms after the user stops (+ the room's few ms)
        assert 600 < t["metrics"]["ttfa_ms"] < 760, t["metrics"]
        assert (pytester.path / "out" / t["evidence"]["capture_wav"]).is_file()
    assert r["summary"]["ttfa_ms"]["n"] == 2


def test_pyproject_settings_and_repeat(pytester: pytest.Pytester):
    pytester.makepyprojecttoml(
        """
        [tool.tympan]
        rig = "sim"
        dut = "scripted"
        repeat = 2
        out = "from-pyproject"
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.corpus(ids=["sq01_time"])
        def test_twice(turn, utterance):
            assert turn(utterance).metrics.ttfa_ms > 0
        """
    )
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_twice[[]sq01_time-trial1[]]*", "*[[]sq01_time-trial2[]]*"])
    r = results(pytester, "from-pyproject")
    assert [t["repeat"] for t in r["turns"]] == [0, 1]  # two trials were really played


def test_the_same_turn_is_played_once_for_several_tests(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        def test_a(turn):
            assert turn("sq01_time").metrics.ttfa_ms > 0

        def test_b(turn):
            assert turn("sq01_time").metrics.ttfa_ms > 0
        """
    )
    pytester.runpytest_subprocess(*SIM, "--tympan-out=out").assert_outcomes(passed=2)
    assert len(results(pytester)["turns"]) == 1


def test_budget_marker_fails_with_the_distribution(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        from harness.assertions import check_budget, ContractError

        @pytest.mark.tympan_budget("ttfa_ms", p95=300)
        def test_fast(turn, budgets, tympan_session):
            turn("sq01_time")
            (limit,) = [b for b in budgets.for_metric("ttfa_ms") if b.percentile == "p95"]
            check = check_budget(limit, tympan_session.samples()["ttfa_ms"])
            if not check.passed:
                raise ContractError("[budget] " + check.message)
        """
    )
    result = pytester.runpytest_subprocess(*SIM, "--tympan-out=out")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*[[]budget[]] ttfa_ms p95 = * (budget 300)*worst: sq01_time*"])


def test_barge_in_and_conversation(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest
        from harness.assertions import assert_checks

        # the scripted DUT stops 200 ms after it hears the user: above the default budget
        @pytest.mark.tympan_budget("stop_latency_ms", p95=400)
        def test_interrupt(turn):
            t = turn("sq01_time", barge_in="bi01_stop", barge_in_offset_ms=400)
            assert t.metrics.stop_latency_ms is not None
            assert_checks([c for c in t.checks if c.name == "reply stops on barge-in"], t)

        def test_two_turns(conversation):
            a = conversation.say("sq01_time")
            b = conversation.say("sq01_time")
            assert a.name != b.name and len(conversation.turns) == 2

        def test_one_call(conversation):
            # Back to back in one capture, measured as a recorded call (not judged).
            call = conversation.call("sq01_time", "sq03_timer")
            assert len(call.turns) == 2 and call.paths["capture_wav"].is_file()
            for t in call.turns:
                assert t.metrics.discard is None, t.metrics.discard
                assert 550 < t.metrics.ttfa_ms < 900, t.metrics.ttfa_ms
            assert call.turns[1].metrics.context_segments  # the first reply
        """
    )
    pytester.runpytest_subprocess(*SIM, "--tympan-out=out").assert_outcomes(passed=3)
    r = results(pytester)
    barge = r["turns"][0]
    assert barge["barge_in_offset_ms"] == 400
    # scripted: stops 200 ms after its -40 dBFS threshold hears the barge-in (the clip's
    # first sound, 50 dB under its peak, comes earlier) + the room's paths and one block
    assert 200 < barge["metrics"]["stop_latency_ms"] < 300
    assert len(r["turns"]) == 3


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--tympan-dut=robot",), ["robot", "reference"]),
        (("--tympan-dut=reference:fault=slow",), ["slow", "serialized-llm"]),
        (("--tympan-budgets=nope.toml",), ["nope.toml", "not found"]),
    ],
)
def test_bad_settings_are_usage_errors(pytester: pytest.Pytester, args, words):
    pytester.makepyfile("def test_x(turn):\n    turn('sq01_time')\n")
    result = pytester.runpytest_subprocess("--tympan-rig=sim", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    for w in words:
        assert w in err


def test_unknown_pyproject_key(pytester: pytest.Pytester):
    pytester.makepyprojecttoml("[tool.tympan]\nrigg = 'sim'\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "[tool.tympan] rigg: unknown key" in result.stderr.str()
