"""`python -m miniseries.cli …`: the same as the `miniseries` command."""

import sys

from miniseries.cli import main

sys.exit(main())
