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

# Certificates live at most 300 s (the node's max_lifetime_s), and signing millions takes
# minutes here: each round's are signed just before it, so none has expired when it is sent
# (an expired certificate is answered `expired`, cheaply, and is not a measurement).
per_round=$((seconds * 50000))
sign_round() { # sign_round OUT
    "$bin/cyberid-loadtest" --target "$on" --api-key "$api_key" --data-dir "$work/on" \
        --requests "$per_round" --lifetime 300 --write-bodies "$1" >/dev/null
}
echo "== $per_round distinct certificates a round, signed before it; wrk -t1 -c$connections -d${seconds}s; log on $on, log off $off"

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
# Each node's CPU over the whole run as well: what the rounds' windows leave out (the
# indexer's file written after a round, compactions that run while the node waits for its next
# round) is in it.
run_ticks_off=$(ticks off)
run_ticks_on=$(ticks on)
for round in $(seq "$rounds"); do
    sign_round "$work/round.txt"
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
    answered "$work/wrk-on.txt" >>"$work/answered-on.txt"
    answered "$work/wrk-off.txt" >>"$work/answered-off.txt"
done
awk '{f += $1; n += $2; cf += $3; cn += $4} END {printf "all rounds: on / off %.3f (answers/s); off / on %.3f (CPU per answer)\n", n / f, cf / cn}' "$work/rounds.txt"
# Long enough for the indexer's last file (5 s) and what compactions it starts.
sleep 8
answered_off=$(awk '{n += $1} END {print n}' "$work/answered-off.txt")
answered_on=$(awk '{n += $1} END {print n}' "$work/answered-on.txt")
awk -v f="$(($(ticks off) - run_ticks_off))" -v n="$(($(ticks on) - run_ticks_on))" \
    -v af="$answered_off" -v an="$answered_on" -v hz="$hz" \
    'BEGIN {cf = f / hz * 1e6 / af; cn = n / hz * 1e6 / an; printf "whole run, background work included: CPU µs/answer off %.1f, on %.1f: off / on %.3f\n", cf, cn, cf / cn}'

# RocksDB's compactions in each node's store over the run, per column family, from RocksDB's
# own LOG (their CPU, on background threads, is in the whole run's CPU per answer).
compactions() { # compactions NAME
    awk -v node="$1" '
        match($0, /\[[a-z_0-9-]+\] \[JOB [0-9]+\] Compacting/) {
            split(substr($0, RSTART, RLENGTH), part, /[][ ]+/); family[part[4]] = part[2]
        }
        /"event": "compaction_finished"/ {
            match($0, /"job": [0-9]+/); job = substr($0, RSTART + 7, RLENGTH - 7)
            match($0, /"compaction_time_cpu_micros": [0-9]+/); cpu = substr($0, RSTART + 30, RLENGTH - 30)
            f = (job in family) ? family[job] : "?"; ms[f] += cpu / 1000; n[f]++
        }
        END { line = ""; for (f in ms) line = line sprintf(" %s %d (%.0f ms)", f, n[f], ms[f]); print "compactions, log " node ":" (line == "" ? " none" : line) }
    ' "$work/$1/store/LOG"
}
compactions on
compactions off

# The logging node's log: its latest head, then proofs against it.
sleep 1.2
size=$(curl -sf "http://$on/v1/log/head" | sed -n 's/.*"size":\([0-9]*\).*/\1/p')
[[ -n $size && $size -gt 0 ]] || { echo "log-cost: the logging node signed no head" >&2; exit 1; }
# Every answer the logging node gave was a `valid` with its entry (wrk may not count the last
# answers of a round, so the log can only be longer): fewer entries than answers means some
# answers were not `valid`, and the rounds measured something else.
if ((size < answered_on)); then
    echo "log-cost: $answered_on answers from the logging node but $size log entries: not every answer was valid; not a measurement" >&2
    exit 1
fi
CYBERID_LOG_SIZE=$size wrk -t1 -c"$connections" -d"${seconds}s" --latency -s loadtest/wrk-proofs.lua \
    "http://$on" >"$work/wrk-proofs.txt" 2>&1
echo "inclusion proofs in a log of $size entries: $(rate "$work/wrk-proofs.txt")/s, p99 $(p99 "$work/wrk-proofs.txt")"
grep -q 'proof request answered' "$work/wrk-proofs.txt" && { echo "log-cost: a proof request failed" >&2; exit 1; }
# An auditor's check of the whole log, timed.
start_verify=$(date +%s.%N)
"$bin/cyberid" log verify --url "$on" | tail -1
echo "log verify over HTTP: $(awk -v s="$start_verify" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}') s"
