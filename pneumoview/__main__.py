"""``python -m pneumoview``: the same as the ``pneumoview`` console script."""

import multiprocessing
import sys

from pneumoview.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # the batch engine's worker processes in a frozen build
    sys.exit(main())
