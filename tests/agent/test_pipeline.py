"""The pipeline on real audio with known transcripts (oracle ASR, scripted LLM, silero VAD,
piper TTS), driven in real time through the in-process frame interface at 48 kHz."""

from __future__ import annotations

import numpy as np

from device.agent.engines import Message
from tests.agent.conftest import ORACLE
from tests.agent.helpers import converse, corpus_audio

ORDER = [
    "vad_speech_start",
    "vad_speech_end",
    "asr_final",
    "llm_request",
    "llm_first_token",
    "tts_chunk",
    "tts_first_audio",
    "playback_start",
    "turn_summary",
    "playback_end",
]


def oracle(*transcripts: str, **sections):
    return ORACLE.replace(asr={"oracle_transcripts": transcripts}, **sections)


def test_one_turn_events_complete_and_ordered(oracle_engines):
    speech, text = corpus_audio("sq10_paris")
    run = converse(oracle(text), oracle_engines, speech)
    stamps = [run.first(name, turn=1).t_us for name in ORDER]
    assert stamps == sorted(stamps), [e.event for e in run.events]
    assert run.first("asr_final").get("text") == text
    assert "Paris" in run.first("tts_chunk").get("text")
    states = [e.get("state") for e in run.of("state")]
    assert states == ["listening", "user_speaking", "thinking", "speaking", "listening"]
    start = run.first("playback_start").get("output_s")
    end = run.first("playback_end").get("output_s")
    assert run.rms(0, start - 0.02) < 1e-4  # nothing before the reply
    assert run.rms(start, end) > 0.01
    summary = run.first("turn_summary")
    assert 300 < summary.get("end_of_speech_to_playback_ms") < 2000
    assert run.history == [
        Message("user", text),
        Message("assistant", run.first("llm_done").get("text")),
    ]


def test_barge_in_200ms_into_playback(oracle_engines):
    """The seed's test: a barge-in 200 ms into playback stops the output, leaves no stale
    frames, resets cleanly and the next turn answers the new utterance."""
    speech, text = corpus_audio("sq01_time")
    clip, clip_text = corpus_audio("bi08_actually_weather")
    run = converse(oracle(text, clip_text), oracle_engines, speech, barge_in=clip)
    barge = run.first("barge_in")
    done = run.first("cancel_done")
    assert barge.get("turn") == 1 and barge.get("state") == "speaking"
    assert done.get("audio_dropped_ms") > 0
    cut_s = done.get("output_s")
    # Output silent from the cancel until the new reply starts (the output array lags the
    # device position by one 20 ms period).
    new_start = run.first("playback_start", turn=2).get("output_s")
    assert run.rms(cut_s + 0.045, new_start) < 1e-4
    # Stop latency after the barge-in was confirmed (agent clock): well under 100 ms.
    assert (done.t_us - barge.t_us) / 1000 < 100
    # No chunk of the interrupted turn after the cancel; the new turn answers the new words.
    assert not [e for e in run.of("tts_chunk", turn=1) if e.t_us > done.t_us]
    assert run.first("llm_request", turn=2).get("text") == clip_text
    assert "weather tomorrow" in " ".join(e.get("text") for e in run.of("tts_chunk", turn=2))
    states = [e.get("state") for e in run.of("state")]
    assert states[-5:] == ["interrupted", "user_speaking", "thinking", "speaking", "listening"]
    assert run.history[1] == Message("assistant", run.history[1].text, interrupted=True)
    assert run.history[2] == Message("user", clip_text)


def test_back_pressure_bounds_the_tts_queue(oracle_engines):
    speech, _ = corpus_audio("sq01_time")
    # A long reply, fast tokens, short chunks: far more chunks than the queues hold.
    cfg = oracle(
        "Tell me a long story.",
        llm={"tokens_per_s": 400.0, "max_tokens": 200},
        chunker={"max_tokens": 6, "min_tokens": 3},
    )
    run = converse(cfg, oracle_engines, speech, stop_after_playback_s=3.0, max_s=15)
    depths = [e.get("depth") for e in run.of("queue_depth") if e.get("queue") == "tts"]
    assert max(depths) == 3  # filled up to the bound, never beyond
    # The ~100 tokens take 0.25 s to generate at 400 tokens/s; held back by the bounded
    # queues, the LLM is still not done 3 s into playback.
    assert not run.of("llm_done")
    assert len(run.of("llm_token")) < 80


def test_a_pause_shorter_than_the_silence_is_not_an_end(oracle_engines):
    speech, text = corpus_audio("pq04_beatles")  # one 458 ms pause inside the sentence
    run = converse(oracle(text, vad={"silence_ms": 700}), oracle_engines, speech)
    assert len(run.of("vad_speech_end")) == 1
    assert len(run.of("llm_request")) == 1
    assert np.any(run.output != 0)


def test_speech_resumed_while_thinking_is_one_utterance(oracle_engines):
    """With the default 300 ms the gate ends the utterance inside the 458 ms pause; the
    user goes on before anything is said, so the reply is cancelled and the whole sentence
    is answered once."""
    speech, text = corpus_audio("pq04_beatles")
    run = converse(oracle(text), oracle_engines, speech)
    assert len(run.of("vad_speech_end")) == 2
    done = run.first("cancel_done")
    assert done.get("merged_with_previous") is True and done.get("audio_dropped_ms") == 0
    assert len(run.of("playback_start")) == 1
    assert [m.role for m in run.history] == ["user", "assistant"]
