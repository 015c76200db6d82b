#!/bin/bash
# Re-records BuildKit's result for the parity cases (tests/parity/*.cases):
#   bash tests/parity/record.sh          # every case not marked by-hand
#   bash tests/parity/record.sh NAME     # the cases whose name contains NAME
# Needs Debian's docker.io (apt-get install docker.io) and root. Starts its
# own dockerd (no bridge, no iptables, its own data root and socket next
# to the repository's target/ so that both sit on one filesystem), runs
# the parity test in record mode, and stops the daemon. Never run in CI.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$repo/target/parity-dockerd
mkdir -p "$work/data" "$work/exec"
sock=$work/d.sock
/usr/sbin/dockerd --bridge=none --iptables=false --data-root "$work/data" \
  --exec-root "$work/exec" --pidfile "$work/pid" -H "unix://$sock" \
  >"$work/dockerd.log" 2>&1 &
daemon=$!
trap 'kill $daemon; wait $daemon 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  DOCKER_HOST=unix://$sock /usr/bin/docker version >/dev/null 2>&1 && break
  sleep 0.2
done
DOCKER_HOST=unix://$sock /usr/bin/docker version --format 'recording with docker {{.Server.Version}}'
cd "$repo"
DOCKER_HOST=unix://$sock WBUILD_PARITY_RECORD=1 WBUILD_PARITY_CASE="${1:-}" \
  cargo test --release --test it parity:: -- --nocapture
