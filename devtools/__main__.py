"""``python -m devtools``: the local stack's command line (see :mod:`devtools.cli`)."""

import sys

from devtools.cli import main

sys.exit(main())
