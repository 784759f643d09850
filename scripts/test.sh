#!/usr/bin/env bash
# Lint, make sure the servers answer (starting those that do not), then run the test suite on them;
# "no tests ran" (pytest exit 5) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh || exit 1

.venv/bin/ruff check . && .venv/bin/ruff format --check . || exit 1
.venv/bin/pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$status"
