"""`python -m ptflow` runs the command line."""

import sys

from ptflow.cli import main

sys.exit(main())
