#!/usr/bin/env bash
# Builds dist/wbox.wasm reproducibly with Debian's rustc (wasm32-wasi):
# paths remapped, no debug info, symbols stripped, one codegen unit.
# `build.sh --check` rebuilds into a temp dir and fails if the bytes differ
# from the committed ones.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
RUSTC="${WBOX_RUSTC:-/usr/bin/rustc}"
TARGET="${WBOX_TARGET:-wasm32-wasi}"
out="$here/dist/wbox.wasm"
if [ "${1:-}" = "--check" ]; then
    out="$(mktemp -d)/wbox.wasm"
fi
"$RUSTC" --target "$TARGET" --edition 2021 --crate-name wbox \
    -C opt-level=3 -C debuginfo=0 -C strip=symbols -C codegen-units=1 -C panic=abort \
    -C link-arg=-zstack-size=8388608 \
    --remap-path-prefix "$here=/wbox" \
    "$here/wbox/main.rs" -o "$out"
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
