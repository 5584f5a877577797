"""``python -m device.agent`` (file mode); see `device.agent.cli`."""

import sys

from device.agent.cli import main

sys.exit(main())
