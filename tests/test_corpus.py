"""The committed corpus and its API (harness.corpus, corpus_check, corpus_write): loading,
look-ups, labels, validation."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from harness import corpus as hc
from harness import corpus_check, corpus_write
from harness.errors import CorpusError, InputError
from tests import corpus_helpers as helpers


@pytest.fixture(scope="module")
def corpus() -> hc.Corpus:
    return hc.Corpus.load()


# ---- the committed corpus --------------------------------------------------------------------


def test_corpus_dir_is_the_repos_audio_corpus():
    assert hc.CORPUS_DIR.name == "audio_corpus"
    assert (hc.CORPUS_DIR.parent / "harness" / "corpus.py").is_file()
    assert hc.MANIFEST_PATH == hc.CORPUS_DIR / "manifest.json"


def test_committed_corpus_validates():
    assert [str(p) for p in corpus_check.validate(hc.MANIFEST_PATH)] == []


def test_committed_labels_equal_recomputed_labels():
    _, differences = corpus_write.relabel_manifest(hc.MANIFEST_PATH)
    assert differences == []


def test_corpus_has_what_the_harness_needs(corpus):
    speech = [u for u in corpus if u.is_speech]
    counts = Counter(u.category for u in corpus)
    assert len(speech) >= 30
    assert counts["pause"] >= 4
    assert counts["barge_in"] >= 6
    assert counts["short_question"] >= 8 and counts["long_question"] >= 4
    assert counts["noise"] >= 2
    assert len({u.voice for u in speech}) >= 3
    rates = Counter(u.sample_rate_hz for u in corpus)
    assert set(rates) == {16_000, 48_000}
    assert rates[48_000] > rates[16_000]
    for category in hc.SPEECH_CATEGORIES:  # every category at both rates or several voices
        assert len({u.voice for u in corpus.by_category(category)}) >= 2, category


def test_corpus_stays_small():
    total = sum(f.stat().st_size for f in hc.CORPUS_DIR.rglob("*") if f.is_file())
    assert total < 15 * 1024 * 1024


def test_every_file_is_listed(corpus):
    listed = {u.path for u in corpus}
    on_disk = {p.resolve() for p in hc.CORPUS_DIR.rglob("*.wav")}
    assert on_disk == listed


def test_pause_labels_are_400_to_900_ms(corpus):
    for u in corpus.by_category("pause"):
        assert u.pauses_s, u.id
        for start, end in u.pauses_s:
            assert 0.4 <= end - start <= 0.9, (u.id, start, end)
            assert u.speech_start_s < start < end < u.speech_end_s


def test_only_pause_items_pause_for_400_ms(corpus):
    for u in corpus:
        if u.category != "pause":
            assert all(end - start < 0.4 for start, end in u.pauses_s), u.id


def test_long_questions_last_5_to_9_s(corpus):
    for u in corpus.by_category("long_question"):
        assert 5.0 <= u.speech_end_s - u.speech_start_s <= 9.0, u.id


def test_labels_sit_inside_leading_and_trailing_silence(corpus):
    for u in corpus:
        if u.is_speech:
            assert u.speech_start_s >= 0.25, u.id
            assert u.duration_s - u.speech_end_s >= 0.25, u.id


def test_questions_have_reply_keywords(corpus):
    for u in corpus:
        assert all(k == k.lower() and k.strip() for k in u.reply_keywords), u.id
        if u.category in ("short_question", "long_question", "pause"):
            assert u.reply_keywords, u.id


def test_noise_beds_have_no_speech_labels(corpus):
    for u in corpus.by_category("noise"):
        assert u.transcript is None and u.speech_start_s is None and u.speech_end_s is None
        assert u.pauses_s == () and not u.is_speech
        assert u.duration_s >= 9.5


def test_utterance_load_gives_float32_mono_near_minus_3_dbfs(corpus):
    u = corpus.by_id("sq01_time")
    x = u.load()
    assert x.dtype == np.float32 and x.ndim == 1
    assert x.size == round(u.duration_s * u.sample_rate_hz)
    assert abs(20 * np.log10(np.max(np.abs(x))) - (-3.0)) < 0.1


# ---- look-ups ---------------------------------------------------------------------------------


def test_by_id_and_close_matches(corpus):
    assert corpus.by_id("sq01_time").category == "short_question"
    with pytest.raises(CorpusError, match="sq01_time") as info:
        corpus.by_id("sq01_tme")
    assert isinstance(info.value, InputError)


def test_by_category(corpus):
    barge = corpus.by_category("barge_in")
    assert barge and all(u.category == "barge_in" for u in barge)
    with pytest.raises(CorpusError, match="known: short_question"):
        corpus.by_category("chitchat")


def test_find_by_path(corpus, tmp_path, monkeypatch):
    u = corpus.by_id("pq01_timer")
    assert corpus.find_by_path(u.path) is u
    monkeypatch.chdir(hc.CORPUS_DIR)
    assert corpus.find_by_path(u.path.relative_to(hc.CORPUS_DIR)) is u
    copy = tmp_path / u.path.name
    shutil.copyfile(u.path, copy)
    assert corpus.find_by_path(copy) is u
    renamed = tmp_path / "stimulus.wav"
    shutil.copyfile(u.path, renamed)
    assert corpus.find_by_path(str(renamed)) is u
    changed = tmp_path / "changed" / u.path.name
    changed.parent.mkdir()
    data, rate = sf.read(u.path, dtype="int16")
    data[0] += 1
    sf.write(changed, data, rate, subtype="PCM_16")
    assert corpus.find_by_path(changed) is None
    assert corpus.find_by_path(tmp_path / "nope.wav") is None


# ---- loading errors ---------------------------------------------------------------------------


def test_load_missing_manifest(tmp_path):
    with pytest.raises(CorpusError, match="manifest not found"):
        hc.Corpus.load(tmp_path / "manifest.json")


def test_load_malformed_json_names_the_position(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text('{"schema_version": 1,\n "utterances": [,]}')
    with pytest.raises(CorpusError, match=r"manifest\.json: not valid JSON at line 2 column 17"):
        hc.Corpus.load(path)
    [problem] = corpus_check.validate(path)
    assert problem.file.endswith("manifest.json") and "line 2 column 17" in problem.problem


def test_load_rejects_a_malformed_entry(tmp_path):
    path = helpers.good_corpus(tmp_path)
    doc = json.loads(path.read_text())
    del doc["utterances"][1]["sha256"]
    path.write_text(json.dumps(doc))
    with pytest.raises(CorpusError, match=r"missing field.*sha256.*label_corpus"):
        hc.Corpus.load(path)


# ---- validation -------------------------------------------------------------------------------


def test_good_temporary_corpus_validates(tmp_path):
    path = helpers.good_corpus(tmp_path)
    assert corpus_check.validate(path) == []
    assert len(hc.Corpus.load(path)) == 2


@pytest.mark.parametrize("defect", sorted(helpers.DEFECTS))
def test_each_defect_is_reported_once(tmp_path, defect):
    path, file_name, phrase = helpers.DEFECTS[defect](tmp_path)
    problems = corpus_check.validate(path)
    assert len(problems) == 1, problems
    assert problems[0].file.endswith(file_name)
    assert phrase in problems[0].problem
    assert str(problems[0]).startswith(problems[0].file + ": ")


def _one_entry(tmp_path, mutate=None, *, x=None, subtype="PCM_16", **entry_args):
    helpers.write_wav(
        tmp_path / "x.wav", helpers.burst(48_000) if x is None else x, 48_000, subtype
    )
    e = helpers.entry(tmp_path, "x", "x.wav", 48_000, **entry_args)
    if mutate:
        mutate(e)
    return corpus_check.validate(helpers.write_manifest(tmp_path, [e]))


def test_float_wav_is_rejected(tmp_path):
    [problem] = _one_entry(tmp_path, subtype="FLOAT")
    assert "WAV/FLOAT" in problem.problem and "PCM_16" in problem.problem


def test_changed_content_is_rejected(tmp_path):
    [problem] = _one_entry(tmp_path, lambda e: e.update(sha256="ab" * 32))
    assert "content changed" in problem.problem and "label_corpus" in problem.problem


def test_wrong_duration_is_rejected(tmp_path):
    [problem] = _one_entry(tmp_path, lambda e: e.update(duration_s=2.0))
    assert "duration 1.200000 s, manifest says 2.000000 s" in problem.problem


def test_start_after_end_is_rejected(tmp_path):
    [problem] = _one_entry(tmp_path, start=0.9, end=0.8)
    assert "not before speech_end_s" in problem.problem


def test_negative_start_is_rejected(tmp_path):
    [problem] = _one_entry(tmp_path, start=-0.1)
    assert "before the file's start" in problem.problem


def test_pause_entry_needs_a_pause(tmp_path):
    [problem] = _one_entry(tmp_path, category="pause")
    assert "needs at least one labelled pause" in problem.problem


def test_pause_outside_speech_is_rejected(tmp_path):
    [problem] = _one_entry(tmp_path, category="pause", pauses=[[0.7, 0.9]])
    assert "outside the speech" in problem.problem


def test_noise_bed_with_labels_is_rejected(tmp_path):
    [problem] = _one_entry(tmp_path, lambda e: e.update(speech_start_s=0.3), category="noise")
    assert "noise bed has no speech" in problem.problem


def test_unknown_field_is_rejected(tmp_path):
    [problem] = _one_entry(tmp_path, lambda e: e.update(speech_ends_s=0.8))
    assert "unknown field(s) speech_ends_s" in problem.problem


def test_relabel_fills_in_and_check_detects_stale_labels(tmp_path):
    path = helpers.good_corpus(tmp_path)
    doc, differences = corpus_write.relabel_manifest(path)
    assert differences == []  # the helper's labels are the burst's exact edges
    doc["utterances"][0]["speech_end_s"] += 0.002
    corpus_write.write_manifest(doc, path)
    _, differences = corpus_write.relabel_manifest(path)
    assert len(differences) == 1 and "speech_end_s" in differences[0]
    assert differences[0].startswith(str(tmp_path / "a.wav"))


def test_every_file_has_its_source_documented(corpus):
    sources = (hc.CORPUS_DIR / "SOURCES.md").read_text(encoding="utf-8")
    for u in corpus:
        assert f"`{u.path.relative_to(hc.CORPUS_DIR)}`" in sources, u.id
