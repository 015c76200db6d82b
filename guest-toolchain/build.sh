#!/usr/bin/env bash
# Builds dist/wbox.wasm reproducibly with Debian's rustc-web 1.96 for
# wasm32-wasip1: std built from source (rust-web-src, -Zbuild-std), paths
# remapped, no debug info, symbols stripped, one codegen unit (the profile
# is in wbox/Cargo.toml). `build.sh --check` rebuilds into a temp dir and
# fails if the bytes differ from the committed ones.
#
# The recipe (Debian's rustc-web, std from source, Debian's wasi-libc and
# wasm-ld, and why) is in wasi-cargo.sh. Debian's wasi-libc (2022) lacks
# `realpath`, so wbox brings a stand-in (`--cfg wbox_realpath_stub`, see
# lib/sys.rs).
#
# Needs: rustc-web cargo-web rust-web-src wasi-libc lld (Debian).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/dist/wbox.wasm"
if [ "${1:-}" = "--check" ]; then
    out="$(mktemp -d)/wbox.wasm"
fi
target_dir="${WBOX_TARGET_DIR:-$here/wbox/target}"
bash "$here/wasi-cargo.sh" "$here/wbox/Cargo.toml" "$target_dir" "$here=/wbox" \
    -C link-arg=-zstack-size=8388608 --cfg wbox_realpath_stub
cp "$target_dir/wasm32-wasip1/release/wbox.wasm" "$out"
sum="$(sha256sum "$out" | cut -d' ' -f1)"
size="$(stat -c %s "$out")"
if [ "$size" -gt 2097152 ]; then
    echo "wbox.wasm is $size bytes, over the 2 MB budget" >&2
    exit 1
fi
if [ "${1:-}" = "--check" ]; then
    want="$(cut -d' ' -f1 "$here/dist/wbox.wasm.sha256")"
    if [ "$sum" != "$want" ]; then
        echo "wbox.wasm rebuilt to $sum, but dist/ has $want: commit the output of guest-toolchain/build.sh" >&2
        exit 1
    fi
    echo "wbox.wasm reproduced: $sum ($size bytes)"
else
    echo "$sum  wbox.wasm" > "$here/dist/wbox.wasm.sha256"
    echo "built dist/wbox.wasm: $sum ($size bytes)"
fi
