"""Config loading (strict keys, one-line errors), telemetry sinks, and CLI argument errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from device.agent.config import FAULTS, AgentConfig, config_from_mapping, load_config
from device.agent.errors import ConfigError
from device.agent.events import JsonlFileSink, MemorySink, Telemetry, read_events


def test_toml_config_overrides_defaults(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('fault = "token-tts"\n[vad]\nsilence_ms = 250\n[llm]\ntokens_per_s = 80\n')
    cfg = load_config(path)
    assert cfg.vad.silence_ms == 250 and cfg.llm.tokens_per_s == 80.0
    assert cfg.fault == "token-tts" and cfg.chunker == AgentConfig().chunker


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"vad": {"silense_ms": 1}}, "unknown key 'vad.silense_ms' (expected one of: vad.engine"),
        ({"vda": {}}, "unknown key 'vda' (expected one of: vad, asr"),
        ({"vad": {"silence_ms": "x"}}, "key 'vad.silence_ms' expects an integer, got 'x'"),
        ({"tts": {"engine": "sam"}}, "key 'tts.engine' expects one of piper, espeak, got 'sam'"),
        ({"fault": "slow"}, "unknown fault 'slow' (expected one of: serialized-llm"),
    ],
)
def test_bad_config_names_the_key(data, message):
    with pytest.raises(ConfigError, match=None) as info:
        config_from_mapping(data, "f.toml")
    assert message in str(info.value) and str(info.value).startswith("f.toml: ")


def test_bad_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad)


def test_telemetry_to_jsonl_and_memory(tmp_path):
    sink = JsonlFileSink(tmp_path / "e.jsonl")
    tel = Telemetry(sink)
    tel.emit("vad_speech_start", turn=1, input_s=0.5)
    tel.emit("state", state="listening")
    sink.close()
    events = read_events(tmp_path / "e.jsonl")
    assert [e["event"] for e in events] == ["vad_speech_start", "state"]
    assert events[0]["turn"] == 1 and events[0]["t_us"] <= events[1]["t_us"]
    mem = MemorySink()
    with pytest.raises(ValueError, match="unknown event name"):
        Telemetry(mem).emit("nonsense")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device.agent", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--input", "nope.wav", "--output", "o.wav"], "--input nope.wav: file not found"),
        (["--input", "x.wav", "--output", "o.wav", "--fault", "slow"], "unknown fault 'slow'"),
        (["--output", "o.wav"], "the following arguments are required: --input"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, expected):
    result = cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_cli_bad_config_key(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"pipeline": {"tts_queue": 3}}))
    result = cli(
        "--input", "audio_corpus/speech/sq01_time.wav", "--output", "o.wav", "--config", str(cfg)
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"{cfg}: unknown key 'pipeline.tts_queue'" in result.stderr


def test_every_fault_has_a_description():
    assert set(FAULTS) == {
        "serialized-llm",
        "partial-to-llm",
        "token-tts",
        "no-cancel",
        "stale-audio",
        "blocking-call",
        "gil-holding-call",
        "unbounded-queue",
    }
