#!/usr/bin/env bash
# Side by side: the same generated contexts built by wbuild, by BuildKit
# (Docker's daemon, started here with its own data root and socket, no
# bridge, no iptables; needs root and Debian's docker.io) and by buildah
# (--isolation chroot), alternating runs, median wall time per row and the
# wbuild/peer ratio. A benchmark, never a test:
#
#   bash benches/peers.sh                 # every row, 5 runs each
#   RUNS=3 ROWS=copy bash benches/peers.sh   # rows: copy, many, run, bigrun
#
# Every tool's store is under one work directory on the same filesystem
# (WORK, default target/peers). Tools that are missing are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
ROWS=${ROWS:-all}
WORK=$(realpath -m "${WORK:-target/peers}")
rm -rf "$WORK"
mkdir -p "$WORK"

cargo build --release --quiet
WBUILD=$PWD/target/release/wbuild

have() { command -v "$1" >/dev/null 2>&1; }

# ---- the peers ----
DOCKER=""
if have /usr/sbin/dockerd && [ "$(id -u)" = 0 ]; then
    mkdir -p "$WORK/dockerd"
    /usr/sbin/dockerd --bridge=none --iptables=false \
        --data-root "$WORK/dockerd/data" --exec-root "$WORK/dockerd/exec" \
        --pidfile "$WORK/dockerd/pid" \
        -H "unix://$WORK/dockerd/sock" >"$WORK/dockerd/log" 2>&1 &
    for _ in $(seq 1 100); do
        [ -S "$WORK/dockerd/sock" ] && break
        sleep 0.1
    done
    DOCKER="env DOCKER_HOST=unix://$WORK/dockerd/sock DOCKER_BUILDKIT=1 /usr/bin/docker"
    trap 'kill "$(cat "$WORK/dockerd/pid")" 2>/dev/null || true' EXIT
else
    echo "BuildKit: skipped (needs root and Debian's docker.io)"
fi
BUILDAH=""
if have buildah; then
    BUILDAH="buildah --root $WORK/buildah/root --runroot $WORK/buildah/run --storage-driver vfs"
else
    echo "buildah: skipped (not installed)"
fi

# buildah's copy of the busybox image.
buildah_busybox() {
    [ -n "$BUILDAH" ] || return 0
    local c
    c=$($BUILDAH from scratch)
    $BUILDAH add "$c" "$WORK/bb/rootfs.tar" / >/dev/null
    $BUILDAH commit -q "$c" peers-busybox:1 >/dev/null
    $BUILDAH rm "$c" >/dev/null
}

# A busybox image for the peers' RUN steps (wbuild's is FROM wbuild/base).
if [ -x /bin/busybox ] && { [ -n "$DOCKER" ] || [ -n "$BUILDAH" ]; }; then
    mkdir -p "$WORK/bb/rootfs/bin" "$WORK/bb/rootfs/tmp"
    cp /bin/busybox "$WORK/bb/rootfs/bin/busybox"
    for a in sh echo cat mkdir cp ls sed; do ln -sf busybox "$WORK/bb/rootfs/bin/$a"; done
    tar -C "$WORK/bb/rootfs" -cf "$WORK/bb/rootfs.tar" .
    if [ -n "$DOCKER" ]; then $DOCKER import "$WORK/bb/rootfs.tar" peers-busybox:1 >/dev/null; fi
    buildah_busybox
elif [ ! -x /bin/busybox ]; then
    echo "RUN rows for the peers need /bin/busybox (busybox-static)"
fi

# ---- the tools, one build each; prints the wall seconds ----
secs() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}
# --gc=false: on a disk with less than 20% free, wbuild's default GC rules
# (BuildKit's) empty the cache after every build, and a row would measure
# the GC rather than the build.
build_wbuild() { secs "$WBUILD" --root "$WORK/wbuild-store" --progress quiet --gc=false "$@"; }
build_buildkit() { secs $DOCKER build --network host -q "$@"; }
build_buildah() { secs $BUILDAH bud --isolation chroot -q "$@"; }

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# One row: NAME, a setup run before each measured build (may be empty),
# then the build arguments per tool (the context dir last).
row() {
    local name=$1 prep=$2 dir=$3 wdf=$4 pdf=$5
    local w=() b=() h=()
    for _ in $(seq 1 "$RUNS"); do
        eval "$prep wbuild"
        w+=("$(build_wbuild -f "$dir/$wdf" "$dir")")
        if [ -n "$DOCKER" ]; then
            eval "$prep buildkit"
            b+=("$(build_buildkit -f "$dir/$pdf" "$dir")")
        fi
        if [ -n "$BUILDAH" ]; then
            eval "$prep buildah"
            h+=("$(build_buildah -f "$dir/$pdf" "$dir")")
        fi
    done
    local wm bm hm
    wm=$(printf '%s\n' "${w[@]}" | median)
    printf '%-52s wbuild %7.3f s' "$name" "$wm"
    if [ ${#b[@]} -gt 0 ]; then
        bm=$(printf '%s\n' "${b[@]}" | median)
        printf '   BuildKit %7.3f s (%.2f)' "$bm" "$(echo "$wm / $bm" | bc -l)"
    fi
    if [ ${#h[@]} -gt 0 ]; then
        hm=$(printf '%s\n' "${h[@]}" | median)
        printf '   buildah %7.3f s (%.2f)' "$hm" "$(echo "$wm / $hm" | bc -l)"
    fi
    echo
}

# Empty every tool's cache (a cold build).
cold() {
    case $1 in
    wbuild) rm -rf "$WORK/wbuild-store" ;;
    buildkit) $DOCKER builder prune -af >/dev/null 2>&1 || true ;;
    buildah) $BUILDAH rmi -a -f >/dev/null 2>&1 || true
        [ -f "$WORK/bb/rootfs.tar" ] && buildah_busybox ;;
    esac
}
noop() { :; }

# ---- contexts ----
make_files() { # DIR COUNT SIZE
    python3 - "$1" "$2" "$3" <<'PY'
import os, sys
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    sub = os.path.join(d, "src", "d%03d" % (i // 100))
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, "f%06d.txt" % i), "wb") as f:
        f.write((("line %d of file %d\n" % (i, i)) * (size // 20 + 1)).encode()[:size])
PY
}

if [ "$ROWS" = all ] || [ "$ROWS" = copy ]; then
    C=$WORK/ctx-copy
    mkdir -p "$C"
    make_files "$C" 10000 10000
    printf 'FROM scratch\nCOPY . /app\n' >"$C/Dockerfile"
    row "10,000 files / 100 MB COPY . /app, cold" cold "$C" Dockerfile Dockerfile
    row "same, no-op rebuild" "noop" "$C" Dockerfile Dockerfile
    i=0
    change() { i=$((i + 1)); head -c 10000 /dev/urandom | base64 >"$C/src/d050/f005000.txt"; }
    row "same, one 10 KB file changed" "change;:" "$C" Dockerfile Dockerfile
    touch_all() { find "$C/src" -type f -exec touch {} +; }
    row "same, every file touched, content same" "touch_all;:" "$C" Dockerfile Dockerfile
fi
if [ "$ROWS" = all ] || [ "$ROWS" = many ]; then
    M=$WORK/ctx-many
    mkdir -p "$M"
    make_files "$M" 100000 1000
    printf 'FROM scratch\nCOPY . /app\n' >"$M/Dockerfile"
    build_wbuild -f "$M/Dockerfile" "$M" >/dev/null
    [ -n "$DOCKER" ] && build_buildkit -f "$M/Dockerfile" "$M" >/dev/null
    row "no-op rebuild, 100,000 files of 1 KB" "noop" "$M" Dockerfile Dockerfile
fi
if [ "$ROWS" = all ] || [ "$ROWS" = run ]; then
    R=$WORK/ctx-run
    mkdir -p "$R"
    {
        echo "FROM wbuild/base"
        for n in 1 2 3 4 5; do echo "RUN echo step $n > /s$n && cat /s$n"; done
    } >"$R/Dockerfile.wbuild"
    {
        echo "FROM peers-busybox:1"
        for n in 1 2 3 4 5; do echo "RUN echo step $n > /s$n && cat /s$n"; done
    } >"$R/Dockerfile.peer"
    row "5 small RUN steps on the base image, cold store" cold "$R" Dockerfile.wbuild Dockerfile.peer
    row_nc() {
        local w=() b=()
        for _ in $(seq 1 "$RUNS"); do
            w+=("$(build_wbuild --no-cache -f "$R/Dockerfile.wbuild" "$R")")
            [ -n "$DOCKER" ] && b+=("$(build_buildkit --no-cache -f "$R/Dockerfile.peer" "$R")")
        done
        local wm bm
        wm=$(printf '%s\n' "${w[@]}" | median)
        printf '%-52s wbuild %7.3f s' "same, --no-cache" "$wm"
        if [ ${#b[@]} -gt 0 ]; then
            bm=$(printf '%s\n' "${b[@]}" | median)
            printf '   BuildKit %7.3f s (%.2f)' "$bm" "$(echo "$wm / $bm" | bc -l)"
        fi
        echo
    }
    row_nc
    {
        echo "FROM wbuild/base AS a"
        echo "RUN sleep 1 && echo a > /a"
        echo "FROM wbuild/base AS b"
        echo "RUN sleep 1 && echo b > /b"
        echo "FROM scratch"
        echo "COPY --from=a /a /a"
        echo "COPY --from=b /b /b"
    } >"$R/Dockerfile.par.wbuild"
    sed 's#wbuild/base#peers-busybox:1#' "$R/Dockerfile.par.wbuild" >"$R/Dockerfile.par.peer"
    row "two independent 1 s RUN stages, cold" cold "$R" Dockerfile.par.wbuild Dockerfile.par.peer
    {
        echo "FROM wbuild/base"
        for n in $(seq 1 10); do echo "RUN echo $n >> /chain"; done
    } >"$R/Dockerfile.chain.wbuild"
    sed 's#wbuild/base#peers-busybox:1#' "$R/Dockerfile.chain.wbuild" >"$R/Dockerfile.chain.peer"
    row "a chain of 10 RUN steps, cold" cold "$R" Dockerfile.chain.wbuild Dockerfile.chain.peer
fi
if [ "$ROWS" = all ] || [ "$ROWS" = bigrun ]; then
    # Ten RUN steps that each write one file, on a 500 MB rootfs (the COPY
    # stays cached; each measured build changes what the RUN steps write).
    G=$WORK/ctx-bigrun
    mkdir -p "$G/big"
    python3 - "$G/big" <<'PY'
import os, sys
for i in range(500):
    with open(os.path.join(sys.argv[1], "f%03d" % i), "wb") as f:
        f.write(os.urandom(1 << 20))
PY
    n=0
    bump() {
        n=$((n + 1))
        for t in wbuild peer; do
            base=wbuild/base
            [ $t = peer ] && base=peers-busybox:1
            {
                echo "FROM $base"
                echo "COPY big /big"
                for s in $(seq 1 10); do echo "RUN echo $n-$s > /t$s"; done
            } >"$G/Dockerfile.$t"
        done
    }
    bump
    build_wbuild -f "$G/Dockerfile.wbuild" "$G" >/dev/null
    [ -n "$DOCKER" ] && build_buildkit -f "$G/Dockerfile.peer" "$G" >/dev/null
    [ -n "$BUILDAH" ] && build_buildah -f "$G/Dockerfile.peer" "$G" >/dev/null
    row "10 RUN steps on a 500 MB rootfs, each writes a file" "bump;:" "$G" Dockerfile.wbuild Dockerfile.peer
fi
