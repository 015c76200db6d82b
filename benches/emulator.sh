#!/usr/bin/env bash
# The x86-64 emulator (wlinux) side by side with native execution and with
# qemu-user (qemu-x86_64, a JIT), on Debian's static busybox and on this
# machine's dynamically linked Debian programs. A benchmark, never a test:
#
#   bash benches/emulator.sh          # every row, 3 runs each, medians
#   RUNS=1 bash benches/emulator.sh
#
# Rows: the cold start of an emulated `true` (a whole RUN step, and the
# emulator alone), sha256sum of 10 MB, gzip -6 of 10 MB, seq to
# 1,000,000, python3's loop of 1M iterations, gcc -O2 of 2,000
# lines and dpkg -i of 1,000 files (the host's Debian programs). "wbuild" is the RUN
# step in wbuild (the emulator as WebAssembly in wasmtime), minus an empty
# step's time; "wlinux native" is the emulator built for this machine (the
# same interpreter without wasm's cost). The decoded-block cache's hit
# rate is the emulator's own count.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
WORK=$(realpath -m "${WORK:-target/emulator-bench}")
rm -rf "$WORK"
mkdir -p "$WORK/ctx"

cargo build --release --quiet
cargo build --release --quiet --manifest-path guest-toolchain/wlinux/Cargo.toml
WBUILD=$PWD/target/release/wbuild
WLINUX=$PWD/guest-toolchain/wlinux/target/release/wlinux
have() { command -v "$1" >/dev/null 2>&1; }

head -c 10000000 /dev/urandom > "$WORK/ctx/data"
cp /bin/busybox "$WORK/ctx/busybox"

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
secs() { # secs CMD...: wall seconds of one run
    local s e
    s=$(date +%s.%N)
    "$@" > /dev/null 2>&1 || true
    e=$(date +%s.%N)
    echo "$e - $s" | bc -l
}
runs() { for _ in $(seq "$RUNS"); do secs "$@"; done | median; }

# A RUN step's time in wbuild: the step's own DONE figure.
step() { # step 'RUN ...'
    printf 'FROM scratch\nCOPY busybox /bin/busybox\nCOPY data /data\nWORKDIR /\n%s\n' "$1" > "$WORK/ctx/Dockerfile"
    for _ in $(seq "$RUNS"); do
        WBUILD_ROOT="$WORK/store" "$WBUILD" build --no-cache --progress plain "$WORK/ctx" 2>&1 |
            awk '/^#5 DONE/ { sub("s", "", $3); print $3 }'
    done | median
}

row() { # row NAME 'ARGS for busybox'
    local name="$1" args="$2" native qemu wl wb
    # shellcheck disable=SC2086
    native=$(runs /bin/busybox $args)
    qemu="-"
    # shellcheck disable=SC2086
    if have qemu-x86_64; then qemu=$(runs qemu-x86_64 /bin/busybox $args); fi
    # shellcheck disable=SC2086
    wl=$(runs "$WLINUX" /bin/busybox busybox $args)
    local json
    json=$(printf '"%s", ' $args)
    wb=$(step "RUN [\"/bin/busybox\", ${json%, }]")
    printf '%-28s native %8.3fs  qemu %8ss  wlinux-native %8.3fs  wbuild %8ss  wbuild/native %6.0fx\n' \
        "$name" "$native" "$qemu" "$wl" "${wb:--}" "$(echo "${wb:-0} / ($native + 0.0005)" | bc -l)"
}

cd "$WORK/ctx"
echo "emulator benchmark, $RUNS runs each (medians)"
row "true (cold start)" "true"
# `data` is the context's file on the host and /data in the image (WORKDIR /).
row "sha256sum 10 MB" "sha256sum data"
row "gzip -6 10 MB" "gzip -6 -c data"
# (One word per argument: the rows split ARGS on spaces.)
row "seq 1,000,000" "seq 1000000"
echo
echo "decoded-block cache, sha256sum of 10 MB:"
WLINUX_STATS=1 "$WLINUX" /bin/busybox busybox sha256sum data 2>&1 >/dev/null | tail -1
if [ -x /usr/bin/python3 ]; then
    echo
    echo "python3, 1M iterations (this machine's, dynamically linked):"
    p="n = 0
for i in range(1000000): n += i
print(n)"
    printf 'native %.2fs  wlinux-native %.2fs\n' "$(runs python3 -c "$p")" "$(runs "$WLINUX" /usr/bin/python3 python3 -c "$p")"
fi

# Debian's own dynamically linked programs, as the host has them (native,
# qemu-user, and the emulator built for this machine): gcc -O2 of a
# generated C file of 2,000 lines, and dpkg -i of a package of 1,000 files
# into an empty database. (qemu-user without binfmt runs only the first
# process emulated: gcc's cc1, as and ld run natively under it.)
host_row() { # host_row NAME CMD...
    local name="$1" native qemu wl
    shift
    native=$(runs "$@")
    qemu="-"
    if have qemu-x86_64; then qemu=$(runs qemu-x86_64 "$@"); fi
    wl=$(runs "$WLINUX" "$1" "$@")
    printf '%-28s native %8.3fs  qemu %8ss  wlinux-native %8.3fs  wlinux/native %6.0fx\n' \
        "$name" "$native" "$qemu" "$wl" "$(echo "$wl / ($native + 0.0005)" | bc -l)"
}
echo
if [ -x /usr/bin/gcc ]; then
    for i in $(seq 400); do
        printf 'static int f%d(int x) { int s = 0; for (int i = 0; i < x; i++) s += i * %d;\n  if (s %% 3) s ^= x;\n  return s; }\n' "$i" "$i"
        printf 'int g%d(int x) { return f%d(x) + %d; }\n\n' "$i" "$i" "$i"
    done > "$WORK/big.c"
    # Each run compiles to its own output; cc1's temporaries go to TMPDIR.
    host_row "gcc -O2, 2,000 lines" /usr/bin/gcc -O2 -c -o "$WORK/big.o" "$WORK/big.c"
fi
if [ -x /usr/bin/dpkg-deb ]; then
    pkg="$WORK/pkg"
    mkdir -p "$pkg/DEBIAN" "$pkg/usr/share/many"
    printf 'Package: many\nVersion: 1\nArchitecture: all\nMaintainer: x <x@example.invalid>\nDescription: 1,000 files\n' > "$pkg/DEBIAN/control"
    for i in $(seq 1000); do echo "$i" > "$pkg/usr/share/many/f$i"; done
    dpkg-deb --root-owner-group -Zgzip --build "$pkg" "$WORK/many.deb" > /dev/null
    # A fresh database and root each run.
    dpkg_once() {
        rm -rf "$WORK/droot"
        mkdir -p "$WORK/droot/var/lib/dpkg/info" "$WORK/droot/var/lib/dpkg/updates"
        : > "$WORK/droot/var/lib/dpkg/status"
        "$@" /usr/bin/dpkg --force-not-root --force-script-chrootless --root="$WORK/droot" -i "$WORK/many.deb"
    }
    n=$(for _ in $(seq "$RUNS"); do secs dpkg_once; done | median)
    q="-"
    if have qemu-x86_64; then q=$(for _ in $(seq "$RUNS"); do secs dpkg_once qemu-x86_64; done | median); fi
    w=$(for _ in $(seq "$RUNS"); do secs dpkg_once "$WLINUX" /usr/bin/dpkg; done | median)
    printf '%-28s native %8.3fs  qemu %8ss  wlinux-native %8.3fs  wlinux/native %6.0fx\n' \
        "dpkg -i, 1,000 files" "$n" "$q" "$w" "$(echo "$w / ($n + 0.0005)" | bc -l)"
fi
