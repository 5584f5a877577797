"""A tiny DUT for the JACK loopback rig: its output is its input delayed by N samples.

It proves the wiring and the latency figures (mouth -> ear = one JACK period + N), and is the
stand-in DUT for xrun counts until an agent's JACK adapter is wired in::

    python examples/jack_delay_dut.py --server tympan-123-1 --name delay-dut --delay 480
    tympan calibrate --rig loopback   # with [loopback] server/dut set, or --dut jack:delay-dut

The process callback only copies (a preallocated delay line). Prints "ready" once active;
runs until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

import numpy as np


class DelayDut:
    """A JACK client with ports in/out; out = in delayed by `delay_samples`, times `gain`."""

    def __init__(
        self,
        name: str = "delay-dut",
        delay_samples: int = 480,
        *,
        servername: str | None = None,
        gain: float = 1.0,
    ) -> None:
        import jack

        self.client = jack.Client(name, servername=servername, no_start_server=True)
        self.delay = int(delay_samples)
        self.gain = float(gain)
        self._in = self.client.inports.register("in")
        self._out = self.client.outports.register("out")
        self._line = np.zeros(self.delay + 16384, dtype=np.float32)
        self.client.set_process_callback(self._process)

    @property
    def name(self) -> str:
        """The client's JACK name."""
        return self.client.name

    def _process(self, frames: int) -> None:
        d, line = self.delay, self._line
        line[d : d + frames] = self._in.get_array()
        out = self._out.get_array()
        np.multiply(line[:frames], self.gain, out=out)
        line[:d] = line[frames : frames + d]

    def start(self) -> DelayDut:
        """Activate the client."""
        self.client.activate()
        return self

    def close(self) -> None:
        """Deactivate and close."""
        self.client.deactivate()
        self.client.close()

    def __enter__(self) -> DelayDut:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """Run the delay DUT until SIGTERM/SIGINT."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default=None, help="JACK server name (default: the default)")
    ap.add_argument("--name", default="delay-dut", help="JACK client name")
    ap.add_argument("--delay", type=int, default=480, help="delay, samples")
    ap.add_argument("--gain", type=float, default=1.0, help="linear gain")
    args = ap.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with DelayDut(args.name, args.delay, servername=args.server, gain=args.gain) as dut:
        print(f"ready {dut.name}", flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
