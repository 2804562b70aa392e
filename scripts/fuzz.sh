#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a bounded time with
# cargo-fuzz on the nightly toolchain, installing cargo-fuzz if missing.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# FUZZ_SEED=N is the reproducible smoke run (`make fuzz-smoke`, part of
# `make test`): libFuzzer's random seed is fixed, the run starts from the
# committed seeds alone (fuzz/seeds/<target>, copied to a fresh directory so
# no local corpus leaks in) and stops after FUZZ_RUNS inputs (or the time
# limit, whichever comes first). Every committed seed is replayed on every
# machine (libFuzzer's INITED line shows the same coverage each time); the
# mutations after them are steered by coverage feedback, so they can differ
# between runs even with the same seed.
# Without it (`make fuzz`), each target explores freely from the seeds plus
# the growing corpus in target/fuzz-corpus/<target> (not committed).
# Regenerate the seeds with fuzz/make_seeds.py. A crash fails the run and
# leaves the input under fuzz/artifacts/<target>/ — turn it into a
# regression test (and a seed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-60}
shift || true

# cargo-fuzz needs nightly-only flags (sanitizers, coverage). Use the
# nightly toolchain when it is installed; otherwise let the stable compiler
# accept them (RUSTC_BOOTSTRAP), as rustup cannot download nightly here.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  echo "fuzz: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (once)" >&2
  cargo install cargo-fuzz --locked --quiet
fi

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(cd fuzz && cargo "${toolchain[@]}" fuzz list)
fi

# Build every target once, before any runs (a compile error fails here).
(cd fuzz && cargo "${toolchain[@]}" fuzz build) >target/fuzz-build.log 2>&1 \
  || { tail -n 40 target/fuzz-build.log >&2; echo "fuzz: build FAILED" >&2; exit 1; }

for t in "${targets[@]}"; do
  [[ -d "fuzz/seeds/$t" ]] || { echo "fuzz: $t has no seeds (fuzz/seeds/$t); run fuzz/make_seeds.py" >&2; exit 1; }
  if [[ -n ${FUZZ_SEED:-} ]]; then
    corpus="target/fuzz-smoke/$t"
    rm -rf "$corpus"
    limit=(-seed="$FUZZ_SEED" -runs="${FUZZ_RUNS:-3000}")
    echo "fuzz: $t: $(ls "fuzz/seeds/$t" | wc -l) seeds, then up to ${FUZZ_RUNS:-3000} inputs (seed $FUZZ_SEED, at most ${seconds}s)"
  else
    corpus="target/fuzz-corpus/$t"
    limit=()
    echo "fuzz: $t for ${seconds}s"
  fi
  mkdir -p "$corpus"
  cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  log="target/fuzz-$t.log"
  status=0
  (cd fuzz && cargo "${toolchain[@]}" fuzz run "$t" "../$corpus" -- \
      -max_total_time="$seconds" "${limit[@]}" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1) >"$log" 2>&1 \
    || status=$?
  grep -E "stat::number_of_executed_units|^Done [0-9]+ runs|SUMMARY|panicked" "$log" || true
  if [[ -n ${FUZZ_SEED:-} && $status -eq 0 ]]; then
    ran=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    if [[ -n $ran && $ran -lt ${FUZZ_RUNS:-3000} ]]; then
      echo "fuzz: $t hit the ${seconds}s limit after $ran of ${FUZZ_RUNS:-3000} inputs (busy machine): those $ran are the same everywhere"
    fi
  fi
  if [[ $status -ne 0 ]]; then
    tail -n 40 "$log" >&2
    echo "fuzz: $t FAILED (exit $status); the input is under fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
echo "fuzz: ${#targets[@]} targets ran (at most ${seconds}s each) without a crash"
