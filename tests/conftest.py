"""The environment every test runs in: a throwaway AIRFLOW_HOME, no example DAGs.

Nothing here reaches a server or imports a database driver, so `pytest tests/unit` runs anywhere;
the server fixtures are in tests/integration/conftest.py.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="dbstream-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
