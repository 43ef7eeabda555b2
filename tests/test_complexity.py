"""No function in ``pneumoview/`` (core, Qt layer, commands) above cyclomatic complexity 25
(radon's measure) or longer than 80 lines.

A long algorithm is a class whose methods are its named steps (``BatchRun``, the process
pool's loop handlers, ``FolderIndexer``), a long widget a set of ``_build_*`` methods, so there
is no allow-list.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

radon_complexity = pytest.importorskip("radon.complexity")

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 25
MAX_LINES = 80


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


def test_no_function_longer_than_the_line_limit() -> None:
    long: dict[str, int] = {}
    for path in sorted((ROOT / "pneumoview").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_LINES:
                    long[f"{rel}:{node.name}:{node.lineno}"] = lines
    assert long == {}, f"functions longer than {MAX_LINES} lines: {long}"
