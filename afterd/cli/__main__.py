"""`python -m afterd.cli` is the `after` command too (tests/test_systemd.py's /usr/bin/after runs it)."""

import sys

from afterd.cli import main

sys.exit(main())
