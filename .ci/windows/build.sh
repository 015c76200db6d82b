#!/usr/bin/env bash
# Cross-builds wbuild.exe for x86_64-pc-windows-gnu on Debian, and the Wine
# stand-in DLL (see prng.c), into target/windows/.
#
# rustup cannot fetch other targets here, so this uses Debian's rustc-web
# 1.96, which builds std for the target from rust-web-src (-Zbuild-std; on a
# stable compiler that needs RUSTC_BOOTSTRAP=1), with mingw-w64 as linker
# and C compiler (rusqlite's SQLite, zstd, ring). With rustup and its
# x86_64-pc-windows-gnu target, `cargo build --target x86_64-pc-windows-gnu`
# does the same.
#
# WBUILD_WINDOWS_PROFILE picks the Cargo profile: `wine` (CI: less
# optimisation, so the cross-build fits CI's time; see Cargo.toml) or
# `release`.
#
# Needs: rustc-web cargo-web rust-web-src mingw-w64 (Debian packages).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
profile="${WBUILD_WINDOWS_PROFILE:-wine}"
out="$root/target/windows"
triple=x86_64-pc-windows-gnu
for need in /usr/bin/cargo /usr/bin/rustc /usr/lib/rustlib/src/rust/library/Cargo.lock /usr/bin/x86_64-w64-mingw32-gcc; do
    if [ ! -e "$need" ]; then
        echo ".ci/windows/build.sh: $need is missing: install rustc-web cargo-web rust-web-src mingw-w64" >&2
        exit 127
    fi
done
mkdir -p "$out"
# rustup's cargo and rustc come first on PATH: name Debian's by full path.
RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    CC_x86_64_pc_windows_gnu=x86_64-w64-mingw32-gcc \
    AR_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ar \
    CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
    /usr/bin/cargo build --locked --profile "$profile" --target "$triple" \
    -Zbuild-std=std,panic_abort --manifest-path "$root/Cargo.toml" \
    --target-dir "$out/cargo" --bin wbuild
dir="$profile"
[ "$profile" = dev ] && dir=debug
cp "$out/cargo/$triple/$dir/wbuild.exe" "$out/wbuild.exe"
x86_64-w64-mingw32-gcc -shared -O2 -o "$out/bcryptprimitives.dll" \
    "$root/.ci/windows/prng.c" "$root/.ci/windows/prng.def" -ladvapi32
echo "built $out/wbuild.exe and the Wine stand-in $out/bcryptprimitives.dll"
