"""A lab rig on a real audio interface, through python-sounddevice (PortAudio).

One duplex ``sd.Stream`` (one sample clock for mouth, ref and ear), opened when the rig
opens and left running; sessions attach to its callback. The callback only copies the ref
and ear columns into the session's capture and the mouth block into the mapped output
channels, and records PortAudio's over/underflow flags with the sample index.

Devices are chosen by index or name substring (narrowed by ``host_api``); an ambiguous name
lists the candidates; rate and channel counts are checked with ``check_input_settings`` /
``check_output_settings`` before the stream opens.

Through PortAudio's JACK host API (``host_api = "JACK"``, ``jack_server = NAME``) the same
code runs against a jackd with the dummy driver, which is how CI tests it. PortAudio names
its JACK client "PortAudio" unless ``PaJack_SetClientName`` is called before PortAudio
initialises; sounddevice has no wrapper for it, so `use_jack` calls it through ctypes on the
library sounddevice loaded and re-initialises PortAudio (``jack_client_name``). PortAudio's
client then has ports ``NAME:in_0..`` and ``NAME:out_0..`` (0-based: ``in_0`` is input
channel 1); wire them in the graph as the
cables would be on the bench.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np

from harness.rigs.base import (
    RigBase,
    RigLatency,
    RigSession,
    RigUnavailable,
    StreamBuffers,
)
from harness.rigs.loopback import _Attach
from harness.rigs.profile import RigProfile

_client_name_buf: ctypes.Array[ctypes.c_char] | None = None  # PortAudio keeps the pointer


def sounddevice_module():  # noqa: ANN201 - returns the module
    """Import sounddevice, or say what is missing (the package, or PortAudio itself)."""
    try:
        import sounddevice as sd
    except ImportError as err:
        raise RigUnavailable(
            "the soundcard rig needs python-sounddevice: pip install 'tympan[rigs]'"
        ) from err
    except OSError as err:
        raise RigUnavailable(
            f"python-sounddevice could not load PortAudio ({err}); install the Debian package "
            "libportaudio2"
        ) from err
    return sd


def use_jack(server: str, client_name: str) -> None:
    """(Re)initialise PortAudio so its JACK host API talks to `server` as `client_name`.

    No stream may be open. JACK_DEFAULT_SERVER is set only while PortAudio initialises.
    """
    global _client_name_buf
    sd = sounddevice_module()
    lib = ctypes.CDLL(sd._libname)
    try:
        set_name = lib.PaJack_SetClientName
    except AttributeError:
        raise RigUnavailable(
            f"the PortAudio library {sd._libname} has no JACK host API (PaJack_SetClientName); "
            "install the Debian package libportaudio2"
        ) from None
    set_name.argtypes = [ctypes.c_char_p]
    set_name.restype = ctypes.c_int
    sd._terminate()
    _client_name_buf = ctypes.create_string_buffer(client_name.encode())
    rc = set_name(_client_name_buf)
    if rc != 0:
        raise RigUnavailable(f"PaJack_SetClientName({client_name!r}) failed (PortAudio error {rc})")
    before = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = server
    try:
        sd._initialize()
    finally:
        if before is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = before


def release_jack() -> None:
    """Re-initialise PortAudio without a JACK server (closes its JACK client)."""
    sd = sounddevice_module()
    sd._terminate()
    before = os.environ.pop("JACK_DEFAULT_SERVER", None)
    try:
        sd._initialize()
    finally:
        if before is not None:
            os.environ["JACK_DEFAULT_SERVER"] = before


def describe(index: int, dev: dict[str, Any], host_apis: Any) -> str:
    """``[3] USB Audio, ALSA (2 in, 2 out)``."""
    api = host_apis[dev["hostapi"]]["name"]
    return (
        f"[{index}] {dev['name']}, {api} "
        f"({dev['max_input_channels']} in, {dev['max_output_channels']} out)"
    )


def find_device(spec: str | int, kind: str, host_api: str = "", *, channels: int = 1) -> int:
    """The device index for `spec` (index or name substring) with `channels` of `kind`
    ("input"/"output"), narrowed by a `host_api` substring. RigUnavailable lists candidates."""
    sd = sounddevice_module()
    devices = sd.query_devices()
    apis = sd.query_hostapis()
    key = f"max_{kind}_channels"
    everything = "\n  ".join(describe(i, d, apis) for i, d in enumerate(devices)) or "(none)"
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        if not 0 <= index < len(devices):
            raise RigUnavailable(f"no audio device [{index}]; devices:\n  {everything}")
        if devices[index][key] < channels:
            raise RigUnavailable(
                f"device {describe(index, devices[index], apis)} has fewer than {channels} "
                f"{kind} channel(s)"
            )
        return index
    want = str(spec).lower()
    api = host_api.lower()
    found = [
        i
        for i, d in enumerate(devices)
        if want in d["name"].lower()
        and api in apis[d["hostapi"]]["name"].lower()
        and d[key] >= channels
    ]
    if not found:
        where = f" on host API {host_api!r}" if host_api else ""
        raise RigUnavailable(
            f"no audio device matching {spec!r}{where} with {channels} {kind} channel(s); "
            f"devices:\n  {everything}"
        )
    exact = [i for i in found if devices[i]["name"].lower() == want]
    if len(found) > 1 and len(exact) != 1:
        cands = "\n  ".join(describe(i, devices[i], apis) for i in found)
        raise RigUnavailable(
            f"audio device {spec!r} is ambiguous; candidates:\n  {cands}\n"
            "give an index, a longer name, or host_api"
        )
    return exact[0] if len(found) > 1 else found[0]


class SoundcardRig(RigBase):
    """A rig on a sound card (profile kind "soundcard"); see the module docstring."""

    def __init__(self, profile: RigProfile) -> None:
        super().__init__(
            profile.name, profile.sample_rate_hz, profile.block_frames, profile.channels()
        )
        self.profile = profile
        self.options = profile.table("soundcard")
        self.stream: Any = None
        self._buffers: StreamBuffers | None = None
        self._scratch = np.zeros(self.block_frames, dtype=np.float32)
        self.idle_xruns = 0
        self.devices: tuple[int, int] | None = None
        self._claimed = ""

    def open(self) -> SoundcardRig:
        """Find the devices, check the settings, open and start the duplex stream."""
        if self.stream is not None:
            return self
        sd = sounddevice_module()
        o = self.options
        try:
            if o["jack_server"]:
                from harness.rigs.jackd import claim

                claim(o["jack_server"])
                self._claimed = o["jack_server"]
                use_jack(o["jack_server"], o["jack_client_name"])
            self._open_stream(sd)
        except BaseException:
            self.close()
            raise
        return self

    def _open_stream(self, sd: Any) -> None:
        o = self.options
        ch = self.channels
        in_spec = o["input_device"] if o["input_device"] != "" else o["device"]
        out_spec = o["output_device"] if o["output_device"] != "" else o["device"]
        src = self.profile.source
        try:
            i_dev = find_device(in_spec, "input", o["host_api"], channels=ch.inputs)
            o_dev = find_device(out_spec, "output", o["host_api"], channels=ch.outputs)
        except RigUnavailable as err:
            raise RigUnavailable(f"{src}: {err}") from None
        fs = self.sample_rate_hz
        for check, dev, n, kind in (
            (sd.check_input_settings, i_dev, ch.inputs, "input"),
            (sd.check_output_settings, o_dev, ch.outputs, "output"),
        ):
            try:
                check(device=dev, channels=n, dtype="float32", samplerate=fs)
            except Exception as err:  # sd.PortAudioError, ValueError
                info = sd.query_devices(dev)
                raise RigUnavailable(
                    f"{src}: device [{dev}] {info['name']} refuses {n} {kind} channel(s) at "
                    f"{fs} Hz ({err}); its default rate is {info['default_samplerate']:g} Hz"
                ) from None
        try:
            stream = sd.Stream(
                samplerate=fs,
                blocksize=self.block_frames,
                device=(i_dev, o_dev),
                channels=(ch.inputs, ch.outputs),
                dtype="float32",
                latency=o["latency"],
                callback=self._callback,
            )
            stream.start()
        except Exception as err:
            raise RigUnavailable(f"{src}: cannot open the duplex stream: {err}") from None
        self.stream = stream
        self.devices = (i_dev, o_dev)

    def close(self) -> None:
        """Stop and close the stream."""
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.stop()
            finally:
                stream.close()
        if self._claimed:
            from harness.rigs.jackd import release

            # Close PortAudio's JACK client while its server is still up: PortAudio
            # asserts (and aborts the process) if it finds the server gone at exit.
            release_jack()
            release(self._claimed)
            self._claimed = ""

    def _callback(
        self, indata: np.ndarray, outdata: np.ndarray, frames: int, t: Any, status: Any
    ) -> None:
        b = self._buffers
        if status:
            flags = [
                name
                for name in (
                    "input_overflow",
                    "input_underflow",
                    "output_underflow",
                    "output_overflow",
                )
                if getattr(status, name)
            ]
            if flags:
                if b is None:
                    self.idle_xruns += 1
                else:
                    for name in flags:
                        b.note(name)
        outdata.fill(0.0)
        if b is None:
            return
        if frames > len(self._scratch):  # PortAudio may vary the block with blocksize=0 only
            self._scratch = np.zeros(frames, dtype=np.float32)
        out = self._scratch[:frames]
        ch = self.channels
        b.exchange(indata[:, ch.ref], indata[:, ch.ear], out)
        for c in ch.mouth:
            outdata[:, c] = out

    def latency(self) -> RigLatency:
        """PortAudio's reported input and output latency, samples (their sum is what it
        expects mouth -> ref to be), and the calibrated figures."""
        rin = rout = None
        if self.stream is not None:
            lat_in, lat_out = self.stream.latency
            rin = int(round(lat_in * self.sample_rate_hz))
            rout = int(round(lat_out * self.sample_rate_hz))
        return RigLatency(
            block_frames=self.block_frames,
            expected_mouth_to_ref=None if rin is None or rout is None else rin + rout,
            reported_input=rin,
            reported_output=rout,
            calibrated_mouth_to_ref=self.calibrated_mouth_to_ref,
            calibrated_mouth_to_ear=self.calibrated_mouth_to_ear,
        )

    def session(self, *, capacity_s: float = 60.0) -> RigSession:
        """A new session on the running stream."""
        if self.stream is None:
            self.open()
        return RigSession(_Attach(self), self.sample_rate_hz, self.latency, capacity_s=capacity_s)
