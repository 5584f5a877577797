"""A small voice bot with an exact, configurable reply delay: an external DUT for tympan.

It is NOT the reference agent: it knows nothing of tympan (JACK-Client, numpy and, for a WAV
reply, soundfile only). It listens on ``NAME:in``, finds the end of each utterance with an
energy threshold and plays its reply on ``NAME:out`` starting exactly ``--delay-ms`` after
that end::

    python examples/delay_bot.py --delay-ms 700 [--server NAME] [--name delay-bot]
        [--reply tone:440:0.8 | --reply wav:PATH] [--hangover-ms 300]

    tympan run --rig loopback --dut 'cmd:"python examples/delay_bot.py --delay-ms 700"'

Sample clock: the bot counts frames from its first JACK period; input frame k and output
frame k are the same frame of the same period (what arrives on ``in`` in a period and what
it writes to ``out`` in that period carry the same index).

End of speech, to the sample, the same definition as the corpus labels
(`harness.corpus.label_speech`): in 10 ms frames of the bot's own clock, a frame is speech
when its mean energy is above the loudest frame of the utterance minus 40 dB (and above
-70 dBFS, so silence is never speech); the utterance is over once no speech frame has come
for ``--hangover-ms``; its end is then the frame just after the last input sample whose
magnitude exceeds that threshold's RMS level (sqrt of the energy threshold), searched up to
50 ms past the last speech frame. The reply's first sample is output frame
``speech_end + round(delay_ms * rate / 1000)``. For each reply the bot prints one line::

    reply: speech_end=K reply_at=K+D delay_samples=D

(frames of its own clock). A reply that cannot start in time any more (a delay shorter than
the hangover plus two periods) starts as soon as possible and the line says ``late=N``.

The JACK process callback only copies blocks (an input ring and an output timeline, both
preallocated); detection runs on a worker thread. Prints ``ready: NAME:in NAME:out`` once
its ports exist; runs until SIGTERM or Ctrl-C. The server is ``--server``, else the
environment's ``TYMPAN_JACK_SERVER`` (set by tympan's ``cmd:`` DUTs), else JACK's default.
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import signal
import sys
import threading

import numpy as np

FRAME_S = 0.010
THRESHOLD_DB = -40.0
FLOOR_DBFS = -70.0
EDGE_S = 0.050
RING_S = 60.0


def make_reply(spec: str, rate: int) -> np.ndarray:
    """Reply audio: "tone:HZ:SECONDS" (a sine from phase 0, amplitude 0.3) or "wav:PATH"."""
    kind, _, rest = spec.partition(":")
    if kind == "tone":
        hz, seconds = (float(v) for v in rest.split(":"))
        t = np.arange(int(round(seconds * rate))) / rate
        return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    if kind == "wav":
        import soundfile as sf

        x, fs = sf.read(rest, dtype="float32", always_2d=True)
        if fs != rate:
            raise SystemExit(f"delay_bot: {rest}: {fs} Hz, the JACK server runs at {rate} Hz")
        return np.ascontiguousarray(x[:, 0])
    raise SystemExit(f"delay_bot: --reply {spec!r}: expected tone:HZ:SECONDS or wav:PATH")


class DelayBot:
    """The bot: a JACK client and a detector thread (see the module docstring)."""

    def __init__(
        self,
        name: str,
        delay_ms: float,
        *,
        server: str | None = None,
        reply: str = "tone:440:0.8",
        hangover_ms: float = 300.0,
        out: object = sys.stdout,
    ) -> None:
        import jack

        self.client = jack.Client(name, servername=server, no_start_server=True)
        rate = self.rate = int(self.client.samplerate)
        self.delay = int(round(delay_ms * rate / 1000))
        self.hangover = int(round(hangover_ms * rate / 1000))
        self.frame = int(round(FRAME_S * rate))
        self.edge = int(round(EDGE_S * rate))
        self.reply = make_reply(reply, rate)
        self.out = out
        n = int(RING_S * rate)
        self.ring_in = np.zeros(n, dtype=np.float32)  # input, by frame index modulo n
        self.ring_out = np.zeros(n, dtype=np.float32)  # output timeline, modulo n
        self.n = n
        self.clock = 0  # frames run so far (the callback's)
        self.blocks: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._in = self.client.inports.register("in")
        self._out = self.client.outports.register("out")
        self.client.set_process_callback(self._process)
        self._worker = threading.Thread(target=self._detect, name="bot-detect", daemon=True)
        self.replies: list[tuple[int, int]] = []

    # --- real-time side: copies only ---------------------------------------------------------

    def _process(self, frames: int) -> None:
        t, n = self.clock, self.n
        a = t % n
        b = a + frames
        x = self._in.get_array()
        y = self._out.get_array()
        if b <= n:
            self.ring_in[a:b] = x
            y[:] = self.ring_out[a:b]
            self.ring_out[a:b] = 0.0
        else:
            k = n - a
            self.ring_in[a:] = x[:k]
            self.ring_in[: b - n] = x[k:]
            y[:k] = self.ring_out[a:]
            y[k:] = self.ring_out[: b - n]
            self.ring_out[a:] = 0.0
            self.ring_out[: b - n] = 0.0
        self.clock = t + frames
        self.blocks.put_nowait(self.clock)

    # --- detector thread ---------------------------------------------------------------------

    def _input(self, start: int, stop: int) -> np.ndarray:
        idx = np.arange(start, stop) % self.n
        return self.ring_in[idx].astype(np.float64)

    def _detect(self) -> None:
        frame = self.frame
        floor = 10 ** (FLOOR_DBFS / 10)
        done = 0  # frames [0, done) judged, in whole 10 ms frames
        peak = 0.0  # loudest frame energy of the current utterance
        last_speech = -1  # index of the last speech frame of the current utterance
        busy_until = 0  # no listening while our own reply plays
        while True:
            now = self.blocks.get()
            if now is None:
                return
            while done + frame <= now:
                x = self._input(done, done + frame)
                energy = float(np.mean(x * x))
                start = done
                done += frame
                if start < busy_until:
                    continue
                if energy > floor and energy > peak * 10 ** (THRESHOLD_DB / 10):
                    peak = max(peak, energy)
                    last_speech = start
            if last_speech >= 0 and done - (last_speech + frame) >= self.hangover:
                end = self._speech_end(last_speech, peak)
                busy_until = self._reply(end, now)
                peak, last_speech = 0.0, -1

    def _speech_end(self, last_speech: int, peak: float) -> int:
        """Frame just after the last input sample above the threshold's RMS level, searched
        up to EDGE_S past the last speech frame (the corpus labeller's rule)."""
        amp = math.sqrt(peak * 10 ** (THRESHOLD_DB / 10))
        lo, hi = last_speech, last_speech + self.frame + self.edge
        x = np.abs(self._input(lo, hi))
        loud = np.flatnonzero(x > amp)
        return lo + int(loud[-1]) + 1 if loud.size else last_speech + self.frame

    def _reply(self, speech_end: int, now: int) -> int:
        at = speech_end + self.delay
        # The callback may already be past `now` by a period: two periods of margin.
        earliest = self.clock + 2 * self.client.blocksize
        late = max(0, earliest - at)
        at += late
        idx = np.arange(at, at + len(self.reply)) % self.n
        self.ring_out[idx] += self.reply
        self.replies.append((speech_end, at))
        line = f"reply: speech_end={speech_end} reply_at={at} delay_samples={self.delay}"
        print(line + (f" late={late}" if late else ""), file=self.out, flush=True)
        return at + len(self.reply)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> DelayBot:
        """Activate the client and start the detector."""
        self._worker.start()
        self.client.activate()
        return self

    def close(self) -> None:
        """Deactivate and close."""
        self.client.deactivate()
        self.client.close()
        self.blocks.put_nowait(None)
        self._worker.join(2.0)

    def __enter__(self) -> DelayBot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """Run the bot until SIGTERM/SIGINT."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay-ms", type=float, required=True, help="reply delay after speech end")
    ap.add_argument("--server", default=os.environ.get("TYMPAN_JACK_SERVER"), help="JACK server")
    ap.add_argument("--name", default="delay-bot", help="JACK client name")
    ap.add_argument("--reply", default="tone:440:0.8", help="tone:HZ:SECONDS or wav:PATH")
    ap.add_argument("--hangover-ms", type=float, default=300.0, help="quiet that ends speech")
    args = ap.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with DelayBot(
        args.name,
        args.delay_ms,
        server=args.server,
        reply=args.reply,
        hangover_ms=args.hangover_ms,
    ) as bot:
        print(f"ready: {bot.client.name}:in {bot.client.name}:out", flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
