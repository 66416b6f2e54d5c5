"""`python -m afterd` is the `after` command (the background mode starts workers this way)."""

import sys

from afterd.cli import main

sys.exit(main())
