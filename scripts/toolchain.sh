#!/usr/bin/env bash
# Build the mcpx proxy-wasm filter for wasm32-wasip1, picking a toolchain that
# can actually do it on this machine.
#
#   scripts/toolchain.sh wasm    build target/wasm32-wasip1/wasm/mcpx_filter.wasm
#   scripts/toolchain.sh check   report which path applies (and what is missing)
#   scripts/toolchain.sh path    print the path of the wasm artifact
#
# Paths, tried in order:
#   rustup  the active Rust toolchain has the wasm32-wasip1 std installed
#           (`rustup target add wasm32-wasip1`): plain `cargo build`.
#   debian  Debian's rustc-web/cargo-web + rust-web-src + lld-19 + wasi-libc:
#           /usr/bin/cargo builds std from source (-Zbuild-std) and links with
#           wasm-ld-19 against Debian's WASI libc. Installed with apt-get when
#           missing and we are root; otherwise we say what to install.
#
# Force a path with MCPX_WASM_TOOLCHAIN=rustup|debian. MCPX_WASM_FEATURES=a,b
# adds cargo features (the tests' `crash-probe` copy, the benchmark-only
# `bench-ablation` build).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TARGET=wasm32-wasip1
PROFILE=wasm
PACKAGE=mcpx-filter
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
WASM=$TARGET_DIR/$TARGET/$PROFILE/mcpx_filter.wasm

DEB_PACKAGES=(rustc-web cargo-web rust-web-src lld-19 wasi-libc)
DEB_CARGO=/usr/bin/cargo
DEB_RUSTC=/usr/bin/rustc
DEB_LINKER=/usr/bin/wasm-ld-19
DEB_STD_SRC=/usr/lib/rustlib/src/rust/library
DEB_WASI_LIBC=/usr/lib/wasm32-wasi
# The oldest rustc the filter's locked dependencies accept (jwt-simple 0.15
# and aes 0.9 declare rust-version 1.89). A machine image may ship an older
# rustc-web from bookworm's main archive with stale package lists; the newer
# one comes from bookworm-security after an apt-get update.
DEB_MIN_RUSTC=1.89
FEATURES=()
[[ -n ${MCPX_WASM_FEATURES:-} ]] && FEATURES=(--features "$MCPX_WASM_FEATURES")

say() { echo "toolchain: $*" >&2; }
die() { echo "toolchain: error: $*" >&2; exit 1; }

# --- rustup (or any rustc whose sysroot already has the wasm32-wasip1 std) ---
rustup_ready() {
    if command -v rustup >/dev/null 2>&1; then
        # Lists what is installed locally; never touches the network.
        local installed
        installed=$(timeout 30 rustup target list --installed 2>/dev/null || true)
        if grep -qx "$TARGET" <<<"$installed"; then
            return 0
        fi
    fi
    # Non-rustup installs (distro/nix packages) that ship the target's std.
    local sysroot
    if command -v rustc >/dev/null 2>&1 && sysroot=$(rustc --print sysroot 2>/dev/null) \
        && [[ -d $sysroot/lib/rustlib/$TARGET/lib ]]; then
        return 0
    fi
    return 1
}

# --- Debian ---
# Prints what is missing for the Debian path (one item per line); empty = ready.
debian_missing() {
    [[ -x $DEB_CARGO ]] || echo "$DEB_CARGO"
    [[ -x $DEB_RUSTC ]] || echo "$DEB_RUSTC"
    [[ -x $DEB_LINKER ]] || echo "$DEB_LINKER"
    [[ -d $DEB_STD_SRC ]] || echo "$DEB_STD_SRC"
    [[ -e $DEB_WASI_LIBC/libc.a ]] || echo "$DEB_WASI_LIBC/libc.a"
    if [[ -x $DEB_RUSTC ]] && ! deb_rustc_new_enough; then
        echo "rustc-web >= $DEB_MIN_RUSTC (have $("$DEB_RUSTC" --version | cut -d' ' -f2))"
    fi
    # /usr/bin/cargo may come from Debian's older `cargo`/`rustc` packages,
    # whose compiler does not match rust-web-src: insist on the -web ones.
    if command -v dpkg-query >/dev/null 2>&1; then
        local p
        for p in "${DEB_PACKAGES[@]}"; do
            [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) == *"ok installed" ]] \
                || echo "package $p"
        done
    fi
}

# True when Debian's rustc is at least DEB_MIN_RUSTC.
deb_rustc_new_enough() {
    local have sorted
    have=$("$DEB_RUSTC" --version 2>/dev/null) || return 1
    have=${have#rustc }; have=${have%% *}
    sorted=$(printf '%s\n%s\n' "$DEB_MIN_RUSTC" "$have" | sort -V)
    [[ ${sorted%%$'\n'*} == "$DEB_MIN_RUSTC" ]]
}

can_apt() { [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; }

apt_lists_present() {
    compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null
}

apt_install() {
    local log
    log=$(mktemp)
    export DEBIAN_FRONTEND=noninteractive
    local install=(apt-get install -y -q --no-install-recommends "${DEB_PACKAGES[@]}")
    # Stale lists would offer only the rustc-web that is already too old.
    if ! apt_lists_present || { [[ -x $DEB_RUSTC ]] && ! deb_rustc_new_enough; }; then
        say "apt-get update (no package lists yet, or they offer no new enough rustc-web)"
        apt-get update -q >"$log" 2>&1 || { cat "$log" >&2; die "apt-get update failed"; }
    fi
    say "apt-get install ${DEB_PACKAGES[*]}"
    if ! "${install[@]}" >"$log" 2>&1; then
        say "install failed with the current package lists; running apt-get update and retrying"
        apt-get update -q >"$log" 2>&1 || { cat "$log" >&2; die "apt-get update failed"; }
        "${install[@]}" >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; die "apt-get install failed"; }
    fi
    rm -f "$log"
}

install_hint() {
    cat >&2 <<EOF
toolchain: cannot build the wasm filter: no Rust toolchain for $TARGET here.
Install either of:
  1) rustup (needs internet to static.rust-lang.org):
       rustup target add $TARGET
  2) Debian 12 packages (bookworm-security), as root:
       apt-get update
       apt-get install -y --no-install-recommends ${DEB_PACKAGES[*]}
then rerun: scripts/toolchain.sh wasm
EOF
}

# Decide: prints "rustup", "debian" (ready), "debian-install" or "none".
choose() {
    case ${MCPX_WASM_TOOLCHAIN:-auto} in
        rustup) echo rustup; return ;;
        debian) ;;
        auto) if rustup_ready; then echo rustup; return; fi ;;
        *) die "MCPX_WASM_TOOLCHAIN must be rustup, debian or unset (got '$MCPX_WASM_TOOLCHAIN')" ;;
    esac
    if [[ -z $(debian_missing) ]]; then
        echo debian
    elif can_apt; then
        echo debian-install
    else
        echo none
    fi
}

build_rustup() {
    say "using the active rustup toolchain ($(rustc --version 2>/dev/null || echo '?')) with $TARGET"
    cargo build -p "$PACKAGE" --target "$TARGET" --profile "$PROFILE" "${FEATURES[@]}"
}

# std is built from source here, so it can be built small: `optimize_for_size`
# picks std's compact implementations (sorting, formatting). Measured with
# `tests/bench/bench.py --compare`: -67 KB of .wasm, -1.9 MiB RSS, CPU per
# request unchanged (per round -2.7, -10.4, +11.4, -3.8, -5.8 µs).
build_debian() {
    say "using Debian's $("$DEB_RUSTC" --version) with -Zbuild-std and wasm-ld-19"
    # Keep rustup's proxies and settings away from /usr/bin/cargo: it must run
    # /usr/bin/rustc, whose std source (rust-web-src) it builds.
    env -u RUSTUP_TOOLCHAIN -u RUSTC -u RUSTDOC -u RUSTC_WORKSPACE_WRAPPER \
        -u CARGO_BUILD_RUSTC -u CARGO_BUILD_TARGET -u CARGO_ENCODED_RUSTFLAGS \
        -u CARGO_BUILD_RUSTFLAGS -u CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS \
        -u CARGO_TARGET_WASM32_WASIP1_LINKER \
        PATH="/usr/bin:$PATH" \
        RUSTC="$DEB_RUSTC" \
        RUSTC_BOOTSTRAP=1 \
        RUSTFLAGS="-C linker=wasm-ld-19 -C link-self-contained=no -L $DEB_WASI_LIBC" \
        "$DEB_CARGO" build -p "$PACKAGE" --target "$TARGET" --profile "$PROFILE" "${FEATURES[@]}" \
        -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size
}

report_artifact() {
    [[ -f $WASM ]] || die "build finished but $WASM is missing"
    local size
    size=$(stat -c %s "$WASM")
    echo "wasm: $WASM ($size bytes, $(( (size + 1023) / 1024 )) KiB)"
}

cmd_check() {
    local path
    path=$(choose)
    case $path in
        rustup) echo "wasm toolchain: rustup ($TARGET installed for $(rustc --version 2>/dev/null || echo '?'))" ;;
        debian) echo "wasm toolchain: debian ($("$DEB_RUSTC" --version), $DEB_LINKER, $DEB_WASI_LIBC) — ready" ;;
        debian-install)
            echo "wasm toolchain: debian — will apt-get install: ${DEB_PACKAGES[*]}"
            echo "  missing: $(debian_missing | paste -sd, - | sed 's/,/, /g')" ;;
        none)
            echo "wasm toolchain: none available (not root or no apt-get)"
            echo "  missing: $(debian_missing | paste -sd, - | sed 's/,/, /g')"
            install_hint
            return 1 ;;
    esac
}

cmd_wasm() {
    local path
    path=$(choose)
    case $path in
        rustup) build_rustup; path=rustup ;;
        debian) build_debian ;;
        debian-install)
            apt_install
            local missing
            missing=$(debian_missing)
            [[ -z $missing ]] || die "still missing after apt-get install: $(echo "$missing" | paste -sd' ' -)"
            build_debian; path=debian ;;
        none)
            say "missing for the Debian path: $(debian_missing | paste -sd' ' -)"
            install_hint
            exit 1 ;;
    esac
    # Which path built it: only the std-from-source path can build std for
    # size, and the size budget test holds that build to it.
    echo "$path" > "$WASM.toolchain"
    report_artifact
}

case ${1:-} in
    wasm) cmd_wasm ;;
    check) cmd_check ;;
    path) echo "$WASM" ;;
    -h|--help|help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) echo "usage: $0 {wasm|check|path}" >&2; exit 2 ;;
esac
