"""``python -m amcheck``: the command-line tool, as the ``amcheck`` command runs it."""

import sys

from amcheck.cli import main

if __name__ == "__main__":
    sys.exit(main())
