"""No function in ``pneumoview/`` above cyclomatic complexity 25 (radon's measure).

A long algorithm is a class whose methods are its named steps (``BatchRun``, the process
pool's loop handlers, ``FolderIndexer``), so there is no allow-list.
"""

from __future__ import annotations

from pathlib import Path

import pytest

radon_complexity = pytest.importorskip("radon.complexity")

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 25


def _scores() -> dict[str, int]:
    out: dict[str, int] = {}
    for path in sorted((ROOT / "pneumoview").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for block in radon_complexity.cc_visit(path.read_text(encoding="utf-8")):
            items = [block, *getattr(block, "methods", [])]
            for item in items:
                name = getattr(item, "fullname", item.name)
                out[f"{rel}:{name}"] = item.complexity
    return out


def test_no_function_above_complexity_limit() -> None:
    over = {k: v for k, v in _scores().items() if v > LIMIT}
    assert over == {}, f"functions above complexity {LIMIT}: {over}"
