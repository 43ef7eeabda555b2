"""Run a snippet of Python in a child process that cannot take the test machine down.

Attack files (a link to ``/dev/zero``, a deflate bomb, a sparse giant image) are meant to exhaust
memory or block: the code under test runs in a subprocess with an address-space limit
(``RLIMIT_AS``) and a wall-clock timeout, so on the old code the child dies or times out and the
test fails, instead of the kernel killing the test runner.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Outcome:
    returncode: int | None  # None: timed out (the child was killed)
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_bounded(code: str, *, mem_mib: int = 1536, timeout_s: float = 60.0,
                env: dict[str, str] | None = None) -> Outcome:
    """Run ``code`` (dedented) under ``RLIMIT_AS = mem_mib`` MiB, killed after ``timeout_s``."""
    limit = mem_mib * 2**20
    prelude = ("import resource\n"
               f"resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n")
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"),
                                             full_env.get("PYTHONPATH", "")])
    full_env.setdefault("QT_QPA_PLATFORM", "offscreen")
    full_env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    full_env.update(env or {})
    try:
        proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                              capture_output=True, text=True, timeout=timeout_s, env=full_env,
                              cwd=str(REPO))
    except subprocess.TimeoutExpired as exc:
        return Outcome(None, _text(exc.stdout), _text(exc.stderr))
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
