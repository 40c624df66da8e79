#!/usr/bin/env bash
# Create the venv and install Melon (with its test tools when the third argument is `test`);
# install Debian packages only where missing.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
extras=${3:+[$3]}
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq python3-venv
    else
        echo "setup: $python lacks the venv module; install python3-venv (Debian) and retry" >&2
        exit 1
    fi
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# compat: the editable install is a plain path entry, not setuptools' import finder, which loads
# importlib.metadata and pathlib into every Python process of the venv (18 ms instead of 41 ms
# for an empty `python -c pass` here, paid by every CLI run).
"$venv/bin/pip" install -q --disable-pip-version-check -e ".$extras" --config-settings editable_mode=compat
# The installed names of cli/ and remote/ (melon_cli, melon_remote: pyproject.toml) for this
# checkout: a folder of links to the repository's packages, which the editable install's path
# entry names instead of the repository itself (so `cli` is no importable name here either).
src="$venv/melon-src"
mkdir -p "$src"
for pair in melond:melond melon_cli:cli melon_remote:remote; do
    ln -sfn "$PWD/${pair#*:}" "$src/${pair%%:*}"
done
for pth in "$venv"/lib/python3*/site-packages/__editable__.melon-*.pth; do
    (cd "$src" && pwd) > "$pth"
done
"$venv/bin/python" scripts/write_launchers.py "$venv"
