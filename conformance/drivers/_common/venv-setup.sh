#!/bin/sh
# Shared by the Python drivers' `setup` scripts:
#   venv-setup.sh NAME REQUIREMENTS_FILE
# Creates (or reuses) the venv $SANDSPEC_VENVS/NAME, by default
# ~/.cache/sandspec/venvs/NAME (no root needed), and installs the pinned
# requirements into it from PyPI. Idempotent: when the venv already holds
# exactly the pinned versions it does nothing.
set -eu
name=$1
req=$2
venvs=${SANDSPEC_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/sandspec/venvs}
venv=$venvs/$name
py=${SANDSPEC_PYTHON:-python3}

if ! command -v "$py" >/dev/null 2>&1; then
    echo "setup $name: failed to find $py: install Python 3.10 or newer (or set SANDSPEC_PYTHON)" >&2
    exit 2
fi
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
    echo "setup $name: failed to use $py: Python 3.10 or newer is needed, found $("$py" --version 2>&1)" >&2
    exit 2
fi

# Already done? Compare the pinned lines with what the venv holds.
if [ -x "$venv/bin/python" ]; then
    want=$(grep -v '^[[:space:]]*\(#\|$\)' "$req" | tr 'A-Z_' 'a-z-' | sort)
    have=$("$venv/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null | tr 'A-Z_' 'a-z-' | sort)
    missing=$(printf '%s\n' "$want" | while read -r line; do
        printf '%s\n' "$have" | grep -qxF "$line" || echo "$line"
    done)
    if [ -z "$missing" ]; then
        echo "setup $name: up to date in $venv"
        exit 0
    fi
fi

mkdir -p "$venvs"
if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv" || {
        echo "setup $name: failed to create a venv with $py (on Debian: apt-get install python3-venv)" >&2
        exit 2
    }
fi
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet --no-input -r "$req"
echo "setup $name: installed into $venv"
