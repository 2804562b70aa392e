#!/usr/bin/env bash
# Ensure the project virtualenv (.venv, or $MCPX_VENV) has the Python test
# dependencies from tests/requirements.txt, then print its python's path.
# Idempotent: a stamp keyed on the requirements file and the interpreter makes
# the already-installed case a few milliseconds with no pip call.
# Only the path goes to stdout; progress goes to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MCPX_VENV:-$ROOT/.venv}
REQS=$ROOT/tests/requirements.txt
STAMP=$VENV/.mcpx-test-requirements.stamp
PY=$VENV/bin/python

say() { echo "pyenv: $*" >&2; }
die() { echo "pyenv: error: $*" >&2; exit 1; }

[[ -f $REQS ]] || die "$REQS not found"

key() {
    { sha256sum <"$REQS"; "$PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1
}

# Fast path, no lock needed.
if [[ -f $STAMP ]] && k=$(key 2>/dev/null) && [[ $(<"$STAMP") == "$k" ]]; then
    echo "$PY"
    exit 0
fi

# Serialise with scripts/envoy.sh, which installs into the same venv.
mkdir -p "$VENV"
if command -v flock >/dev/null 2>&1; then
    exec 9<"$VENV"      # lock the directory itself: venv --clear keeps it
    flock 9
fi

if ! "$PY" -c 'import sys' >/dev/null 2>&1; then
    PYTHON=${PYTHON:-python3}
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; install Python >= 3.10 with the venv module"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || die "$("$PYTHON" --version 2>&1) is too old for the MCP SDK; need Python >= 3.10 (set PYTHON=...)"
    say "creating virtualenv $VENV"
    "$PYTHON" -m venv --clear "$VENV" >&2 || die "'$PYTHON -m venv' failed (Debian: apt-get install python3-venv)"
fi

k=$(key)
if [[ ! -f $STAMP || $(<"$STAMP") != "$k" ]]; then
    say "installing test requirements into $VENV"
    "$PY" -m pip install -q --disable-pip-version-check -r "$REQS" >&2 \
        || die "pip install -r $REQS failed"
    "$PY" -c 'import pytest, pytest_timeout, mcp' || die "test requirements installed but not importable"
    echo "$k" >"$STAMP"
fi
echo "$PY"
