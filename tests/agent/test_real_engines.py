"""Real engines on corpus files: file mode end to end, and one check per engine."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from device.agent.audio import resample
from device.agent.config import AgentConfig
from device.agent.engines import load_engines
from device.agent.engines.tts import EspeakTts
from device.agent.engines.vad import WebrtcVad
from device.agent.events import read_events
from device.agent.filemode import read_input, run_file
from harness.corpus import Corpus

ORDER = [
    "session_start",
    "vad_speech_start",
    "vad_speech_end",
    "asr_final",
    "llm_request",
    "llm_first_token",
    "tts_chunk",
    "llm_done",
    "tts_first_audio",
    "playback_start",
    "turn_summary",
    "playback_end",
    "session_end",
]


def heard(real_engines, wav) -> str:
    x, rate = read_input(wav)
    return real_engines.asr.transcribe(resample(x, rate, 16000), True).lower()


def test_file_mode_cli_answers_a_corpus_question(tmp_path, real_engines):
    """`python -m device.agent` with the default engines (silero, whisper, scripted, piper):
    the reply is intelligible (whisper hears the reply keywords) and the events are
    complete and ordered."""
    u = Corpus.load().by_id("sq10_paris")
    reply, events_path = tmp_path / "reply.wav", tmp_path / "events.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "device.agent",
            "--input",
            str(u.path),
            "--output",
            str(reply),
            "--events",
            str(events_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    events = read_events(events_path)
    names = [e["event"] for e in events]
    stamps = [next(e["t_us"] for e in events if e["event"] == n) for n in ORDER]
    assert stamps == sorted(stamps), names
    assert [e["t_us"] for e in events] == sorted(e["t_us"] for e in events)
    assert (
        "capital of france" in next(e["text"] for e in events if e["event"] == "asr_final").lower()
    )
    x, rate = read_input(reply)
    assert rate == u.sample_rate_hz and len(x) >= u.duration_s * rate
    start = next(e["output_s"] for e in events if e["event"] == "playback_start")
    assert start > u.speech_end_s and np.max(np.abs(x[: int((start - 0.02) * rate)])) == 0
    text = heard(real_engines, reply)
    assert all(k in text for k in u.reply_keywords), text


def test_whisper_partials_and_final_on_a_long_question(tmp_path, real_engines):
    # (lq01 would do, but tiny.en hears piper's "umbrella" as "in a burrow")
    u = Corpus.load().by_id("lq04_commute_snow")
    result = run_file(u.path, tmp_path / "r.wav", None, AgentConfig(), engines=real_engines)
    partials = [e.get("text") for e in result.events if e.event == "asr_partial"]
    final = [e.get("text") for e in result.events if e.event == "asr_final"][-1].lower()
    assert len(partials) >= 5 and "snow" in final and "temperature" in final
    assert all(k in heard(real_engines, tmp_path / "r.wav") for k in u.reply_keywords)


def test_webrtc_vad_finds_the_utterance(tmp_path, real_engines):
    u = Corpus.load().by_id("sq04_ounces")
    vad = WebrtcVad()
    x, rate = read_input(u.path)
    x16 = resample(x, rate, 16000)
    voiced = [
        k * 480 / 16000
        for k in range(len(x16) // 480)
        if vad.prob(x16[k * 480 : (k + 1) * 480]) > 0.5
    ]
    assert abs(voiced[0] - u.speech_start_s) < 0.1 and abs(voiced[-1] - u.speech_end_s) < 0.15
    cfg = AgentConfig().replace(vad={"engine": "webrtc"})
    engines = load_engines(cfg.replace(tts={"engine": "piper"}))
    result = run_file(u.path, tmp_path / "r.wav", None, cfg, engines=engines)
    assert [e.event for e in result.events].count("playback_start") == 1


def test_espeak_tts_is_intelligible(real_engines):
    tts = EspeakTts()
    audio = tts.synthesize("The capital of France is Paris.")
    assert tts.sample_rate_hz == 22050 and len(audio) > tts.sample_rate_hz
    text = real_engines.asr.transcribe(resample(audio, tts.sample_rate_hz, 16000), True)
    assert "paris" in text.lower(), text


def test_piper_is_bit_identical(real_engines):
    a = real_engines.tts.synthesize("Now playing some relaxing jazz music.")
    b = real_engines.tts.synthesize("Now playing some relaxing jazz music.")
    assert np.array_equal(a, b) and len(a) > 0


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed (the [llm] extra builds it from source)",
)
def test_llama_llm_answers(tmp_path):
    from device.agent.engines import Message
    from device.agent.engines.llm import LlamaLlm

    reply = "".join(LlamaLlm().stream([Message("user", "What is the capital of France?")]))
    assert "paris" in reply.lower()
