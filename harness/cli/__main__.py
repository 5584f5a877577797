"""``python -m harness.cli``: the `tympan` command."""

import sys

from harness.cli import main

sys.exit(main())
