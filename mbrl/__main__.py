"""`python -m mbrl` is the `mbrl` command."""

import sys

from mbrl.cli import main

sys.exit(main())
