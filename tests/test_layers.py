"""core/'s layers (core/__init__.py) are checked by import-linter's contracts in pyproject.toml: `make test` runs
lint-imports on the tree. These tests show the contracts hold today and that they catch an import that runs up a
layer, or into streamlit, as a change would add it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--no-cache"],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def copy_of_core(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "core", tmp_path / "core", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def add_import(module: Path, line: str) -> None:
    """Put an import at the top of a module, after its docstring and `from __future__` line."""
    text = module.read_text(encoding="utf-8")
    head, sep, rest = text.partition("from __future__ import annotations\n")
    assert sep, module
    module.write_text(f"{head}{sep}{line}\n{rest}", encoding="utf-8")


def test_the_tree_keeps_its_layers():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "said"),
    [
        ("store/db.py", "from core.jobs import worker  # noqa: F401", "core.store is not allowed to import core.jobs"),
        ("training/train.py", "import core.results.verdict  # noqa: F401", "not allowed to import core.results"),
        ("words.py", "from core.store import db  # noqa: F401", "core.words is not allowed to import core.store"),
        ("data/reading.py", "import streamlit  # noqa: F401", "core never imports streamlit"),
    ],
)
def test_an_import_up_a_layer_or_into_streamlit_breaks_the_contract(tmp_path, module, line, said):
    tree = copy_of_core(tmp_path)
    add_import(tree / "core" / module, line)
    done = lint(tree)
    assert done.returncode != 0
    assert said in done.stdout and "BROKEN" in done.stdout
