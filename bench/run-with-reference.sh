#!/usr/bin/env bash
# Runs cyberid's criterion benches between two runs of `openssl speed sm2`, so every figure in
# tuning.md has a reference measured on the same machine at the same time (the machine is shared
# and noisy: compare ratios, not absolute numbers). Extra arguments go to criterion, e.g. a
# filter: bench/run-with-reference.sh certificate/verify
set -euo pipefail
cd "$(dirname "$0")/.."
# The project's one build directory, and the release build's package selection: cargo unifies
# features over the selected packages, and the bench crate alone would ask RocksDB's bindgen
# for other regex features and so compile RocksDB again (10-30 minutes). With the server and
# the harness selected too, the release build's RocksDB is reused.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cyberid-target}"

reference() {
    echo "== reference ($1): openssl speed -seconds 5 sm2"
    openssl speed -seconds 5 sm2 2>/dev/null | grep -E 'sign/s|SM2'
}

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== $(openssl version), $(rustc --version)"
reference before
echo "== cargo bench -p cyberid-bench $*"
cargo bench -p cyberid -p cyberid-loadtest -p cyberid-bench --bench sm2 --bench certificate --bench stores --bench identity -- "$@"
reference after
