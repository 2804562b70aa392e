#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a bounded time with
# cargo-fuzz on the nightly toolchain, installing cargo-fuzz if missing.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# FUZZ_SEED=N fixes libFuzzer's random seed (the smoke run in `make test`
# uses one, so CI replays the same inputs; `make fuzz` explores freely).
# Seeds come from fuzz/seeds/<target>; the growing corpus lives in
# target/fuzz-corpus/<target> (not committed). A crash fails the run and
# leaves the input under fuzz/artifacts/<target>/ — turn it into a
# regression test.
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

for t in "${targets[@]}"; do
  corpus="target/fuzz-corpus/$t"
  mkdir -p "$corpus"
  if [[ -d "fuzz/seeds/$t" ]]; then cp -n fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true; fi
  echo "fuzz: $t for ${seconds}s"
  log="target/fuzz-$t.log"
  status=0
  (cd fuzz && cargo "${toolchain[@]}" fuzz run "$t" "../$corpus" -- \
      -max_total_time="$seconds" ${FUZZ_SEED:+-seed="$FUZZ_SEED"} -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1) >"$log" 2>&1 \
    || status=$?
  grep -E "stat::number_of_executed_units|^Done [0-9]+ runs|SUMMARY|panicked" "$log" || true
  if [[ $status -ne 0 ]]; then
    tail -n 40 "$log" >&2
    echo "fuzz: $t FAILED (exit $status); the input is under fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each without a crash"
