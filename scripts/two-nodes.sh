#!/bin/sh
# Two cyberid nodes of one deployment on a 3-member etcd cluster, all on loopback, for trying
# the shared replay domain and revocation set by hand:
#
#   scripts/two-nodes.sh start   # etcd (scripts/etcd-cluster.sh), then nodes on :8081 and :8082
#   scripts/two-nodes.sh stop    # the nodes, then etcd
#   scripts/two-nodes.sh clean   # stop, then delete the nodes' data and etcd's
#
# Builds the node (dev profile, the build the tests use) in $CARGO_TARGET_DIR (default:
# $HOME/.cache/cyberid-target). Data, logs and pid files live in $TWO_NODES_DIR (default:
# /tmp/cyberid-two-nodes). Prints the platform and authority API keys and a few curl lines.
set -eu

cd "$(dirname "$0")/.."
dir=${TWO_NODES_DIR:-/tmp/cyberid-two-nodes}
target=${CARGO_TARGET_DIR:-$HOME/.cache/cyberid-target}
export ETCD_CLUSTER_DIR="$dir/etcd"
hosts=127.0.0.1:23790,127.0.0.1:23791,127.0.0.1:23792
store="etcd://$hosts/cyberid-two-nodes"

running() {
    [ -f "$dir/$1.pid" ] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null
}

start() {
    CARGO_TARGET_DIR=$target cargo build --quiet -p cyberid
    bin="$target/debug/cyberid"
    scripts/etcd-cluster.sh start >/dev/null
    mkdir -p "$dir"
    if [ ! -d "$dir/a" ]; then
        "$bin" init --data-dir "$dir/a" >/dev/null
        "$bin" key generate --data-dir "$dir/a" >/dev/null
        "$bin" platform add shop.example --scope verify --scope issue --rate-limit 0 \
            --data-dir "$dir/a" >"$dir/shop.key" 2>/dev/null
        "$bin" authority add ops --data-dir "$dir/a" >"$dir/ops.key" 2>/dev/null
        chmod 600 "$dir/shop.key" "$dir/ops.key"
        # Node b: the same keys and credentials; the nonces and revocations are etcd's.
        cp -a "$dir/a" "$dir/b"
        rm -rf "$dir/b/store"
    fi
    # For a new deployment only (its first node records it; later starts read it): history
    # from an hour back, so that certificates issued at once are not `history_unavailable`.
    history=$(($(date +%s) - 3600))
    for node in a b; do
        if running "$node"; then
            echo "node $node already runs"
            continue
        fi
        port=8081
        [ "$node" = b ] && port=8082
        nohup "$bin" serve --data-dir "$dir/$node" --listen "127.0.0.1:$port" --log warn \
            --store "$store" --auth-log false --node-id "node-$node" --issue-endpoint \
            --etcd-history-begins "$history" \
            </dev/null >"$dir/$node.log" 2>&1 &
        echo $! >"$dir/$node.pid"
    done
    for port in 8081 8082; do
        waited=0
        until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
            waited=$((waited + 1))
            if [ $waited -gt 200 ]; then
                echo "the node on :$port did not become ready; see $dir/*.log" >&2
                exit 1
            fi
            sleep 0.1
        done
    done
    shop=$(cat "$dir/shop.key")
    echo "nodes on http://127.0.0.1:8081 and http://127.0.0.1:8082, store $store"
    echo "platform key: $dir/shop.key; authority key: $dir/ops.key"
    echo
    cat <<EOF

# A certificate issued by node a, then verified on node b and again on node a:
cert=\$(curl -s -H 'authorization: Bearer $shop' -H 'content-type: application/json' \\
    -d '{"web_number":"7K3MQ9XZ2P"}' http://127.0.0.1:8081/v1/certificates \\
    | sed 's/.*"certificate":"\([^"]*\)".*/\1/')
curl -s -H 'authorization: Bearer $shop' -H 'content-type: application/json' \\
    -d "{\"certificate\":\"\$cert\"}" http://127.0.0.1:8082/v1/verify   # valid
curl -s -H 'authorization: Bearer $shop' -H 'content-type: application/json' \\
    -d "{\"certificate\":\"\$cert\"}" http://127.0.0.1:8081/v1/verify   # replayed
EOF
}

stop() {
    for node in a b; do
        if running "$node"; then
            kill "$(cat "$dir/$node.pid")"
        fi
        rm -f "$dir/$node.pid"
    done
    scripts/etcd-cluster.sh stop >/dev/null
    echo "stopped"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    clean) stop; scripts/etcd-cluster.sh clean >/dev/null; rm -rf "$dir"; echo "deleted $dir" ;;
    *) echo "usage: $0 start|stop|clean" >&2; exit 2 ;;
esac
