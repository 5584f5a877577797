"""Real engines on corpus files: file mode end to end, and one check per engine."""

from __future__ import annotations

import dataclasses
import importlib.util
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
from tests.agent.conftest import ORACLE
from tests.agent.helpers import SPECULATIVE_TURN_ORDER, converse, corpus_audio

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
# A reply started speculatively during the end-of-utterance silence (the usual case with
# the default config) makes its LLM request before the utterance's end is declared.
SPECULATIVE_ORDER = ["session_start", *SPECULATIVE_TURN_ORDER, "session_end"]


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
    speculative = next(e for e in events if e["event"] == "llm_request")["speculative"]
    chain = ["llm_request", "llm_first_token", "tts_chunk", "tts_first_audio", "playback_start"]
    for order in (chain, SPECULATIVE_ORDER if speculative else ORDER):
        stamps = [next(e["t_us"] for e in events if e["event"] == n) for n in order]
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


needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed (the [llm] extra builds it from source)",
)


@pytest.fixture(scope="module")
def llama():
    from device.agent.engines.llm import LlamaLlm

    llm = LlamaLlm()
    llm.warm_up()
    return llm


@needs_llama
def test_llama_llm_answers(llama):
    from device.agent.engines import Message

    reply = "".join(llama.stream([Message("user", "What is the capital of France?")]))
    assert "paris" in reply.lower() and "\n" not in reply
    # Greedy decoding: the same question gets the same answer.
    assert "".join(llama.stream([Message("user", "What is the capital of France?")])) == reply


@needs_llama
def test_llama_llm_in_the_pipeline(llama, oracle_engines):
    """gemma3-270m streams its reply through the clause buffer to piper: it is heard."""
    speech, text = corpus_audio("sq10_paris")
    cfg = ORACLE.replace(asr={"oracle_transcripts": (text,)}, llm={"engine": "llama"})
    engines = dataclasses.replace(oracle_engines, llm=llama)
    run = converse(cfg, engines, speech, max_s=40)
    reply = run.first("llm_done").get("text")
    assert "paris" in reply.lower(), reply
    assert "".join(e.get("text") for e in run.of("llm_token")).strip() == reply
    assert run.first("playback_start") and run.of("playback_end")
