#!/usr/bin/env bash
# Make sure the servers answer (starting those that do not), lint, check the import layers, then run the
# whole test suite on them, the slow tests too (a plain `pytest` skips those); "no tests ran" (pytest
# exit 5) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh || exit 1

.venv/bin/ruff check . && .venv/bin/ruff format --check . || exit 1
# The layering contract of pyproject.toml's [tool.importlinter]: a pure core, and no layer imports upward.
.venv/bin/lint-imports --no-logo --no-cache || exit 1
# `-m` before "$@": a marker expression given to test.sh still wins.
.venv/bin/pytest -m "slow or not slow" --durations=12 "$@"
status=$?
if [ "$status" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$status"
