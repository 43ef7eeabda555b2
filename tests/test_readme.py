"""The README's quick start and CI must not drift apart."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    test_command = next(b for b in blocks if "pytest" in b)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def _quick_start() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Quick start", 1)[1].split("\n## ", 1)[0]


def test_quick_start_makes_a_venv_then_installs_and_starts_the_demo() -> None:
    """Debian and Ubuntu refuse a system-wide pip install: the venv comes first."""
    blocks = _bash_blocks(_quick_start())
    assert blocks[:3] == ["python3 -m venv .venv && . .venv/bin/activate",
                          "pip install . && pneumoview --demo",
                          'pip install -e ".[test]" && python -m pytest -q']
    assert "\n" not in blocks[2]  # the test command is one line
    assert blocks[2] == next(b for b in _bash_blocks((ROOT / "README.md").read_text())
                             if "pytest" in b)


def test_quick_start_names_system_libraries_shared_data_and_panels() -> None:
    quick = _quick_start()
    for lib in ("libgl1", "libegl1", "libxkbcommon0", "libfontconfig1", "libxcb-cursor0"):
        assert lib in quick, lib
    assert "../shared/data" in quick and "PNEUMOVIEW_TEST_DATA=none" in quick
    readme = (ROOT / "README.md").read_text()
    assert "Reset Window Layout" in readme


def test_ci_runs_the_shared_data_tests_again_with_the_data_hidden() -> None:
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    readme_cmd = next(b for b in _bash_blocks((ROOT / "README.md").read_text()) if "pytest" in b)
    second = "PNEUMOVIEW_TEST_DATA=none python -m pytest -q -m shared_data"
    assert second in lines and lines.index(second) > lines.index(readme_cmd)


#: README sections whose tables are not benchmarks and belong there: what is stored where, and
#: the input gate's refusal table (issue 16 asks for it in the README and the model card).
REQUIRED_TABLES = ("## Privacy", "### Input gate", "### Model 1.1")


def _lines_outside(text: str, headings: tuple[str, ...]) -> list[str]:
    """The lines of ``text`` outside the sections whose heading starts with one of ``headings``
    (a section ends at the next heading of the same or a higher level)."""
    out: list[str] = []
    skip_level = 0
    for line in text.splitlines():
        level = len(line) - len(line.lstrip("#")) if line.startswith("#") else 0
        if level and skip_level and level <= skip_level:
            skip_level = 0
        if level and line.startswith(headings):
            skip_level = level
        if not skip_level:
            out.append(line)
    return out


def test_benchmark_tables_live_in_docs_performance() -> None:
    readme = (ROOT / "README.md").read_text()
    perf = (ROOT / "docs" / "performance.md").read_text()
    table_rows = [line for line in _lines_outside(readme, REQUIRED_TABLES)
                  if line.startswith("|")]
    assert "| W/L step + repaint" in perf and "| W/L step" not in readme
    assert len(table_rows) < 20, "benchmark tables belong in docs/performance.md"
    assert "docs/performance.md" in readme


def test_sdist_lists_only_files_that_exist() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = conf["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
    missing = [name for name in include if not (ROOT / name).exists()]
    assert missing == []
    for needed in ("pneumoview", "resources", "tests", "training", "README.md", "LICENSE"):
        assert needed in include
