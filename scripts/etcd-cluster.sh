#!/bin/sh
# A 3-member etcd cluster on loopback for trying the etcd store by hand:
#
#   scripts/etcd-cluster.sh start    # members m0 m1 m2, clients on 127.0.0.1:23790-23792
#   scripts/etcd-cluster.sh status   # which members run, and the store URL
#   scripts/etcd-cluster.sh stop     # SIGTERM, then SIGKILL after 10 s
#   scripts/etcd-cluster.sh clean    # stop, then delete the data
#
# Data, logs and pid files live in $ETCD_CLUSTER_DIR (default: /tmp/cyberid-etcd-cluster);
# the first client port is $ETCD_CLUSTER_PORT (default 23790; peers use the port + 10). Needs
# Debian's etcd-server (etcd 3.4). Tests do not use this script: they start their own clusters
# on free ports (`cyberid_store_etcd::testing::Cluster`).
set -eu

dir=${ETCD_CLUSTER_DIR:-/tmp/cyberid-etcd-cluster}
base=${ETCD_CLUSTER_PORT:-23790}
members="0 1 2"

command -v etcd >/dev/null 2>&1 || {
    echo "etcd is not installed: apt-get install etcd-server" >&2
    exit 1
}

# etcd 3.4 refuses to start on architectures it does not support officially unless told to.
case $(uname -m) in
    x86_64 | aarch64 | ppc64le) ;;
    *) ETCD_UNSUPPORTED_ARCH=$(dpkg --print-architecture 2>/dev/null || uname -m)
       export ETCD_UNSUPPORTED_ARCH ;;
esac

client_port() { echo $((base + $1)); }
peer_port() { echo $((base + 10 + $1)); }

initial_cluster() {
    list=""
    for m in $members; do
        list="${list:+$list,}m$m=http://127.0.0.1:$(peer_port "$m")"
    done
    echo "$list"
}

running() {
    [ -f "$dir/m$1.pid" ] && kill -0 "$(cat "$dir/m$1.pid")" 2>/dev/null
}

endpoints() {
    list=""
    for m in $members; do
        list="${list:+$list,}127.0.0.1:$(client_port "$m")"
    done
    echo "$list"
}

start() {
    mkdir -p "$dir"
    for m in $members; do
        if running "$m"; then
            echo "m$m already runs (pid $(cat "$dir/m$m.pid"))"
            continue
        fi
        state=new
        [ -d "$dir/m$m/member" ] && state=existing
        client="http://127.0.0.1:$(client_port "$m")"
        peer="http://127.0.0.1:$(peer_port "$m")"
        nohup etcd --name "m$m" --data-dir "$dir/m$m" \
            --listen-client-urls "$client" --advertise-client-urls "$client" \
            --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
            --initial-cluster "$(initial_cluster)" --initial-cluster-state "$state" \
            --initial-cluster-token cyberid-dev --logger zap \
            --auto-compaction-mode periodic --auto-compaction-retention 5m \
            --quota-backend-bytes 8589934592 \
            </dev/null >>"$dir/m$m.log" 2>&1 &
        echo $! >"$dir/m$m.pid"
        echo "m$m started (pid $!, client $client, log $dir/m$m.log)"
    done
    echo "store URL: etcd://$(endpoints)/cyberid"
}

stop() {
    for m in $members; do
        if running "$m"; then
            kill "$(cat "$dir/m$m.pid")"
        fi
    done
    for m in $members; do
        waited=0
        while running "$m" && [ $waited -lt 100 ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
        if running "$m"; then
            kill -9 "$(cat "$dir/m$m.pid")"
        fi
        rm -f "$dir/m$m.pid"
    done
    echo "stopped"
}

status() {
    for m in $members; do
        if running "$m"; then
            echo "m$m runs (pid $(cat "$dir/m$m.pid"), client http://127.0.0.1:$(client_port "$m"))"
        else
            echo "m$m is stopped"
        fi
    done
    echo "store URL: etcd://$(endpoints)/cyberid"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    clean) stop; rm -rf "$dir"; echo "deleted $dir" ;;
    *) echo "usage: $0 start|stop|status|clean" >&2; exit 2 ;;
esac
