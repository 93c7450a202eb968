#!/usr/bin/env bash
# What the authentication log costs (issue #16's bound: valid-only throughput with the log on at
# least 0.9x the log off, in the same run), and how fast a node serves inclusion proofs:
#
#   loadtest/log-cost.sh [SECONDS] [CONNECTIONS] [ROUNDS]     (defaults: 5 64 3)
#
# Starts two release nodes over copies of one data directory (same key, same platform, history
# an hour back): one with the log (the default), one with --auth-log false. cyberid-loadtest
# signs distinct certificates; each round sends the next slice of them to both nodes in turn
# with wrk (loadtest/wrk-distinct.lua, every answer a `valid` with its durable write), the
# order alternating between rounds so drift on this shared machine falls on both alike; and
# the CPU time each node spent per answer (from /proc), which the hypervisor's steal does not
# distort as it does the rates. Then
# wrk fetches random inclusion proofs from the logging node (loadtest/wrk-proofs.lua) against
# its latest head. Needs wrk and curl. CAPACITY_PREBUILT=1 skips the build.
set -euo pipefail

seconds=${1:-5}
connections=${2:-64}
rounds=${3:-3}

cd "$(dirname "$0")/.."
for tool in wrk curl; do
    command -v "$tool" >/dev/null || { echo "log-cost: $tool is needed (apt-get install $tool)" >&2; exit 2; }
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cyberid-target}"
[[ -n ${CAPACITY_PREBUILT:-} ]] || cargo build --release --quiet -p cyberid -p cyberid-loadtest
bin="$CARGO_TARGET_DIR/release"

work=$(mktemp -d)
cleanup() {
    # start() runs in a command substitution (a subshell): the pids are in files, not a variable.
    local pid
    for file in "$work"/*.pid; do
        [[ -e $file ]] || continue
        pid=$(cat "$file")
        kill -TERM "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    done
    rm -rf "$work"
}
trap cleanup EXIT

"$bin/cyberid" init --data-dir "$work/on" --history-begins $(($(date +%s) - 3600)) >/dev/null
"$bin/cyberid" key generate --data-dir "$work/on" >/dev/null
api_key=$("$bin/cyberid" platform add bench.example --scope verify --rate-limit 0 \
    --data-dir "$work/on" 2>/dev/null)
cp -a "$work/on" "$work/off"

start() { # start NAME ARGS... -> prints the address
    local name=$1
    shift
    "$bin/cyberid" serve --data-dir "$work/$name" --listen 127.0.0.1:0 --log warn "$@" \
        >"$work/$name.out" 2>"$work/$name.err" &
    echo $! >"$work/$name.pid"
    local address=
    for _ in $(seq 100); do
        address=$(sed -n 's|^cyberid listening on http://||p' "$work/$name.out")
        [[ -n $address ]] && curl -sf "http://$address/readyz" >/dev/null && break
        sleep 0.1
    done
    [[ -n $address ]] || { echo "log-cost: node $name did not start:" >&2; cat "$work/$name.err" >&2; exit 2; }
    echo "$address"
}
on=$(start on)
off=$(start off --auth-log false)

per_round=$((seconds * 80000))
"$bin/cyberid-loadtest" --target "$on" --api-key "$api_key" --data-dir "$work/on" \
    --requests $((per_round * rounds)) --lifetime 300 --write-bodies "$work/bodies.txt" >/dev/null
echo "== $((per_round * rounds)) distinct certificates; wrk -t1 -c$connections -d${seconds}s; log on $on, log off $off"

rate() { sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$1"; }
answered() { sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$1"; }
# CPU time a node used (user + system, clock ticks): what an answer costs it, which the
# hypervisor's steal on this shared machine does not inflate the way it does wall-clock rates.
ticks() { awk '{print $14 + $15}' "/proc/$(cat "$work/$1.pid")/stat"; }
p99() { sed -n 's/^ *99% *\(.*\)$/\1/p' "$1"; }
distinct() { # distinct NAME BODIES OUT
    local before
    before=$(ticks "$1")
    local target=$on
    [[ $1 == off ]] && target=$off
    CYBERID_API_KEY=$api_key CYBERID_BODIES=$2 CYBERID_WRK_THREADS=1 \
        wrk -t1 -c"$connections" -d"${seconds}s" --latency -s loadtest/wrk-distinct.lua "http://$target" >"$3" 2>&1
    echo $(($(ticks "$1") - before)) >"$3.ticks"
    if grep -q "ran out of bodies" "$3"; then
        echo "log-cost: a node was sent bodies twice; not a measurement (prepare more)" >&2
    fi
    local bad
    bad=$(sed -n 's/^ *Non-2xx or 3xx responses: *//p' "$3")
    [[ -z $bad ]] || echo "log-cost: $bad non-2xx answers from $1" >&2
}
hz=$(getconf CLK_TCK)
echo '| round | log off answers/s | p99 | log on answers/s | p99 | on / off | CPU µs/answer off | on | off / on |'
echo '|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
for round in $(seq "$rounds"); do
    sed -n "$(((round - 1) * per_round + 1)),$((round * per_round))p" "$work/bodies.txt" >"$work/round.txt"
    if ((round % 2)); then
        distinct off "$work/round.txt" "$work/wrk-off.txt"
        distinct on "$work/round.txt" "$work/wrk-on.txt"
    else
        distinct on "$work/round.txt" "$work/wrk-on.txt"
        distinct off "$work/round.txt" "$work/wrk-off.txt"
    fi
    f=$(rate "$work/wrk-off.txt")
    n=$(rate "$work/wrk-on.txt")
    cf=$(awk -v t="$(cat "$work/wrk-off.txt.ticks")" -v a="$(answered "$work/wrk-off.txt")" -v hz="$hz" 'BEGIN {printf "%.1f", t / hz * 1e6 / a}')
    cn=$(awk -v t="$(cat "$work/wrk-on.txt.ticks")" -v a="$(answered "$work/wrk-on.txt")" -v hz="$hz" 'BEGIN {printf "%.1f", t / hz * 1e6 / a}')
    awk -v r="$round" -v f="$f" -v n="$n" -v fp="$(p99 "$work/wrk-off.txt")" -v np="$(p99 "$work/wrk-on.txt")" \
        -v cf="$cf" -v cn="$cn" \
        'BEGIN {printf "| %d | %.0f | %s | %.0f | %s | %.3f | %.1f | %.1f | %.3f |\n", r, f, fp, n, np, n / f, cf, cn, cf / cn}'
    echo "$f $n $cf $cn" >>"$work/rounds.txt"
done
awk '{f += $1; n += $2; cf += $3; cn += $4} END {printf "all rounds: on / off %.3f (answers/s); off / on %.3f (CPU per answer)\n", n / f, cf / cn}' "$work/rounds.txt"

# The logging node's log: its latest head, then proofs against it.
sleep 1.2
size=$(curl -sf "http://$on/v1/log/head" | sed -n 's/.*"size":\([0-9]*\).*/\1/p')
[[ -n $size && $size -gt 0 ]] || { echo "log-cost: the logging node signed no head" >&2; exit 1; }
CYBERID_LOG_SIZE=$size wrk -t1 -c"$connections" -d"${seconds}s" --latency -s loadtest/wrk-proofs.lua \
    "http://$on" >"$work/wrk-proofs.txt" 2>&1
echo "inclusion proofs in a log of $size entries: $(rate "$work/wrk-proofs.txt")/s, p99 $(p99 "$work/wrk-proofs.txt")"
grep -q 'proof request answered' "$work/wrk-proofs.txt" && { echo "log-cost: a proof request failed" >&2; exit 1; }
# An auditor's check of the whole log, timed.
start_verify=$(date +%s.%N)
"$bin/cyberid" log verify --url "$on" | tail -1
echo "log verify over HTTP: $(awk -v s="$start_verify" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}') s"
