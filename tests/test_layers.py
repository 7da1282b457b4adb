"""The layers of the package hold: import-linter's contracts of pyproject.toml (the layering
rule of docs/overview.md, and no import cycle at any depth) are kept by the code, and
broken by a copy of it where a module at the bottom imports one above it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    """lint-imports with the checkout's contracts, on the package under ``root``."""
    return subprocess.run(
        [str(LINT_IMPORTS), str(CHECKOUT / "pyproject.toml"), "--no-cache", "--no-logo"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def scratch(tmp_path) -> Path:
    """A copy of the package, to break."""
    shutil.copytree(
        CHECKOUT / "dispatcher",
        tmp_path / "dispatcher",
        ignore=shutil.ignore_patterns("__pycache__", "static", "migrations"),
    )
    return tmp_path


def test_the_code_keeps_the_layers():
    done = lint(CHECKOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_an_import_up_the_layers_breaks_them(scratch):
    """metrics, at the bottom, made to import clouds: the layers contract is broken, and
    the report names the import."""
    metrics = scratch / "dispatcher" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\nfrom . import clouds  # noqa\n")
    done = lint(scratch)
    assert done.returncode == 1
    assert "dispatcher.metrics -> dispatcher.clouds" in done.stdout


def test_a_cycle_breaks_them(scratch):
    """Two modules of one package that import each other: the cycle is named."""
    ending = scratch / "dispatcher" / "operations" / "ending.py"
    ending.write_text(ending.read_text() + "\nfrom . import vms  # noqa\n")
    done = lint(scratch)
    assert done.returncode == 1
    assert "No cycles are allowed in dispatcher.operations" in done.stdout


def test_a_new_top_level_module_must_find_its_layer(scratch):
    """A module the contract does not place fails it: a new capability finds its room in
    the picture first."""
    (scratch / "dispatcher" / "stray.py").write_text('"""Nowhere yet."""\n')
    done = lint(scratch)
    assert done.returncode == 1
    assert "dispatcher.stray" in done.stdout
