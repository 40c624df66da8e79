#!/usr/bin/env bash
# The whole test suite. Docker-backed tests (later issues) skip themselves with a message where no engine runs.
set -euo pipefail
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
