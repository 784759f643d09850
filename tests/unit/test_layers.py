"""The layering contract of pyproject.toml's [tool.importlinter] holds, and fails on a forbidden import.

lint-imports reads the sources without importing them, so this needs no server; scripts/test.sh runs
the same check on the real tree before pytest.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120
    )


def copy_of_the_package(tmp_path: Path) -> Path:
    shutil.copytree(
        PROJECT_ROOT / "airflow_dbstream",
        tmp_path / "airflow_dbstream",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def a_module_of(package: Path) -> Path:
    return next(p for p in sorted(package.glob("*.py")) if p.name != "__init__.py")


def test_the_tree_keeps_the_contract():
    done = lint_imports(PROJECT_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize("forbidden", ["redis", "airflow", "psycopg", "MySQLdb", "sqlite3", "threading"])
def test_a_core_module_importing_a_driver_airflow_or_threading_breaks_it(tmp_path, forbidden):
    root = copy_of_the_package(tmp_path)
    module = a_module_of(root / "airflow_dbstream" / "core")
    module.write_text(module.read_text() + f"\nimport {forbidden}\n")
    done = lint_imports(root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"airflow_dbstream.core is not allowed to import {forbidden}:" in done.stdout, done.stdout
    assert f"airflow_dbstream.core.{module.stem} -> {forbidden}" in done.stdout, done.stdout


def test_a_hook_importing_the_cycle_breaks_the_layers(tmp_path):
    root = copy_of_the_package(tmp_path)
    module = a_module_of(root / "airflow_dbstream" / "hooks")
    module.write_text(module.read_text() + "\nfrom airflow_dbstream.cycle import pipeline\n")
    done = lint_imports(root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "airflow_dbstream.hooks is not allowed to import airflow_dbstream.cycle:" in done.stdout
    assert f"airflow_dbstream.hooks.{module.stem} -> airflow_dbstream.cycle.pipeline" in done.stdout


def test_the_trigger_importing_the_cycle_or_a_sensor_breaks_the_layers(tmp_path):
    root = copy_of_the_package(tmp_path)
    module = root / "airflow_dbstream" / "triggers" / "redis_stream.py"
    module.write_text(
        module.read_text()
        + "\nfrom airflow_dbstream.cycle import pipeline\nfrom airflow_dbstream.sensors import redis_stream\n"
    )
    done = lint_imports(root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "airflow_dbstream.triggers is not allowed to import airflow_dbstream.cycle:" in done.stdout
    assert "airflow_dbstream.triggers is not allowed to import airflow_dbstream.sensors:" in done.stdout
