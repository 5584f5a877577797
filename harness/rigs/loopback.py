"""The JACK virtual loopback rig: what CI uses (no sound card).

The harness is one JACK client with three ports::

    tympan:mouth_out ──► tympan:ref_in                   (the ref loop, inside the graph)
    tympan:mouth_out ──► DUT:inputs ... DUT:outputs ──► tympan:ear_in

The rig starts its own jackd (dummy driver, unique name; `harness.rigs.jackd`) or attaches to
a running server named in the profile. With the dummy driver, mouth -> ref is exactly one
period, every run: the ref input is read at the start of a cycle, before the mouth output
of that cycle is written.

The JACK process callback only copies: the input blocks into the session's preallocated
capture, the next mouth block out of its preallocated timeline (`StreamBuffers.exchange`).
"""

from __future__ import annotations

import re
import time
from typing import Any

from harness.rigs.base import (
    RigBase,
    RigLatency,
    RigSession,
    RigUnavailable,
    StreamBuffers,
)
from harness.rigs.jackd import JackServer, claim, jack_module, release, wait_for_server
from harness.rigs.profile import RigProfile


class LoopbackRig(RigBase):
    """JACK loopback rig.

    profile: a validated loopback profile. dut: a JACK client name whose input ports are
    wired to the mouth and output ports to the ear (default: the profile's ``dut``).
    """

    # JACK's dummy driver has no hardware clock: a late cycle loses no samples of the
    # harness's. And the ear is the DUT's output port: no room.
    timing_only_xruns = True
    dry_path = True

    def __init__(self, profile: RigProfile, dut: str | None = None) -> None:
        o = profile.table("loopback")
        super().__init__(profile.name, profile.sample_rate_hz, o["period"])
        self.profile = profile
        self.options = o
        self.dut = dut if dut is not None else (o["dut"] or None)
        self.server: JackServer | None = None
        self.server_name: str = o["server"]
        self.client: Any = None
        self._buffers: StreamBuffers | None = None
        self.idle_xruns = 0
        self._claimed = ""

    # --- lifecycle --------------------------------------------------------------------------

    def open(self) -> LoopbackRig:
        """Start (or attach to) the server, register the ports, wire ref and DUT."""
        if self.client is not None:
            return self
        jack = jack_module()
        timeout = self.options["start_timeout_s"]
        try:
            if self.server_name:
                try:
                    wait_for_server(self.server_name, timeout)
                except TimeoutError:
                    raise RigUnavailable(
                        f"{self.profile.source}: loopback.server = {self.server_name!r}: no JACK "
                        f"server of that name answered within {timeout:g} s; start it (jackd -n "
                        f'{self.server_name} -d dummy ...) or set server = "" to start one'
                    ) from None
            else:
                self.server = JackServer(None, self.sample_rate_hz, self.block_frames)
                self.server.start(timeout)
                self.server_name = self.server.name
            claim(self.server_name)
            self._claimed = self.server_name
            client = self._open_client(jack)
            self.client = client
            if client.samplerate != self.sample_rate_hz:
                raise RigUnavailable(
                    f"JACK server {self.server_name!r} runs at {client.samplerate} Hz but "
                    f"{self.profile.source} says rig.sample_rate_hz = {self.sample_rate_hz}"
                )
            self.block_frames = client.blocksize
            self._mouth = client.outports.register("mouth_out")
            self._ref = client.inports.register("ref_in")
            self._ear = client.inports.register("ear_in")
            client.set_process_callback(self._process)
            client.set_xrun_callback(self._xrun)
            client.activate()
            client.connect(self._mouth, self._ref)
            if self.dut:
                self.connect_dut(self.dut)
        except BaseException:
            self.close()
            raise
        return self

    def _open_client(self, jack: Any, attempts: int = 3) -> Any:
        """The harness's JACK client. Two servers starting at the same moment (rigs side by
        side in two processes) can race in libjack's shared-memory registry and refuse the
        first client with a server error: try again shortly before giving up."""
        for attempt in range(attempts):
            try:
                return jack.Client(
                    self.options["client_name"], servername=self.server_name, no_start_server=True
                )
            except jack.JackOpenError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.3)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Deactivate and close the client; stop the server if the rig started it."""
        client, self.client = self.client, None
        if client is not None:
            try:
                client.deactivate()
                client.close()
            except Exception:  # the server may already be gone
                pass
        if self._claimed:
            release(self._claimed)
            self._claimed = ""
        if self.server is not None:
            self.server.stop()
            self.server = None
            self.server_name = self.options["server"]

    @property
    def client_name(self) -> str:
        """The harness's JACK client name (JACK may have appended a number)."""
        return self.client.name if self.client is not None else self.options["client_name"]

    def connect_dut(self, name: str, timeout_s: float = 10.0) -> None:
        """Wire JACK client `name`: its audio inputs <- mouth_out, its outputs -> ear_in.

        Waits up to `timeout_s` for the client's ports to appear (a DUT started just before).
        """
        jack = jack_module()
        pattern = "^" + re.escape(name) + ":"
        deadline = time.monotonic() + timeout_s
        while True:
            ins = self.client.get_ports(pattern, is_audio=True, is_input=True)
            outs = self.client.get_ports(pattern, is_audio=True, is_output=True)
            if ins and outs:
                break
            if time.monotonic() > deadline:
                names = sorted({p.name.split(":")[0] for p in self.client.get_ports()})
                raise RigUnavailable(
                    f"JACK client {name!r} (--dut jack:{name}) has no audio "
                    f"{'input' if not ins else 'output'} ports on server {self.server_name!r} "
                    f"after {timeout_s:g} s; clients there: {', '.join(names)}"
                )
            time.sleep(0.05)
        # A client's ports exist as soon as it registers them, but JACK refuses connections
        # until it activates (an agent may load its engines in between): retry until then.
        while True:
            try:
                for port in ins:
                    if self._mouth.name not in {
                        p.name for p in self.client.get_all_connections(port)
                    }:
                        self.client.connect(self._mouth, port)
                for port in outs:
                    if self._ear.name not in {
                        p.name for p in self.client.get_all_connections(port)
                    }:
                        self.client.connect(port, self._ear)
                break
            except jack.JackErrorCode as exc:
                if time.monotonic() > deadline:
                    raise RigUnavailable(
                        f"JACK client {name!r} (--dut jack:{name}) has ports on server "
                        f"{self.server_name!r} but refused connections for {timeout_s:g} s "
                        f"(is it activated?): {exc}"
                    ) from None
                time.sleep(0.1)
        self.dut = name

    # --- real-time side ---------------------------------------------------------------------

    def _process(self, frames: int) -> None:
        b = self._buffers
        if b is None:
            self._mouth.get_array().fill(0.0)
            return
        b.exchange(self._ref.get_array(), self._ear.get_array(), self._mouth.get_array())

    def _xrun(self, delayed_usecs: float) -> None:
        b = self._buffers
        if b is None:
            self.idle_xruns += 1
        else:
            b.note("xrun", f"JACK cycle {delayed_usecs:.0f} us late")

    # --- sessions ---------------------------------------------------------------------------

    def latency(self) -> RigLatency:
        """One period mouth -> ref (the dummy driver's graph), and the calibrated figures."""
        return RigLatency(
            block_frames=self.block_frames,
            expected_mouth_to_ref=self.block_frames,
            calibrated_mouth_to_ref=self.calibrated_mouth_to_ref,
            calibrated_mouth_to_ear=self.calibrated_mouth_to_ear,
        )

    def session(self, *, capacity_s: float = 60.0) -> RigSession:
        """A new session on the running client."""
        if self.client is None:
            self.open()
        return RigSession(_Attach(self), self.sample_rate_hz, self.latency, capacity_s=capacity_s)


class _Attach:
    """Hands a session's buffers to a running callback (JACK here, PortAudio in soundcard)."""

    realtime = True

    def __init__(self, rig: Any) -> None:
        self.rig = rig
        self.guard_frames = 2 * rig.block_frames

    def attach(self, buffers: StreamBuffers) -> None:
        self.rig._buffers = buffers

    def detach(self) -> None:
        self.rig._buffers = None

    def pump(self) -> bool:
        return False
