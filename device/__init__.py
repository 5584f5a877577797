"""tympan's device side: the reference agent, the emulator and the serial bridge (later issues)."""
