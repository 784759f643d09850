#!/usr/bin/env bash
# The local demo: install, make sure Postgres and Redis answer, run the example DAG's cycles.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/services.sh
exec .venv/bin/python scripts/demo.py
