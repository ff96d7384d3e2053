"""`python -m bertkit`: the `bertkit` command, where the package is on the path but not installed."""

import sys

from bertkit.cli import main

sys.exit(main())
