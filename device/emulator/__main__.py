"""``python -m device.emulator``; see `device.emulator.cli`."""

import sys

from device.emulator.cli import main

sys.exit(main())
