#!/usr/bin/env bash
# Make sure the servers the tests and the demo use answer on 127.0.0.1; start those that do not.
set -euo pipefail

wait_for() {  # name, command
    for _ in $(seq 1 60); do
        if eval "$2" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    echo "services: $1 does not answer on 127.0.0.1" >&2
    return 1
}

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "services: starting Redis on 127.0.0.1:6379"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
wait_for Redis "redis-cli -h 127.0.0.1 -p 6379 ping"

if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
    echo "services: starting PostgreSQL on 127.0.0.1:5432"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
fi
wait_for PostgreSQL "pg_isready -h 127.0.0.1 -p 5432"
if ! psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
    psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test"
fi

# MariaDB (started here if it does not answer): the tests need its database `test` and its time zone tables
# (a session's time_zone is set to source_timezone, e.g. 'Europe/Paris').
if ! mariadb -h 127.0.0.1 -u root -e 'SELECT 1' >/dev/null 2>&1 && [ -x /usr/sbin/mariadbd ]; then
    echo "services: starting MariaDB on 127.0.0.1:3306"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
fi
wait_for MariaDB "mariadb -h 127.0.0.1 -u root -e 'SELECT 1'"
mariadb -h 127.0.0.1 -u root -e "CREATE DATABASE IF NOT EXISTS test"
if [ "$(mariadb -h 127.0.0.1 -u root -N -e 'SELECT COUNT(*) FROM mysql.time_zone_name')" = "0" ]; then
    echo "services: loading MariaDB's time zone tables"
    mariadb-tzinfo-to-sql /usr/share/zoneinfo 2>/dev/null | mariadb -h 127.0.0.1 -u root mysql
fi

# RabbitMQ: the Celery broker of the soak (tests/system/soak.py), guest/guest on 127.0.0.1:5672.
if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && command -v rabbitmq-server >/dev/null 2>&1; then
    echo "services: starting RabbitMQ on 127.0.0.1:5672"
    rabbitmq-server -detached
fi
wait_for RabbitMQ "(exec 3<>/dev/tcp/127.0.0.1/5672)"
