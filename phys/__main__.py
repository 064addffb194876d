"""``python -m phys``: the ``phys`` command line."""

import sys

from phys.cli import main

sys.exit(main())
