"""The rig interface: one duplex audio path between the harness and a DUT.

A rig has one output (the *mouth*, feeding the DUT's microphone) and two inputs on the same
sample clock: the *ref* (the mouth looped straight back) and the *ear* (what the DUT's speaker
puts out). Everything is counted in sample frames of that one duplex stream: sample index 0
is the first frame of a session, the mouth sample scheduled at index ``k`` leaves the rig's
output in frame ``k``, and the capture's row ``k`` is what the inputs held in frame ``k``.

Map:
    AudioRig        the Protocol every backend satisfies (sim, loopback, soundcard)
    RigSession      one streaming session: start, feed/schedule mouth audio, read blocks, stop
    Capture         what a session recorded: (n, 2) float32 [ref, ear] + the mouth + status
    RigStatus       xruns (kind, sample index) and the rig's latency figures
    HostClockMap    host monotonic clock (µs) <-> session sample index (harness.rigs.clock)
    play_and_record the blocking convenience on top of a session
    RigError        the package's errors (ProfileError, RigUnavailable, SessionError, ...)

Real-time callbacks (JACK, PortAudio) call `StreamBuffers.exchange` and nothing else: it
copies the input block into a preallocated capture, copies the next mouth block out of a
preallocated timeline, stamps the block with the host's monotonic clock (into a preallocated
array) and puts ``(start, frames)`` on a queue. The stamps give each capture a `HostClockMap`,
so host-side events (a DUT's telemetry in `time.monotonic_ns() // 1000` µs) can be placed on
the capture's timeline.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from harness.errors import HarnessError, InputError
from harness.rigs.clock import HostClockMap, fit_host_clock


class RigError(HarnessError):
    """Base class of the rigs' errors."""


class ProfileError(RigError, InputError):
    """A rig profile (TOML) is missing, malformed or names something that does not exist."""


class RigUnavailable(RigError, InputError):
    """The rig cannot be opened: a program, library, server or device is missing."""


class SessionError(RigError):
    """A session was used wrongly or ran out of room (too-late scheduling, capture full)."""


class CalibrationRefused(RigError):
    """Calibration could not produce a trustworthy figure; the message says why."""


@dataclass(frozen=True)
class ChannelMap:
    """Which physical channels carry mouth, ref and ear (0-based indices of the stream).

    mouth: output channels that carry the mouth signal (all get the same samples).
    ref: input channel of the ref loop. ear: input channel of the measurement mic.
    outputs/inputs: how many channels the stream opens in each direction.
    """

    mouth: tuple[int, ...] = (0,)
    ref: int = 0
    ear: int = 1
    outputs: int = 1
    inputs: int = 2


@dataclass(frozen=True)
class Xrun:
    """One glitch: kind ("input_overflow", "output_underflow", "xrun", "dropout",
    "capture_full", ...), the session sample index where it happened, and detail text."""

    kind: str
    sample_index: int
    detail: str = ""


@dataclass(frozen=True)
class RigLatency:
    """The rig's own latency figures, samples.

    expected_mouth_to_ref: what the backend says the mouth->ref delay should be (one JACK
        period on the loopback, the configured converter latency on the sim, PortAudio's
        input + output latency on a sound card); None when unknown.
    reported_input/reported_output: what the audio API reports for each direction.
    calibrated_mouth_to_ref / calibrated_mouth_to_ear: from the calibration cache, if any.
    """

    block_frames: int
    expected_mouth_to_ref: int | None = None
    reported_input: int | None = None
    reported_output: int | None = None
    calibrated_mouth_to_ref: int | None = None
    calibrated_mouth_to_ear: int | None = None


@dataclass(frozen=True)
class RigStatus:
    """How a session went: frames run, glitches (with where), latency figures."""

    frames: int
    sample_rate_hz: int
    xruns: tuple[Xrun, ...]
    latency: RigLatency

    @property
    def xrun_count(self) -> int:
        """Number of glitches of any kind."""
        return len(self.xruns)


@dataclass(frozen=True)
class Block:
    """One captured block: frames ``start .. start + len(ref)`` of the session."""

    start: int
    ref: np.ndarray
    ear: np.ndarray


@dataclass(frozen=True)
class Capture:
    """A session's recording.

    samples: shape (n, 2) float32, column 0 = ref, column 1 = ear (the layout
        `harness.analysis.analyze_capture` takes with ref_channel=0, ear_channel=1).
    mouth: shape (n,) float32, what the rig sent to the mouth in each frame.
    clock: the session's host clock <-> sample map (None when no block was stamped).
    """

    samples: np.ndarray
    mouth: np.ndarray
    sample_rate_hz: int
    status: RigStatus
    clock: HostClockMap | None = None

    def capture_s_of_host_us(self, t_us: float) -> float | None:
        """Capture-timeline seconds of host time `t_us` (µs, `time.monotonic_ns() // 1000`),
        through `clock`; None without a clock."""
        if self.clock is None:
            return None
        return self.clock.sample_of_host_us(t_us) / self.sample_rate_hz

    @property
    def ref(self) -> np.ndarray:
        """The ref channel, shape (n,)."""
        return self.samples[:, 0]

    @property
    def ear(self) -> np.ndarray:
        """The ear channel, shape (n,)."""
        return self.samples[:, 1]

    @property
    def duration_s(self) -> float:
        """Length of the capture, seconds."""
        return self.samples.shape[0] / self.sample_rate_hz


class StreamBuffers:
    """Preallocated mouth timeline and capture: the only state a real-time callback touches.

    capacity_frames: how many frames the session can hold (mouth and capture alike).
    """

    MIN_BLOCK_FRAMES = 32
    """Smallest period the stamp arrays are sized for (more, smaller blocks are not stamped)."""

    def __init__(self, capacity_frames: int) -> None:
        self.capacity = int(capacity_frames)
        self.mouth = np.zeros(self.capacity, dtype=np.float32)
        self.capture = np.zeros((self.capacity, 2), dtype=np.float32)
        self.position = 0
        self.blocks: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self.xruns: list[Xrun] = []
        self.full = False
        # Host clock stamps, one per block: preallocated so the callback only stores.
        n_stamps = self.capacity // self.MIN_BLOCK_FRAMES + 2
        self.stamp_start = np.zeros(n_stamps, dtype=np.int64)
        self.stamp_us = np.zeros(n_stamps, dtype=np.int64)
        self.stamps = 0

    def exchange(self, ref_in: np.ndarray, ear_in: np.ndarray, mouth_out: np.ndarray) -> None:
        """Copy one block in and one block out (real-time safe: no allocation but the queue
        entry). Inputs are copied before the output is written, because JACK may hand the
        same memory to a port and the port connected to it."""
        n = len(mouth_out)
        p = self.position
        if p + n > self.capacity:
            mouth_out[:] = 0.0
            if not self.full:
                self.full = True
                self.xruns.append(Xrun("capture_full", p, f"capacity {self.capacity} frames"))
            return
        self.capture[p : p + n, 0] = ref_in
        self.capture[p : p + n, 1] = ear_in
        mouth_out[:] = self.mouth[p : p + n]
        k = self.stamps
        if k < len(self.stamp_us):
            self.stamp_us[k] = time.monotonic_ns() // 1000
            self.stamp_start[k] = p
            self.stamps = k + 1
        self.position = p + n
        self.blocks.put_nowait((p, n))

    def clock_map(self, sample_rate_hz: int) -> HostClockMap | None:
        """The host clock <-> sample map fitted to the stamps so far (see `HostClockMap`)."""
        k = self.stamps
        return fit_host_clock(self.stamp_start[:k], self.stamp_us[:k], sample_rate_hz)

    def note(self, kind: str, detail: str = "") -> None:
        """Record a glitch at the current position (callable from a callback)."""
        self.xruns.append(Xrun(kind, self.position, detail))


class Driver(Protocol):
    """What a backend provides to a `RigSession` (internal interface).

    realtime: True when blocks arrive on their own (a callback thread); False when the
        session must call `pump` to make the next block (the sim).
    guard_frames: how far ahead of the current position mouth audio must be scheduled so it
        is not already on its way out (one or two periods on a real stream).
    """

    realtime: bool
    guard_frames: int

    def attach(self, buffers: StreamBuffers) -> None: ...

    def detach(self) -> None: ...

    def pump(self) -> bool: ...


class RigSession:
    """One streaming session on a rig's duplex stream.

    Use as a context manager or call `start` / `stop`. Mouth audio is float mono at the rig's
    rate, full scale 1.0; sample indices count frames from the session's first frame.
    """

    def __init__(
        self,
        driver: Driver,
        sample_rate_hz: int,
        latency: Callable[[], RigLatency],
        *,
        capacity_s: float = 60.0,
    ) -> None:
        self.sample_rate_hz = sample_rate_hz
        self._driver = driver
        self._latency = latency
        self._buffers = StreamBuffers(int(round(capacity_s * sample_rate_hz)))
        self._mouth_end = 0
        self._started = False
        self._stopped = False
        self._lock = threading.Lock()

    @property
    def position(self) -> int:
        """Frames run so far: the session index of the next block to arrive."""
        return self._buffers.position

    @property
    def capacity_frames(self) -> int:
        """Frames the session can hold."""
        return self._buffers.capacity

    @property
    def guard_frames(self) -> int:
        """How far ahead of `position` mouth audio must be scheduled, frames (0 on the sim,
        one or two periods on a real-time stream)."""
        return int(self._driver.guard_frames)

    @property
    def realtime(self) -> bool:
        """True when blocks arrive on their own clock (JACK, PortAudio), False on the sim."""
        return bool(self._driver.realtime)

    def start(self) -> RigSession:
        """Attach to the rig's stream; frame 0 is the first block after this call."""
        if self._started:
            raise SessionError("this session was already started; open a new one per turn")
        self._started = True
        self._driver.attach(self._buffers)
        return self

    def schedule(self, mouth: np.ndarray, at_sample: int) -> int:
        """Mix ``mouth`` (shape (n,)) into the mouth timeline from session frame `at_sample`.

        Raises SessionError when `at_sample` is too close to the present (it must be at least
        the driver's guard, one or two periods, ahead of `position`) or past the capacity.
        Returns the index just after the scheduled audio.
        """
        x = np.asarray(mouth, dtype=np.float32).reshape(-1)
        at = int(at_sample)
        with self._lock:
            earliest = self._buffers.position + (self._driver.guard_frames if self._started else 0)
            if at < earliest:
                raise SessionError(
                    f"mouth audio scheduled at sample {at} but the stream is at "
                    f"{self._buffers.position} (earliest possible: {earliest}); schedule at "
                    "least one period ahead"
                )
            end = at + len(x)
            if end > self._buffers.capacity:
                raise SessionError(
                    f"mouth audio up to sample {end} does not fit the session's capacity of "
                    f"{self._buffers.capacity} frames; open the session with a larger capacity_s"
                )
            self._buffers.mouth[at:end] += x
            self._mouth_end = max(self._mouth_end, end)
        return end

    def feed(self, mouth: np.ndarray) -> int:
        """Append mouth audio after everything scheduled so far (or as soon as possible).

        Returns the session index where it starts.
        """
        guard = self._driver.guard_frames if self._started else 0
        at = max(self._mouth_end, self._buffers.position + guard)
        self.schedule(mouth, at)
        return at

    def read(self, timeout_s: float = 5.0) -> Block | None:
        """The next captured block (ref and ear, copies), or None after `timeout_s` seconds
        (real-time rigs) / when the sim cannot run further."""
        if not self._started:
            raise SessionError("read() before start()")
        b = self._buffers
        if not self._driver.realtime:
            try:
                start, n = b.blocks.get_nowait()
            except queue.Empty:
                if not self._driver.pump():
                    return None
                start, n = b.blocks.get_nowait()
        else:
            try:
                start, n = b.blocks.get(timeout=timeout_s)
            except queue.Empty:
                return None
        return Block(
            start, b.capture[start : start + n, 0].copy(), b.capture[start : start + n, 1].copy()
        )

    def run_until(self, sample_index: int, timeout_s: float | None = None) -> None:
        """Run (or wait for) the stream until `position` >= `sample_index`.

        timeout_s: wall-clock limit for real-time rigs (default: twice the audio time + 5 s);
        SessionError when the stream does not get there (it stalled, or the capture is full).
        """
        target = min(int(sample_index), self._buffers.capacity)
        if timeout_s is None:
            timeout_s = 2.0 * max(0, target - self.position) / self.sample_rate_hz + 5.0
        deadline = time.monotonic() + timeout_s
        while self.position < target:
            if self._buffers.full:
                break
            if not self._driver.realtime:
                if not self._driver.pump():
                    break
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.read(timeout_s=min(left, 0.5))
        if self.position < target:
            why = "capture full" if self._buffers.full else f"no progress within {timeout_s:.1f} s"
            raise SessionError(
                f"the stream reached sample {self.position} of {target} ({why}); "
                "is the audio server running and the rig's client active?"
            )

    def stop(self) -> Capture:
        """Detach from the stream and return everything captured."""
        if not self._stopped:
            self._stopped = True
            if self._started:
                self._driver.detach()
        b = self._buffers
        n = b.position
        status = RigStatus(n, self.sample_rate_hz, tuple(b.xruns), self._latency())
        return Capture(
            b.capture[:n].copy(),
            b.mouth[:n].copy(),
            self.sample_rate_hz,
            status,
            b.clock_map(self.sample_rate_hz),
        )

    def __enter__(self) -> RigSession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@runtime_checkable
class AudioRig(Protocol):
    """One audio path harness <-> DUT. Backends: sim, loopback (JACK), soundcard.

    name: the rig's name (profile stem or short name). sample_rate_hz: the stream's rate, Hz.
    block_frames: the stream's period, frames. channels: where mouth/ref/ear are.
    timing_only_xruns: its xruns are late cycles that lose no samples (the JACK loopback on
    the dummy driver); a sound card's xrun drops or repeats audio, a sim dropout zeroes it.
    dry_path: the ear hears the DUT with no room in between (the loopback, a free-field sim),
    so a fading word end before a barge-in stop is not taken for a room ringing down.
    dut_shares_process: the DUT runs inside the harness's process (the sim's in-process
    reference agent), so a stall of that process may be the DUT's own (`harness.stalls`).
    paced: the session runs in real time (False: a sim running faster than real time,
    whose timings no host stall can change).
    """

    name: str
    sample_rate_hz: int
    block_frames: int
    channels: ChannelMap
    timing_only_xruns: bool
    dry_path: bool
    dut_shares_process: bool
    paced: bool

    def open(self) -> AudioRig:
        """Acquire the audio path (start servers, open streams); returns self."""
        ...

    def close(self) -> None:
        """Release everything `open` acquired; safe to call twice."""
        ...

    def session(self, *, capacity_s: float = 60.0) -> RigSession:
        """A new streaming session (not started) holding up to `capacity_s` seconds."""
        ...

    def latency(self) -> RigLatency:
        """The rig's latency figures, samples."""
        ...

    def __enter__(self) -> AudioRig: ...

    def __exit__(self, *exc: object) -> None: ...


class RigBase:
    """Shared plumbing for backends: context manager, calibration figures, play_and_record.

    name: the rig's name. sample_rate_hz: Hz. block_frames: the stream's period, frames.
    A backend whose xruns lose no samples, or whose ear has no room before it, says so
    (`AudioRig.timing_only_xruns`, `AudioRig.dry_path`); one running its DUT in the
    harness's process says so (`AudioRig.dut_shares_process`).
    """

    timing_only_xruns: bool = False
    dry_path: bool = False
    dut_shares_process: bool = False
    paced: bool = True

    def __init__(
        self,
        name: str,
        sample_rate_hz: int,
        block_frames: int,
        channels: ChannelMap | None = None,
    ) -> None:
        self.name = name
        self.sample_rate_hz = int(sample_rate_hz)
        self.block_frames = int(block_frames)
        self.channels = channels or ChannelMap()
        self.calibrated_mouth_to_ref: int | None = None
        self.calibrated_mouth_to_ear: int | None = None

    def open(self) -> RigBase:  # pragma: no cover - overridden
        return self

    def close(self) -> None:  # pragma: no cover - overridden
        return None

    def __enter__(self) -> RigBase:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def play_and_record(self, mouth: np.ndarray, seconds: float) -> Capture:
        """Play `mouth` from sample 0 and record `seconds` seconds; see `play_and_record`."""
        return play_and_record(self, mouth, seconds)  # type: ignore[arg-type]


def play_and_record(
    rig: AudioRig, mouth: np.ndarray, seconds: float, *, timeout_s: float | None = None
) -> Capture:
    """Blocking: play `mouth` (shape (n,), float, the rig's rate) from the session's first
    frame and record ``seconds`` seconds of ref and ear (at least as long as `mouth`)."""
    fs = rig.sample_rate_hz
    frames = max(int(round(seconds * fs)), len(mouth))
    capacity_s = (frames + 4 * rig.block_frames) / fs
    session = rig.session(capacity_s=capacity_s)
    session.schedule(mouth, 0)
    with session:
        session.run_until(frames, timeout_s=timeout_s)
        capture = session.stop()
    return Capture(
        capture.samples[:frames],
        capture.mouth[:frames],
        capture.sample_rate_hz,
        capture.status,
        capture.clock,
    )
