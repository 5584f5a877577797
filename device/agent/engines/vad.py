"""Voice activity detectors: silero (ONNX, no torch) and webrtcvad."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from device.agent.config import VadConfig
from device.agent.errors import EngineError


def silero_model_path() -> Path:
    """``silero_vad/data/silero_vad.onnx`` from the installed wheel, found without importing
    the package (its ``__init__`` imports torch, which we do not install)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or spec.origin is None:
        raise EngineError(
            "silero-vad is not installed (scripts/setup.sh installs it with --no-deps)"
        )
    path = Path(spec.origin).parent / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise EngineError(f"silero VAD model not found at {path}")
    return path


class SileroVad:
    """Silero VAD v5+ on onnxruntime, 512-sample frames at 16 kHz, one thread."""

    frame_samples = 512
    _context_samples = 64

    def __init__(self, cfg: VadConfig | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(silero_model_path()), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._sr = np.array(16000, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, self._context_samples), dtype=np.float32)

    def prob(self, frame: np.ndarray) -> float:
        x = np.asarray(frame, dtype=np.float32).reshape(1, -1)
        if x.shape[1] != self.frame_samples:
            raise ValueError(f"silero needs {self.frame_samples} samples, got {x.shape[1]}")
        x = np.concatenate([self._context, x], axis=1)
        out, self._state = self._session.run(
            None, {"input": x, "state": self._state, "sr": self._sr}
        )
        self._context = x[:, -self._context_samples :]
        return float(out[0, 0])


class WebrtcVad:
    """webrtcvad (GMM) on 30 ms frames at 16 kHz; probability is 0 or 1."""

    frame_samples = 480

    def __init__(self, cfg: VadConfig | None = None) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(cfg.webrtc_mode if cfg else 2)

    def reset(self) -> None:
        pass

    def prob(self, frame: np.ndarray) -> float:
        pcm = (np.clip(np.asarray(frame, dtype=np.float32), -1.0, 1.0) * 32767).astype("<i2")
        return 1.0 if self._vad.is_speech(pcm.tobytes(), 16000) else 0.0
