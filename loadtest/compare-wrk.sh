#!/usr/bin/env bash
# Compares cyberid-loadtest with wrk on the same node, the same work and the same machine.
#
#   loadtest/compare-wrk.sh [SECONDS] [CONNECTIONS] [THREADS]     (defaults: 10 16 1)
#
# Creates a data directory in a temporary directory (issuer key, a platform with the verify and
# issue scopes and no rate limit, an authority), starts the release `cyberid serve` on a free
# loopback port, then runs for SECONDS each, one after the other:
#   1. cyberid-loadtest, closed loop, all-replayed mix (--mix replayed=1) of one certificate
#      (--pool 1), checking every verdict;
#   2. wrk with loadtest/wrk-replayed.lua: one fixed certificate, replayed after its first use;
# both with CONNECTIONS connections and THREADS generator threads, and prints both throughputs
# and latencies. Needs wrk (apt-get install wrk) and curl. Stops the node and removes the
# directory on exit.
#
# With PIN=1 (the default on 2 or more cores) the node runs on CPU 0 with one worker and one
# verification thread, and each generator on CPU 1: neither generator then takes CPU from the
# node, so both measure the same single-core node and their figures can be compared. PIN=0
# shares every core, as a real co-located generator would.
set -euo pipefail

seconds=${1:-10}
connections=${2:-16}
threads=${3:-1}

cd "$(dirname "$0")/.."
pin_node=()
pin_load=()
node_threads=()
if [[ ${PIN:-1} == 1 ]] && (($(nproc) >= 2)); then
    pin_node=(taskset -c 0)
    pin_load=(taskset -c 1)
    node_threads=(--workers 1 --verify-threads 1)
fi
for tool in wrk curl; do
    command -v "$tool" >/dev/null || { echo "compare-wrk: $tool is needed (apt-get install $tool)" >&2; exit 2; }
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cyberid-target}"
cargo build --release --quiet -p cyberid -p cyberid-loadtest
bin="$CARGO_TARGET_DIR/release"

work=$(mktemp -d)
server=
cleanup() {
    if [[ -n $server ]]; then
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

data="$work/data"
# The store's history begins an hour back: certificates issued now are then not refused as
# possibly used before the store existed (history_unavailable).
"$bin/cyberid" init --data-dir "$data" --history-begins $(($(date +%s) - 3600)) >/dev/null
"$bin/cyberid" key generate --data-dir "$data" >/dev/null
api_key=$("$bin/cyberid" platform add bench.example --scope verify --scope issue --rate-limit 0 \
    --data-dir "$data" 2>/dev/null)

"${pin_node[@]}" "$bin/cyberid" serve --data-dir "$data" --listen 127.0.0.1:0 --log warn --issue-endpoint "${node_threads[@]}" \
    >"$work/serve.out" 2>"$work/serve.err" &
server=$!
address=
for _ in $(seq 100); do
    address=$(sed -n 's|^cyberid listening on http://||p' "$work/serve.out")
    [[ -n $address ]] && break
    sleep 0.1
done
[[ -n $address ]] || { echo "compare-wrk: the node did not start:" >&2; cat "$work/serve.err" >&2; exit 2; }
for _ in $(seq 100); do
    curl -sf "http://$address/readyz" >/dev/null && break
    sleep 0.1
done

echo "== node: release cyberid on $address${pin_node:+ (CPU 0, one worker, one verification thread; generators on CPU 1)}; $connections connections, $threads generator thread(s), $seconds s each"

# Closed loop for SECONDS: the request cap only has to exceed what the node can answer.
"${pin_load[@]}" "$bin/cyberid-loadtest" --target "$address" --api-key "$api_key" --data-dir "$data" \
    --mix replayed=1 --pool 1 --connections "$connections" --threads "$threads" \
    --duration "$seconds" --requests $((seconds * 200000)) --warmup 2000 --quiet \
    --json "$work/harness.json" >"$work/harness.txt" || {
    status=$?
    cat "$work/harness.txt"
    echo "compare-wrk: cyberid-loadtest exited $status" >&2
    exit "$status"
}

certificate=$(curl -sf -X POST "http://$address/v1/certificates" \
    -H "Authorization: Bearer $api_key" -H 'Content-Type: application/json' \
    -d '{"web_number":"0123456789","lifetime":300}' |
    sed -n 's/.*"certificate":"\([^"]*\)".*/\1/p')
[[ -n $certificate ]] || { echo "compare-wrk: the node issued no certificate" >&2; exit 2; }
CYBERID_API_KEY=$api_key CYBERID_CERTIFICATE=$certificate \
    "${pin_load[@]}" wrk -t "$threads" -c "$connections" -d "${seconds}s" --latency \
    -s loadtest/wrk-replayed.lua "http://$address" >"$work/wrk.txt"

echo
echo "== cyberid-loadtest (closed loop, every verdict checked)"
grep -E 'requests in|from sent|^replayed|^result' "$work/harness.txt"
echo
echo "== wrk (answers not checked)"
grep -E 'Requests/sec|Non-2xx|Socket errors|^ +(50|90|99)%|Latency  ' "$work/wrk.txt"
