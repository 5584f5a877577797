"""The agent as a JACK client: one input port (its microphone) and one output port (its
speaker), on the JACK server's clock. Used on the loopback rig (`--dut jack:CLIENT`)::

    with JackAgent(config, client_name="tympan-agent", server_name="loop") as agent:
        ...  # connect "tympan-agent:in" and "tympan-agent:out"; the agent answers

or from a shell: ``python -m device.agent.live --jack tympan-agent [--server NAME]``.

The agent runs at the server's sample rate (a multiple of 16 kHz: 16, 32, 48 or 96 kHz).
The process callback only copies blocks (`device.agent.adapters.BlockPump`): the input to
a worker thread, the agent's output straight from its buffer.
"""

from __future__ import annotations

from device.agent.adapters import BlockPump
from device.agent.config import AgentConfig
from device.agent.engines import Engines
from device.agent.errors import AgentError
from device.agent.events import EventSink
from device.agent.host import AgentHost

DEFAULT_CLIENT_NAME = "tympan-agent"
INPUT_PORT = "in"
OUTPUT_PORT = "out"


class JackAgent:
    """An `AgentHost` driven by a JACK client.

    Args:
        config: agent configuration.
        client_name: the JACK client's name (ports are ``NAME:in`` and ``NAME:out``).
        server_name: the JACK server to join (None: the default server). The server must
            be running: this never starts one.
        engines: loaded engines to reuse (default: load the config's).
        sink: extra event sink.
        connect_input: ports to connect to the agent's input once active (e.g.
            ``["system:capture_1"]``).
        connect_output: ports to connect the agent's output to.
    """

    def __init__(
        self,
        config: AgentConfig | None = None,
        *,
        client_name: str = DEFAULT_CLIENT_NAME,
        server_name: str | None = None,
        engines: Engines | None = None,
        sink: EventSink | None = None,
        connect_input: list[str] | tuple[str, ...] = (),
        connect_output: list[str] | tuple[str, ...] = (),
    ) -> None:
        self.config = config or AgentConfig()
        self.client_name = client_name
        self.server_name = server_name
        self._engines = engines
        self._sink = sink
        self._connect_input = list(connect_input)
        self._connect_output = list(connect_output)
        self.client = None
        self.host: AgentHost | None = None
        self.pump: BlockPump | None = None

    @property
    def input_port(self) -> str:
        """Full name of the agent's input port."""
        return f"{self.client.name if self.client else self.client_name}:{INPUT_PORT}"

    @property
    def output_port(self) -> str:
        """Full name of the agent's output port."""
        return f"{self.client.name if self.client else self.client_name}:{OUTPUT_PORT}"

    def start(self) -> JackAgent:
        """Open the client, start the agent, activate and connect.

        Raises:
            AgentError: JACK-Client is missing, the server is not running, or its rate is
                not a multiple of 16 kHz.
        """
        try:
            import jack
        except (ImportError, OSError) as exc:
            raise AgentError(
                f"the JACK adapter needs JACK-Client and libjack (pip install JACK-Client): {exc}"
            ) from exc
        where = f"JACK server {self.server_name!r}" if self.server_name else "the JACK server"
        try:
            client = jack.Client(
                self.client_name, servername=self.server_name, no_start_server=True
            )
        except jack.JackError as exc:
            raise AgentError(f"cannot join {where} as {self.client_name!r}: {exc}") from exc
        self.client = client
        try:
            rate = client.samplerate
            if rate % 16000:
                raise AgentError(
                    f"{where} runs at {rate} Hz; the agent needs a multiple of 16000 Hz "
                    "(16000, 32000, 48000 or 96000)"
                )
            inport = client.inports.register(INPUT_PORT)
            outport = client.outports.register(OUTPUT_PORT)
            self.host = AgentHost(
                self.config,
                engines=self._engines,
                sink=self._sink,
                input_rate_hz=rate,
                output_rate_hz=rate,
            ).start()
            pump = self.pump = BlockPump(self.host)

            def process(frames: int) -> None:
                outport.get_array()[:] = pump.exchange(inport.get_array())

            client.set_process_callback(process)
            client.activate()
            for port in self._connect_input:
                client.connect(port, inport)
            for port in self._connect_output:
                client.connect(outport, port)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Deactivate and close the client, stop the agent (re-raises a pipeline failure)."""
        client, self.client = self.client, None
        if client is not None:
            try:
                client.deactivate()
            finally:
                client.close()
        pump, self.pump = self.pump, None
        if pump is not None:
            pump.close()
        host, self.host = self.host, None
        if host is not None:
            host.close()

    def __enter__(self) -> JackAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
