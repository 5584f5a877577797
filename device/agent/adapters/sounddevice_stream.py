"""The agent on a sound card through python-sounddevice (PortAudio): one duplex stream, the
first input channel is its microphone, its voice goes to every output channel::

    with SoundDeviceAgent(config, device="USB Audio", samplerate_hz=48000) as agent:
        ...  # talk to it

or from a shell: ``python -m device.agent.live --device "USB Audio"``.

``device`` is anything `sounddevice` accepts: an index, a substring of the name (an
ambiguous one is an error listing the candidates), or a pair (input, output). With
PortAudio's JACK host API the stream is a JACK client; `jack_client_name` names it (else
PortAudio calls it "PortAudio"). The callback only copies blocks
(`device.agent.adapters.BlockPump`): the input to a worker thread, the output straight
from the agent's buffer.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from device.agent.adapters import BlockPump
from device.agent.config import AgentConfig
from device.agent.engines import Engines
from device.agent.errors import AgentError, ConfigError
from device.agent.events import EventSink
from device.agent.host import AgentHost


def set_jack_client_name(name: str) -> None:
    """Name PortAudio's JACK client (``PaJack_SetClientName``) and re-initialise PortAudio
    so that the name takes effect. Call before opening a stream."""
    import sounddevice as sd

    lib = ctypes.CDLL(sd._libname)  # the PortAudio library sounddevice loaded
    try:
        setter = lib.PaJack_SetClientName
    except AttributeError as exc:
        raise AgentError(f"PortAudio ({sd._libname}) has no JACK host API") from exc
    setter.argtypes = [ctypes.c_char_p]
    setter.restype = ctypes.c_int
    # PortAudio keeps the pointer: keep the bytes alive as long as the module.
    global _JACK_NAME
    _JACK_NAME = name.encode()
    if setter(_JACK_NAME) != 0:
        raise AgentError(f"PaJack_SetClientName({name!r}) failed")
    sd._terminate()
    sd._initialize()


_JACK_NAME = b""


class SoundDeviceAgent:
    """An `AgentHost` driven by a sounddevice duplex stream.

    Args:
        config: agent configuration.
        device: input/output device (index, name substring, or (input, output)); None:
            PortAudio's defaults.
        samplerate_hz: stream rate, a multiple of 16000 Hz.
        blocksize: frames per callback (default 20 ms).
        engines: loaded engines to reuse.
        sink: extra event sink.
        jack_client_name: with the JACK host API, the client's name.
    """

    def __init__(
        self,
        config: AgentConfig | None = None,
        *,
        device: Any = None,
        samplerate_hz: int = 48000,
        blocksize: int | None = None,
        engines: Engines | None = None,
        sink: EventSink | None = None,
        jack_client_name: str | None = None,
    ) -> None:
        if samplerate_hz % 16000:
            raise ConfigError(
                f"sample rate {samplerate_hz} Hz: the agent needs a multiple of 16000 Hz"
            )
        self.config = config or AgentConfig()
        self.device = device
        self.samplerate_hz = samplerate_hz
        self.blocksize = blocksize or samplerate_hz // 50
        self._engines = engines
        self._sink = sink
        self._jack_client_name = jack_client_name
        self.stream: Any = None
        self.host: AgentHost | None = None
        self.pump: BlockPump | None = None
        self.status_flags = 0
        """Callbacks that reported an over- or underflow."""

    def start(self) -> SoundDeviceAgent:
        """Start the agent and the stream.

        Raises:
            AgentError: sounddevice/PortAudio missing, or the device cannot be opened.
        """
        try:
            import sounddevice as sd
        except (ImportError, OSError) as exc:
            raise AgentError(
                f"the sounddevice adapter needs sounddevice and PortAudio: {exc}"
            ) from exc
        if self._jack_client_name:
            set_jack_client_name(self._jack_client_name)
        try:
            in_ch, out_ch = _channels(sd, self.device)
        except ValueError as exc:  # no such device, or an ambiguous name (sounddevice lists)
            raise AgentError(f"sound device {self.device!r}: {exc}") from exc
        self.host = AgentHost(
            self.config,
            engines=self._engines,
            sink=self._sink,
            input_rate_hz=self.samplerate_hz,
            output_rate_hz=self.samplerate_hz,
        ).start()
        pump = self.pump = BlockPump(self.host)

        def callback(
            indata: np.ndarray, outdata: np.ndarray, frames: int, t: Any, status: Any
        ) -> None:
            if status:
                self.status_flags += 1
            outdata[:] = pump.exchange(indata[:, 0])[:, None]

        try:
            self.stream = sd.Stream(
                samplerate=self.samplerate_hz,
                blocksize=self.blocksize,
                device=self.device,
                channels=(in_ch, out_ch),
                dtype="float32",
                callback=callback,
            )
            self.stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            self.close()
            raise AgentError(f"cannot open sound device {self.device!r}: {exc}") from exc
        return self

    def close(self) -> None:
        """Stop the stream and the agent (re-raises a pipeline failure)."""
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.stop()
            stream.close()
        pump, self.pump = self.pump, None
        if pump is not None:
            pump.close()
        host, self.host = self.host, None
        if host is not None:
            host.close()

    def __enter__(self) -> SoundDeviceAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _channels(sd: Any, device: Any) -> tuple[int, int]:
    """(input, output) channels to open: one microphone, every output channel (max 2)."""
    pair = device if isinstance(device, list | tuple) else (device, device)
    sd.query_devices(pair[0], "input")  # raises ValueError when there is none such
    out = sd.query_devices(pair[1], "output")
    return 1, max(1, min(2, int(out["max_output_channels"])))
