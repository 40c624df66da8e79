#!/usr/bin/env bash
# The whole test suite. Docker-backed tests skip themselves with a message where no engine runs;
# the UI tests drive Debian's chromium, installed here where missing (as root, with apt).
set -euo pipefail
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
        echo "test: could not install chromium; the UI tests will skip" >&2
fi
# PostgreSQL: the store's tests run against it as well as SQLite, and the high-availability tests
# run two melonds over it (the tests start a private server of their own, tests/pgserver.py).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # Debian's package would make and start a cluster of its own on port 5432: not wanted here.
    [ -e /etc/postgresql-common/createcluster.conf ] || {
        mkdir -p /etc/postgresql-common && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf; }
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null; } ||
        echo "test: could not install postgresql-15; the PostgreSQL tests will skip" >&2
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
