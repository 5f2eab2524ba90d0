"""`python -m edge` runs the command line."""

import sys

from edge.cli import main

sys.exit(main())
