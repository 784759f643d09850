#!/usr/bin/env bash
# Create .venv and install the project with its test (and benchmark) extras, from the project's own files only.
set -euo pipefail
cd "$(dirname "$0")/.."

# The MySQL provider needs mysqlclient, a C extension built against MariaDB's client library.
if ! pkg-config --exists mariadb 2>/dev/null && ! pkg-config --exists mysqlclient 2>/dev/null; then
    echo "setup: installing libmariadb-dev and pkg-config (to build mysqlclient)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmariadb-dev pkg-config >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmariadb-dev pkg-config >/dev/null; }
fi

# A test runs a Redis that collates strings by en_US.UTF-8 (compiled by localedef from these definitions).
if [ ! -e /usr/share/i18n/locales/en_US ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's locales (the en_US definition a test compiles)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq locales >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq locales >/dev/null; }
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.4,<1"
fi
.venv/bin/uv pip install --quiet --python .venv/bin/python -e ".[test,bench,celery]"

# Debian's docker-compose validates docker-compose.yaml in the tests (Docker itself cannot run here).
if ! command -v docker-compose >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's docker-compose (to validate docker-compose.yaml)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi

# RabbitMQ, the soak's Celery broker (scripts/services.sh starts it when it does not answer).
if ! command -v rabbitmq-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing RabbitMQ (the broker of the soak's Celery workers)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi
