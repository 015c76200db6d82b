#!/usr/bin/env bash
# Runs the integration tests that drive the binary against the Windows exe
# (.ci/windows/build.sh) under Wine. Among them, tests/examples.rs builds
# every example and asserts each image digest equals the one the Linux
# build gives (the pins the Linux run checks too).
#
# The tests take the binary and its runner from WBUILD_TEST_BIN and
# WBUILD_TEST_RUNNER (tests/harness/bin.rs); a test that holds only on
# Linux (Unix permission bits, FIFOs, a Linux-only tool) prints a notice
# and skips its part there.
#
# Needs: wine64 (Debian), and the exe and stand-in DLL in target/windows.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
exe="$root/target/windows/wbuild.exe"
wine=/usr/lib/wine/wine64
if [ ! -x "$wine" ]; then
    echo ".ci/windows/test.sh: $wine is missing: install wine64" >&2
    exit 127
fi
if [ ! -f "$exe" ]; then
    echo ".ci/windows/test.sh: $exe is missing: run .ci/windows/build.sh" >&2
    exit 1
fi
# A prefix of its own, made once per run; no Mono or Gecko prompts; Wine's
# own messages off; the stand-in bcryptprimitives.dll next to the exe
# (prng.c says why) before Wine's builtin one.
export WINEPREFIX="${WINEPREFIX:-$root/target/windows/prefix}"
export WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml=;bcryptprimitives=n,b"
if [ ! -d "$WINEPREFIX" ]; then
    "$wine" wineboot --init >/dev/null 2>&1 || true
    /usr/lib/wine/wineserver -w || true
fi
# One wineserver for the whole run: without it each exe start that finds
# none starts one (about 2 s each, 10 times the tests' own time).
/usr/lib/wine/wineserver -p
trap '/usr/lib/wine/wineserver -k || true' EXIT
"$wine" "$exe" --version
export WBUILD_TEST_BIN="$exe" WBUILD_TEST_RUNNER="$wine"
cd "$root"
cargo test --test it "$@" -- cli:: examples:: build:: cache:: gc:: run:: base::
