#!/usr/bin/env bash
# Prepares the slow, network-fetched tools some e2e tests use, before pytest
# starts, each within its own time budget (so a slow npm registry never runs
# into pytest's per-test timeout):
#   npx-everything  the reference MCP stdio server (npx -y @modelcontextprotocol/server-everything)
#   conformance     the official conformance runner + Node 22 (scripts/conformance.sh)
#   clients         the TypeScript SDK and the Inspector + Node 22 (scripts/clients.sh)
# Each result goes to tests/.artifacts/tools/<name>: "ok", or the reason it is
# unavailable, which the test that needs it prints when it skips. This script
# itself never fails: these tools are optional where npm cannot be reached.
#   scripts/e2e-tools.sh           (E2E_TOOLS_SECONDS per tool, default 300)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/tests/.artifacts/tools
BUDGET=${E2E_TOOLS_SECONDS:-300}
mkdir -p "$OUT"

everything_help() {
  npx -y @modelcontextprotocol/server-everything --help 2>&1 | tee /dev/stderr | grep -q stdio
}
export -f everything_help

record() { # name, command...
  local name=$1; shift
  local log=$OUT/$name.log start=$SECONDS status
  timeout "$BUDGET" "$@" >"$log" 2>&1 </dev/null
  status=$?
  if [[ $status -eq 0 ]]; then
    echo ok >"$OUT/$name"
  elif [[ $status -eq 124 ]]; then
    echo "not installed: $* took longer than ${BUDGET}s (npm registry slow or unreachable)" >"$OUT/$name"
  else
    echo "not installed: $* exited $status: $(tail -c 300 "$log" | tr '\n' ' ')" >"$OUT/$name"
  fi
  echo "e2e-tools: $name: $(cat "$OUT/$name") ($((SECONDS - start))s)"
}

# --help starts nothing; it only makes npx fetch the package into its cache
# (and prints a usage that names the stdio transport).
if command -v npx >/dev/null; then
  record npx-everything bash -c everything_help
else
  echo "npx is not installed (Node.js and npm)" >"$OUT/npx-everything"
fi
if command -v npm >/dev/null; then
  record conformance "$ROOT/scripts/conformance.sh"
else
  echo "npm is not installed (Node.js and npm)" >"$OUT/conformance"
fi
# The official clients test_denial_clients.py drives (TypeScript SDK, Inspector).
if command -v npm >/dev/null; then
  record clients "$ROOT/scripts/clients.sh"
fi
exit 0
