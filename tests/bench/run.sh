#!/usr/bin/env bash
# `make bench`: every mcpx benchmark, on loopback, bounded in time; rewrites
# docs/performance.md, docs/performance.png and docs/performance-toolslist.png.
#
#   1. native micro-benchmarks of the filter core (cargo bench, filter/benches/micro.rs)
#   2. the stdio bridge benchmark, if tests/bench/bridge_bench.py exists
#   3. gateway overhead, tools/list inspection cost and memory (tests/bench/bench.py),
#      then the page and plots (tests/bench/report.py)
#
# The Makefile builds everything first and sets ENVOY_BIN, MCPX_WASM, MCPX_BIN,
# MCPX_DEMO_BIN. BENCH_QUICK=1: short runs that prove the harness works.
# Never part of `make test`. Whole run: about 5 minutes (quick: about 2).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
WORK=$ROOT/tests/.artifacts/bench
VENV=${MCPX_VENV:-$ROOT/.venv}
QUICK=${BENCH_QUICK:-}
[[ $QUICK == 0 ]] && QUICK=

say() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

for v in ENVOY_BIN MCPX_WASM MCPX_BIN MCPX_DEMO_BIN; do
    [[ -n ${!v:-} ]] || die "$v is not set; run this through \`make bench\`"
    [[ -e ${!v} ]] || die "$v=${!v} does not exist; run \`make build\`"
done

# Every stage runs as a child we wait for, so Ctrl-C / SIGTERM reaches this
# trap, which stops the stage (bench.py stops the processes it started).
child=
cleanup() {
    if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
stage() { "$@" & child=$!; local rc=0; wait "$child" || rc=$?; child=; return "$rc"; }

start=$SECONDS
mkdir -p "$WORK"

# --- tools: wrk (Debian) and taskset (util-linux)
if ! command -v wrk >/dev/null 2>&1; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        say "installing wrk"
        apt-get install -y wrk >&2 || { apt-get update >&2 && apt-get install -y wrk >&2; } \
            || die "could not install wrk (apt-get install -y wrk)"
    else
        die "wrk is not installed: apt-get install wrk (Debian/Ubuntu) or see https://github.com/wg/wrk"
    fi
fi
command -v taskset >/dev/null 2>&1 || die "taskset is missing (Debian: apt-get install util-linux)"

# --- Python: the project venv plus the plotting library (benchmarks only).
PY=$(scripts/pyenv.sh)
REQS=tests/bench/requirements.txt
STAMP=$VENV/.mcpx-bench-requirements.stamp
key=$({ sha256sum <"$REQS"; "$PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)
if [[ ! -f $STAMP || $(<"$STAMP") != "$key" ]]; then
    exec 9<"$VENV"   # same lock as scripts/pyenv.sh and scripts/envoy.sh
    flock 9
    say "installing $REQS into $VENV"
    "$PY" -m pip install -q --disable-pip-version-check -r "$REQS" >&2 || die "pip install -r $REQS failed"
    "$PY" -c 'import matplotlib' || die "matplotlib installed but not importable"
    echo "$key" >"$STAMP"
    exec 9<&-
fi

# --- 1. native micro-benchmarks (filter/benches/micro.rs).
micro() {
    stage timeout 600 "${CARGO:-cargo}" bench -q -p mcpx-filter --bench micro "$@" -- --json "$WORK/micro.json" \
        ${QUICK:+--quick}
}
say "micro-benchmarks (cargo bench -p mcpx-filter --bench micro)"
rm -f "$WORK/micro.json"
micro_problem=
micro || die "the micro-benchmarks failed (see above)"

# --- 2. the stdio bridge (written on its own branch; run when present)
bridge_status=absent
rm -f "$WORK/bridge.md"
if [[ -f tests/bench/bridge_bench.py ]]; then
    say "bridge benchmark (tests/bench/bridge_bench.py)"
    rc=0
    bridge_args=()
    [[ -n $QUICK ]] && bridge_args=(--seconds 2 --repeat 1)
    BENCH_QUICK=$QUICK stage timeout 300 "$PY" tests/bench/bridge_bench.py "${bridge_args[@]}" \
        >"$WORK/bridge.md" 2>"$WORK/bridge.err" || rc=$?
    if [[ $rc == 0 ]]; then
        bridge_status=ok
    else
        bridge_status="exit $rc"
        say "the bridge benchmark failed ($bridge_status); stderr:"
        tail -n 20 "$WORK/bridge.err" >&2 || true
        tail -n 40 "$WORK/bridge.err" >>"$WORK/bridge.md" || true
    fi
fi

# --- the benchmark-only filter build for the ablation table (`bench-ablation`:
# parts of the request path can be switched off); then the shipped build again.
WASM_DIR=$(dirname "$MCPX_WASM")
say "building the filter with --features bench-ablation (ablation table only)"
MCPX_WASM_FEATURES=bench-ablation stage scripts/toolchain.sh wasm >&2 || die "the bench-ablation build failed"
export MCPX_ABLATION_WASM=$WORK/mcpx_filter_ablation.wasm
cp "$WASM_DIR/mcpx_filter.wasm" "$MCPX_ABLATION_WASM"
stage scripts/toolchain.sh wasm >&2 || die "rebuilding the shipped filter failed"
cmp -s "$MCPX_ABLATION_WASM" "$MCPX_WASM" && die "the shipped .wasm equals the bench-ablation build"

# --- 3. gateway overhead, tools/list, memory, ablation; then the page
say "gateway benchmarks (tests/bench/bench.py)"
rc=0
stage timeout 900 "$PY" tests/bench/bench.py ${QUICK:+--quick} --micro-json "$WORK/micro.json" \
    --bridge-md "$WORK/bridge.md" --bridge-status "$bridge_status" ${micro_problem:+--micro-problem "$micro_problem"} \
    || rc=$?

elapsed=$((SECONDS - start))
say "done in ${elapsed}s (exit $rc); page: docs/performance.md; raw results: $WORK/results.json"
if ((elapsed > 600)); then
    say "warning: the run took longer than the 10-minute budget"
fi
exit "$rc"
