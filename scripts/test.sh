#!/usr/bin/env bash
# The whole test suite. Docker-backed tests skip themselves with a message where no engine runs;
# the UI tests drive Debian's chromium, installed here where missing (as root, with apt).
set -euo pipefail
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
        echo "test: could not install chromium; the UI tests will skip" >&2
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
