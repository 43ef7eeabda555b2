"""Entry point of the frozen build; both executables (GUI and console) run this script.

``multiprocessing.freeze_support()`` comes first: the batch engine starts its decode workers
with the ``spawn`` method, which in a frozen build re-runs this executable; the call makes such
a child run its worker and exit instead of starting the application again.
"""

import multiprocessing
import os
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    for _name in ("stdout", "stderr"):
        if getattr(sys, _name) is None:  # the windowed executable on Windows has no console
            setattr(sys, _name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
    from pneumoview.cli import main

    sys.exit(main())
