#!/usr/bin/env bash
# Measures the end-to-end figures of tuning.md §5 in one run, on this machine:
#
#   loadtest/capacity.sh [SECONDS] [SECTION...]     (defaults: 5, every section)
#
# Sections: reference ceiling mix connections threads batch queue store allocator curve
# knee cluster before. The `cluster` section (not in the default list) starts a 3-member etcd cluster on
# loopback (scripts/etcd-cluster.sh, needs etcd-server) and compares one node on RocksDB with
# one and two nodes on etcd (flags @etcd and @two: the second node serves a copy of the first's
# keys and credentials on the same store, and the harness spreads its connections over both).
# Each row starts a fresh release node (its own data directory, history an hour back), runs
# cyberid-loadtest against it for SECONDS, stops it, and prints one markdown table row:
# throughput and latency from each request's due time (closed loop: from sending). Every run
# checks every verdict; a run with a wrong verdict prints FAIL in its row. `openssl speed sm2`
# runs first and last as the reference for a shared, noisy machine. The node and the generator
# share the cores unless a row says otherwise, as a co-located generator would; the
# generator's cost is read from the `ceiling` row. Needs curl, taskset; the `store` section's
# tmpfs row uses /dev/shm. CAPACITY_PREBUILT=1 skips the build and uses the release binaries
# already in the build directory. CAPACITY_BEFORE=PATH names another build of `cyberid` (an
# earlier commit) for the `before` section, which alternates it with this build row by row.
set -euo pipefail

seconds=${1:-5}
shift || true
sections=("$@")
((${#sections[@]})) || sections=(reference ceiling mix connections threads batch queue store allocator curve knee)

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cyberid-target}"
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
node_pid=
node_b_pid=
etcd_hosts=
cleanup() {
    stop_node
    if [[ -n $etcd_hosts ]]; then
        ETCD_CLUSTER_DIR=$work/etcd ETCD_CLUSTER_PORT=24790 scripts/etcd-cluster.sh clean >/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The system-allocator node only for the allocator section: the feature changes the
# dependency graph's features, which makes cargo build RocksDB a second time (10-30 minutes
# here) in the same build directory.
if [[ " ${sections[*]} " == *" allocator "* ]]; then
    echo "== building the system-allocator node aside (a second RocksDB build)"
    cargo build --release --quiet -p cyberid --features system-allocator
    cp "$bin/cyberid" "$work/cyberid-system-allocator"
fi
if [[ -n ${CAPACITY_PREBUILT:-} ]]; then
    # Binaries built by another command in this build directory: building here with another
    # package selection could change dependency features and so build RocksDB again.
    echo "== using the binaries in $bin"
else
    echo "== building release binaries"
    cargo build --release --quiet -p cyberid -p cyberid-loadtest
fi

reference() {
    echo "== reference ($1): $(openssl speed -seconds 3 sm2 2>/dev/null | awk '/SM2/ {print $NF " SM2 verify/s, " $(NF-1) " sign/s"}')"
}

# start_node BINARY DATA_PARENT FLAGS...: a fresh data directory and a node on a free port.
start_node() {
    local binary=$1 parent=$2
    shift 2
    data=$(mktemp -d -p "$parent")
    rmdir "$data"
    "$bin/cyberid" init --data-dir "$data" --history-begins $(($(date +%s) - 3600)) >/dev/null
    "$bin/cyberid" key generate --data-dir "$data" >/dev/null
    api_key=$("$bin/cyberid" platform add bench.example --scope verify --scope issue \
        --rate-limit 0 --data-dir "$data" 2>/dev/null)
    authority_key=$("$bin/cyberid" authority add ops --data-dir "$data" 2>/dev/null)
    "$binary" serve --data-dir "$data" --listen 127.0.0.1:0 --log warn "$@" \
        >"$work/serve.out" 2>"$work/serve.err" &
    node_pid=$!
    address=
    for _ in $(seq 200); do
        address=$(sed -n 's|^cyberid listening on http://||p' "$work/serve.out")
        [[ -n $address ]] && curl -sf "http://$address/readyz" >/dev/null && return
        sleep 0.05
    done
    echo "capacity: the node did not start:" >&2
    cat "$work/serve.err" >&2
    exit 2
}

stop_node() {
    if [[ -n $node_b_pid ]]; then
        kill -TERM "$node_b_pid" 2>/dev/null || true
        wait "$node_b_pid" 2>/dev/null || true
        node_b_pid=
    fi
    if [[ -n $node_pid ]]; then
        kill -TERM "$node_pid" 2>/dev/null || true
        wait "$node_pid" 2>/dev/null || true
        node_pid=
    fi
    [[ -n ${data:-} ]] && rm -rf "$data" "$data-b"
    data=
}

# start_etcd: the 3-member cluster of the `cluster` section, once.
start_etcd() {
    [[ -n $etcd_hosts ]] && return
    command -v etcd >/dev/null || { echo "capacity: the cluster section needs etcd-server" >&2; exit 2; }
    ETCD_CLUSTER_DIR=$work/etcd ETCD_CLUSTER_PORT=24790 scripts/etcd-cluster.sh start >/dev/null
    etcd_hosts=127.0.0.1:24790,127.0.0.1:24791,127.0.0.1:24792
    for _ in $(seq 100); do
        curl -sf http://127.0.0.1:24790/health | grep -q '"health":"true"' && return
        sleep 0.1
    done
    echo "capacity: the etcd cluster did not become healthy" >&2
    exit 2
}

# start_sibling BINARY FLAGS...: a second node of the first's deployment (a copy of its keys
# and credentials), on a free port: $address_b.
start_sibling() {
    local binary=$1
    shift
    cp -a "$data" "$data-b"
    rm -rf "$data-b/store"
    "$binary" serve --data-dir "$data-b" --listen 127.0.0.1:0 --log warn --node-id b "$@" \
        >"$work/serve-b.out" 2>"$work/serve-b.err" &
    node_b_pid=$!
    address_b=
    for _ in $(seq 200); do
        address_b=$(sed -n 's|^cyberid listening on http://||p' "$work/serve-b.out")
        [[ -n $address_b ]] && curl -sf "http://$address_b/readyz" >/dev/null && return
        sleep 0.05
    done
    echo "capacity: the second node did not start:" >&2
    cat "$work/serve-b.err" >&2
    exit 2
}

# etcd_figures ADDRESS: keys per transaction, transactions and stalls from a node's metrics.
etcd_figures() {
    curl -sf "http://$1/metrics" | awk '
        /^cyberid_etcd_keys_total / {keys = $2}
        /^cyberid_etcd_txns_total / {txns = $2}
        /^cyberid_etcd_stalls_total / {stalls = $2}
        END {if (txns > 0) printf "%.1f keys/txn over %d txns, %d stalls", keys / txns, txns, stalls}'
}

# row LABEL "NODE FLAGS" HARNESS FLAGS...: one measured row.
row() {
    local label=$1 node_flags=$2 binary=$bin/cyberid parent=$work
    shift 2
    [[ $node_flags == *system-allocator* ]] && binary=$work/cyberid-system-allocator
    [[ $node_flags == *@before* ]] && binary=${CAPACITY_BEFORE:?the before section needs CAPACITY_BEFORE}
    [[ $node_flags == *tmpfs* ]] && parent=/dev/shm
    local store=() targets=()
    if [[ $node_flags == *@etcd* ]]; then
        start_etcd
        # A deployment of its own per row: a fresh prefix, history an hour back.
        store=(--store "etcd://$etcd_hosts/capacity/$(date +%s%N)" --auth-log false
            --etcd-history-begins $(($(date +%s) - 3600)))
    fi
    # shellcheck disable=SC2086 # the flags are words
    start_node "$binary" "$parent" ${node_flags//@[a-z-]*/} "${store[@]}"
    if [[ $node_flags == *@two* ]]; then
        # shellcheck disable=SC2086
        start_sibling "$binary" ${node_flags//@[a-z-]*/} "${store[@]}"
        targets=(--also-target "$address_b")
    fi
    local out=$work/load.txt status=0
    "$bin/cyberid-loadtest" --target "$address" "${targets[@]}" --api-key "$api_key" \
        --data-dir "$data" --authority-key "$authority_key" --quiet --warmup 2000 "$@" \
        >"$out" 2>&1 || status=$?
    local etcd=
    [[ $node_flags == *@etcd* ]] && etcd="; node a: $(etcd_figures "$address")"
    [[ $node_flags == *@two* ]] && etcd="$etcd; node b: $(etcd_figures "$address_b")"
    stop_node
    local result
    result=$(sed -n 's/^result: //p' "$out" | tail -1)$etcd
    [[ $status == 0 ]] || result="$result (exit $status)"
    printf '| %s | `%s` | `%s` | %s | %s |\n' "$label" "${node_flags:-defaults}" "$*" \
        "$(figures "$out")" "${result:-$(tail -1 "$out")}"
}

# figures REPORT: "answers/s | p50 | p99 | p99.9 | max" from a harness's text report.
figures() {
    local rate latency
    rate=$(sed -n 's/.*: \([0-9]*\) requests\/s.*/\1/p' "$1" | head -1)
    latency=$(awk '/^  from due/ {print $4 " | " $8 " | " $10 " | " $12; exit}' "$1")
    echo "${rate:-?} | ${latency:-? | ? | ? | ?}"
}

header() {
    echo
    echo "== $1"
    echo '| row | node | harness | answers/s | p50 ms | p99 ms | p99.9 ms | max ms | result |'
    echo '|---|---|---|---:|---:|---:|---:|---:|---|'
}

# Enough prepared certificates for 40k/s; the duration ends the run.
closed=(--connections 64 --duration "$seconds" --requests $((seconds * 40000)))

for section in "${sections[@]}"; do
    case $section in
    reference) reference before ;;
    ceiling)
        header "HTTP ceiling: the bare hyper endpoint beside the node, same generator"
        "$bin/cyberid-hyper-baseline" --listen 127.0.0.1:0 >"$work/baseline.out" 2>&1 &
        baseline=$!
        sleep 0.5
        baseline_address=$(grep -oE '127\.0\.0\.1:[0-9]+' "$work/baseline.out" | head -1)
        "$bin/cyberid-loadtest" --target "$baseline_address" --expect-any --quiet \
            --connections 64 --duration "$seconds" --requests 5000000 >"$work/load.txt" 2>&1 || true
        kill "$baseline" && wait "$baseline" 2>/dev/null || true
        printf '| bare hyper | | `--expect-any` | %s | |\n' "$(figures "$work/load.txt")"
        row "node, valid only" "" "${closed[@]}"
        ;;
    mix)
        header "Traffic mix (closed loop, 64 connections)"
        row "valid only (a durable nonce write each)" "" "${closed[@]}"
        row "replayed, 1000 distinct" "" "${closed[@]}" --mix replayed=1
        row "replayed, one certificate (wrk's load)" "" "${closed[@]}" --mix replayed=1 --pool 1
        row "forged only" "" "${closed[@]}" --mix forged=1
        row "mix 90/4/2/2/1/1" "" "${closed[@]}" \
            --mix valid=90,replayed=4,forged=2,expired=2,wrong-audience=1,revoked=1
        row "valid, binary body" "" "${closed[@]}" --body binary
        ;;
    connections)
        header "Connections (closed loop, valid only)"
        for connections in 1 4 16 64 256 1024; do
            row "$connections connections" "" --connections "$connections" \
                --duration "$seconds" --requests $((seconds * 40000))
        done
        ;;
    threads)
        header "Tokio workers vs verification threads (closed loop, 64 connections, valid)"
        for pair in "1 1" "1 2" "2 1" "2 2" "2 4"; do
            read -r workers verify <<<"$pair"
            row "$workers workers, $verify verify" "--workers $workers --verify-threads $verify" \
                "${closed[@]}"
        done
        ;;
    batch)
        header "Batch size and wait (closed loop, 64 connections, valid)"
        for batch in 1 16 64 256; do
            row "max_batch $batch" "--max-batch $batch" "${closed[@]}"
        done
        row "max_wait 200 µs" "--max-wait-us 200" "${closed[@]}"
        row "max_wait 1000 µs" "--max-wait-us 1000" "${closed[@]}"
        ;;
    queue)
        header "Queue bound under 2x overload (open loop at 60k/s, 512 connections)"
        for capacity in 64 512 4096; do
            row "queue $capacity" "--queue-capacity $capacity" --rate 60000 \
                --connections 512 --duration "$seconds" --allow-overload
        done
        ;;
    store)
        header "Storage (closed loop, 64 connections, valid)"
        row "disk, 1 settler (one synced write per batch)" "" "${closed[@]}"
        row "disk, 2 settlers (RocksDB's write group joins them)" "--settlers 2" "${closed[@]}"
        row "disk, memtable 64 MiB" "--memtable-mib 64" "${closed[@]}"
        row "tmpfs (fsync free)" "@tmpfs" "${closed[@]}"
        ;;
    allocator)
        header "Allocator (closed loop, 64 connections, valid)"
        row "mimalloc" "" "${closed[@]}"
        row "system (glibc)" "@system-allocator" "${closed[@]}"
        row "mimalloc" "" "${closed[@]}"
        row "system (glibc)" "@system-allocator" "${closed[@]}"
        ;;
    cluster)
        header "One replay domain past one node (closed loop, 64 connections, valid only)"
        row "1 node, RocksDB (reference)" "" "${closed[@]}"
        row "1 node, etcd" "@etcd" "${closed[@]}"
        row "2 nodes, etcd" "@etcd @two" "${closed[@]}"
        row "2 nodes, etcd, mix 90/4/2/2/1/1" "@etcd @two" "${closed[@]}" \
            --mix valid=90,replayed=4,forged=2,expired=2,wrong-audience=1,revoked=1
        header "One replay domain past one node: latency at fixed rates (open loop, 256 connections, valid)"
        for rate in 2000 5000 8000; do
            row "$rate/s, 1 node, RocksDB" "" --rate "$rate" --connections 256 --duration "$seconds"
            row "$rate/s, 1 node, etcd" "@etcd" --rate "$rate" --connections 256 --duration "$seconds"
            row "$rate/s, 2 nodes, etcd" "@etcd @two" --rate "$rate" --connections 256 \
                --duration "$seconds"
        done
        ;;
    before)
        header "Before and after (CAPACITY_BEFORE against this build, alternating; valid only)"
        for _ in 1 2; do
            row "before, closed loop" "@before" "${closed[@]}"
            row "after, closed loop" "" "${closed[@]}"
        done
        for rate in 10000 15000 20000; do
            row "before, $rate/s open loop" "@before" --rate "$rate" --connections 256 --duration "$seconds"
            row "after, $rate/s open loop" "" --rate "$rate" --connections 256 --duration "$seconds"
        done
        ;;
    curve)
        header "Latency curve (open loop, 256 connections, valid)"
        for rate in 2000 5000 10000 15000 17500 20000 25000 30000 35000 40000 45000 50000; do
            row "$rate/s" "" --rate "$rate" --connections 256 --duration "$seconds"
        done
        ;;
    knee)
        # Step mode: the highest rate whose p99 stays within 10 ms (and that keeps up).
        header "Knee (step mode, open loop, 256 connections, valid, p99 bound 10 ms)"
        start_node "$bin/cyberid" "$work"
        "$bin/cyberid-loadtest" --target "$address" --api-key "$api_key" --data-dir "$data" \
            --authority-key "$authority_key" --mode step --warmup 5000 --step-start 4000 \
            --step-increment 2000 --p99-bound-ms 10 --connections 256 >"$work/knee.txt" 2>&1 || true
        stop_node
        sed -n '/^   rate\/s/,$p' "$work/knee.txt"
        ;;
    *)
        echo "capacity: unknown section $section" >&2
        exit 2
        ;;
    esac
done
reference after
