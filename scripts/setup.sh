#!/usr/bin/env bash
# Create .venv and install the project with its test extras, from the project's own files only.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.4,<1"
fi
.venv/bin/uv pip install --quiet --python .venv/bin/python -e ".[test]"
