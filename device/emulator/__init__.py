"""A virtual tympan device: the serial protocol on a pseudo-terminal, the reference agent
(optionally) on a JACK loopback rig behind it. Run ``python -m device.emulator --pty``.

- `Emulator` (runner): the device, its pty, commands, timers and agent.
- `VirtualDevice` (device): the protocol engine, its own clock (`DeviceClock`) and the link
  impairments that prove the bridge's robustness (noise, drops, reboots, unplugs).
- `PtyLink` (ptylink): the pty, a stable symlink to it, and `unplug`.
- `ProtocolSink` (sink): an ``EventSink`` that sends the agent's telemetry as EVENT frames.
"""
