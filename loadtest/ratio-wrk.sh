#!/usr/bin/env bash
# The node against the bare hyper ceiling, both measured by wrk, one distinct valid certificate
# per request (every answer a `valid` with its durable nonce write):
#
#   loadtest/ratio-wrk.sh [SECONDS] [CONNECTIONS] [ROUNDS]     (defaults: 5 64 2)
#
# Starts `cyberid-hyper-baseline` and a release `cyberid serve` (fresh data directory, history
# an hour back, default settings, sharing every core with wrk as a co-located generator would),
# has cyberid-loadtest sign enough certificates for the node at 80k/s (--write-bodies), then
# alternates ROUNDS times: wrk against the baseline, wrk against the node
# (loadtest/wrk-distinct.lua), and prints each figure and the ratio node / baseline. wrk does
# not check answers: afterwards the script verifies a sample of the certificates again, which
# must all be `replayed` (each was answered once). Needs wrk and curl. CAPACITY_PREBUILT=1
# skips the build.
set -euo pipefail

seconds=${1:-5}
connections=${2:-64}
rounds=${3:-2}

cd "$(dirname "$0")/.."
for tool in wrk curl; do
    command -v "$tool" >/dev/null || { echo "ratio-wrk: $tool is needed (apt-get install $tool)" >&2; exit 2; }
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cyberid-target}"
[[ -n ${CAPACITY_PREBUILT:-} ]] || cargo build --release --quiet -p cyberid -p cyberid-loadtest
bin="$CARGO_TARGET_DIR/release"

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

"$bin/cyberid-hyper-baseline" --listen 127.0.0.1:0 >"$work/baseline.out" 2>&1 &
pids+=($!)
data="$work/data"
"$bin/cyberid" init --data-dir "$data" --history-begins $(($(date +%s) - 3600)) >/dev/null
"$bin/cyberid" key generate --data-dir "$data" >/dev/null
api_key=$("$bin/cyberid" platform add bench.example --scope verify --rate-limit 0 \
    --data-dir "$data" 2>/dev/null)
"$bin/cyberid" serve --data-dir "$data" --listen 127.0.0.1:0 --log warn >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!)
address=
for _ in $(seq 100); do
    address=$(sed -n 's|^cyberid listening on http://||p' "$work/serve.out")
    [[ -n $address ]] && curl -sf "http://$address/readyz" >/dev/null && break
    sleep 0.1
done
[[ -n $address ]] || { echo "ratio-wrk: the node did not start:" >&2; cat "$work/serve.err" >&2; exit 2; }
baseline=$(grep -oE '127\.0\.0\.1:[0-9]+' "$work/baseline.out" | head -1)

total=$((seconds * rounds * 80000))
"$bin/cyberid-loadtest" --target "$address" --api-key "$api_key" --data-dir "$data" \
    --requests "$total" --lifetime 300 --write-bodies "$work/bodies.txt" >/dev/null
echo "== $total distinct certificates prepared; wrk -t1 -c$connections -d${seconds}s, node $address, baseline $baseline"

rate() { sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$1"; }
p99() { sed -n 's/^ *99% *\(.*\)$/\1/p' "$1"; }
distinct() { # distinct TARGET BODIES OUT
    CYBERID_API_KEY=$api_key CYBERID_BODIES=$2 CYBERID_WRK_THREADS=1 \
        wrk -t1 -c"$connections" -d"${seconds}s" --latency -s loadtest/wrk-distinct.lua "http://$1" >"$3" 2>&1
    # The baseline answers every body alike, so only the node must never see one twice.
    if [[ $1 == "$address" ]] && grep -q "ran out of bodies" "$3"; then
        echo "ratio-wrk: the node was sent bodies twice; not a measurement (prepare more)" >&2
    fi
}
echo '| round | baseline answers/s | baseline p99 | node answers/s | node p99 | node / baseline |'
echo '|---:|---:|---:|---:|---:|---:|'
for round in $(seq "$rounds"); do
    # Each round takes its own slice of the bodies: no certificate is sent to the node twice.
    # The baseline gets the same bodies, so wrk does the same work for both.
    sed -n "$(((round - 1) * seconds * 80000 + 1)),$((round * seconds * 80000))p" "$work/bodies.txt" >"$work/round.txt"
    distinct "$baseline" "$work/round.txt" "$work/wrk-baseline.txt"
    distinct "$address" "$work/round.txt" "$work/wrk-node.txt"
    non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: *//p' "$work/wrk-node.txt")
    b=$(rate "$work/wrk-baseline.txt")
    n=$(rate "$work/wrk-node.txt")
    awk -v r="$round" -v b="$b" -v n="$n" -v bp="$(p99 "$work/wrk-baseline.txt")" \
        -v np="$(p99 "$work/wrk-node.txt")" -v bad="${non2xx:-0}" \
        'BEGIN {printf "| %d | %.0f | %s | %.0f | %s | %.3f |%s\n", r, b, bp, n, np, n / b, (bad > 0 ? " " bad " non-2xx" : "")}'
done

# wrk does not read answers: check that what it sent was answered once. The first bodies of
# the first round were surely sent; each must now be `replayed`. Not the very first: wrk calls
# the script's request() once per thread before it connects and discards that request, so the
# first body of a round is never sent.
checked=0
while IFS= read -r body; do
    verdict=$(curl -sf -X POST "http://$address/v1/verify" -H "Authorization: Bearer $api_key" \
        -H 'Content-Type: application/json' -d "$body")
    [[ $verdict == *'"replayed"'* ]] || { echo "ratio-wrk: a sent certificate is not replayed: $verdict" >&2; exit 1; }
    checked=$((checked + 1))
done < <(sed -n 2,21p "$work/bodies.txt")
echo "checked: $checked sent certificates answer replayed"
