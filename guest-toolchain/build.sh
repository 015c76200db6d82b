#!/usr/bin/env bash
# build.sh [--check] [GUEST...]
#
# Builds the guests wbuild embeds (dist/GUEST.wasm, with its sha256 in
# dist/GUEST.wasm.sha256) reproducibly with Debian's rustc-web 1.96 for
# wasm32-wasip1: std built from source (rust-web-src, -Zbuild-std), paths
# remapped, no debug info, symbols stripped, one codegen unit (each guest's
# profile is in its Cargo.toml). With no GUEST, every guest of the table
# below. `--check` rebuilds into a temp dir and fails if the bytes differ
# from the committed ones.
#
# The recipe (Debian's rustc-web, std from source, Debian's wasi-libc and
# wasm-ld, and why) is in wasi-cargo.sh, shared with the test guests.
#
# Needs: rustc-web cargo-web rust-web-src wasi-libc lld (Debian).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# The guests: NAME|size budget in bytes|rustc flags of its own.
#  wbox: an 8 MiB stack for deep shell and awk recursion; Debian's
#  wasi-libc (2022) lacks `realpath`, so wbox brings a stand-in
#  (`--cfg wbox_realpath_stub`, see lib/sys.rs).
#  wlinux: the x86-64 Linux emulator (issue 29); its decoder tables are
#  most of its size.
guests=(
    "wbox|2097152|-C link-arg=-zstack-size=8388608 --cfg wbox_realpath_stub"
    "wlinux|4194304|-C link-arg=-zstack-size=1048576"
)

check=false
if [ "${1:-}" = "--check" ]; then
    check=true
    shift
fi
wanted=("$@")

build_one() {
    local name="$1" budget="$2" flags="$3"
    local out="$here/dist/$name.wasm"
    if $check; then
        out="$(mktemp -d)/$name.wasm"
    fi
    local target_dir="${WBOX_TARGET_DIR:-$here/$name/target}"
    # shellcheck disable=SC2086 # the flags are words
    bash "$here/wasi-cargo.sh" "$here/$name/Cargo.toml" "$target_dir" "$here=/$name" $flags
    cp "$target_dir/wasm32-wasip1/release/$name.wasm" "$out"
    local sum size
    sum="$(sha256sum "$out" | cut -d' ' -f1)"
    size="$(stat -c %s "$out")"
    if [ "$size" -gt "$budget" ]; then
        echo "$name.wasm is $size bytes, over its budget of $budget" >&2
        exit 1
    fi
    if $check; then
        local want
        want="$(cut -d' ' -f1 "$here/dist/$name.wasm.sha256")"
        if [ "$sum" != "$want" ]; then
            echo "$name.wasm rebuilt to $sum, but dist/ has $want: commit the output of guest-toolchain/build.sh" >&2
            exit 1
        fi
        echo "$name.wasm reproduced: $sum ($size bytes)"
    else
        echo "$sum  $name.wasm" > "$here/dist/$name.wasm.sha256"
        echo "built dist/$name.wasm: $sum ($size bytes)"
    fi
}

for g in "${guests[@]}"; do
    IFS='|' read -r name budget flags <<<"$g"
    if [ "${#wanted[@]}" -gt 0 ] && [[ ! " ${wanted[*]} " == *" $name "* ]]; then
        continue
    fi
    build_one "$name" "$budget" "$flags"
done
