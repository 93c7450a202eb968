#!/usr/bin/env bash
# Runs cyberid's criterion benches between two runs of `openssl speed sm2`, so every figure in
# tuning.md has a reference measured on the same machine at the same time (the machine is shared
# and noisy: compare ratios, not absolute numbers). Extra arguments go to criterion, e.g. a
# filter: bench/run-with-reference.sh certificate/verify
set -euo pipefail
cd "$(dirname "$0")/.."

reference() {
    echo "== reference ($1): openssl speed -seconds 5 sm2"
    openssl speed -seconds 5 sm2 2>/dev/null | grep -E 'sign/s|SM2'
}

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== $(openssl version), $(rustc --version)"
reference before
echo "== cargo bench -p cyberid-bench $*"
cargo bench -p cyberid-bench -- "$@"
reference after
