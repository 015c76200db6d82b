#!/usr/bin/env bash
# wasi-cargo.sh MANIFEST TARGET_DIR FROM=TO [RUSTC-FLAG...]
#
# Builds a Cargo package for wasm32-wasip1 (release profile) with Debian's
# rustc-web 1.96, std compiled from source: the one recipe for wbox
# (build.sh) and the test guests (tests/guests). FROM=TO remaps the
# package's source path out of the output, and the target dir is remapped
# too, so the bytes do not depend on where the checkout is.
#
# Why by hand: Debian ships no prebuilt std for wasm32-wasip1, so std is
# built from rust-web-src (-Zbuild-std, which needs RUSTC_BOOTSTRAP=1 on a
# stable compiler), and a std built so has none of the target's
# self-contained objects: the link uses Debian's wasi-libc and wasm-ld
# (`-C link-self-contained=no`, its libc.a on the search path, its
# crt1-command.o as the entry point). All of this can go once a toolchain
# with the target's own std is available (rustup's `wasm32-wasip1`): then
# `cargo build --release --target wasm32-wasip1` is the whole build.
#
# Needs: rustc-web cargo-web rust-web-src wasi-libc lld (Debian packages).
set -euo pipefail
manifest="$1"
target_dir="$2"
remap="$3"
shift 3
libc=/usr/lib/wasm32-wasi
for need in /usr/bin/cargo /usr/bin/rustc /usr/lib/rustlib/src/rust/library/Cargo.lock "$libc/crt1-command.o" /usr/bin/wasm-ld; do
    if [ ! -e "$need" ]; then
        echo "wasi-cargo.sh: $need is missing: install rustc-web cargo-web rust-web-src wasi-libc lld" >&2
        exit 127
    fi
done
flags=(-C link-self-contained=no -C linker=/usr/bin/wasm-ld -L "$libc" -C "link-arg=$libc/crt1-command.o"
    "--remap-path-prefix=$remap" "--remap-path-prefix=$target_dir=/target" "$@")
encoded="$(printf '%s\x1f' "${flags[@]}")"
# rustup's cargo and rustc come first on PATH: name Debian's by full path.
RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_ENCODED_RUSTFLAGS="${encoded%$'\x1f'}" \
    /usr/bin/cargo build --quiet --release --locked --target wasm32-wasip1 \
    -Zbuild-std=std,panic_abort --manifest-path "$manifest" --target-dir "$target_dir"
