#!/usr/bin/env bash
# Schema-driven fuzzing of the HTTP API: schemathesis generates requests from docs/openapi.yaml
# (valid and invalid ones) and sends them to a live node, checking every answer: no 5xx, and
# status code, content type, headers and body as the document says; undocumented methods get
# 405 with an Allow header naming the documented one.
#
#   tests/api-fuzz.sh    # about 2 minutes on 2 cores (build done); exits non-zero on any finding
#
# It creates a Python venv under $HOME/.cache/cyberid-venv with a pinned schemathesis, builds
# target/debug/cyberid in $CARGO_TARGET_DIR (default $HOME/.cache/cyberid-target), makes a data
# directory in a temporary directory (an issuer key, a platform with the verify and issue
# scopes, an authority), starts `cyberid serve --issue-endpoint` on a free loopback port, runs
# schemathesis with each operation's key, then stops the node and removes the directory.
#
# Bounds: API_FUZZ_MAX_EXAMPLES test cases per operation and phase (default 300), and
# API_FUZZ_TIMEOUT seconds for the whole schemathesis run (default 170: past it the run fails).
# API_FUZZ_SEED fixes the random seed to reproduce a finding. The node's log is printed on
# failure; schemathesis's JUnit report is left in API_FUZZ_REPORT_DIR when set.
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cyberid-target}
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
venv=$HOME/.cache/cyberid-venv
max_examples=${API_FUZZ_MAX_EXAMPLES:-300}
time_limit=${API_FUZZ_TIMEOUT:-170}

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $SCHEMATHESIS_VERSION"; then
    echo "api-fuzz: installing schemathesis $SCHEMATHESIS_VERSION in $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet -p cyberid --bin cyberid --manifest-path "$root/Cargo.toml"
bin=$CARGO_TARGET_DIR/debug/cyberid

work=$(mktemp -d)
node_pid=
cleanup() {
    if [[ -n $node_pid ]]; then
        kill -TERM "$node_pid" 2>/dev/null || true
        wait "$node_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

data=$work/data
# A first node with a new key: no certificate of it can have been verified before now, so the
# history may begin a skew (30 s) back and certificates issued at once are served.
"$bin" init --data-dir "$data" --history-begins $(($(date +%s) - 30)) >/dev/null
"$bin" key generate --data-dir "$data" >/dev/null
platform_key=$("$bin" platform add fuzz.example --scope verify --scope issue --rate-limit 0 \
    --data-dir "$data" 2>/dev/null)
authority_key=$("$bin" authority add fuzz-authority --data-dir "$data" 2>/dev/null)

"$bin" serve --data-dir "$data" --listen 127.0.0.1:0 --log warn --issue-endpoint \
    >"$work/serve.out" 2>"$work/serve.err" &
node_pid=$!
address=
for _ in $(seq 200); do
    address=$(sed -n 's|^cyberid listening on http://||p' "$work/serve.out")
    [[ -n $address ]] && curl -sf "http://$address/readyz" >/dev/null && break
    address=
    sleep 0.05
done
if [[ -z $address ]]; then
    echo "api-fuzz: the node did not start:" >&2
    cat "$work/serve.err" >&2
    exit 2
fi

# Each security scheme of the document gets its own key: platform routes the platform's,
# administration the authority's.
cat >"$work/schemathesis.toml" <<EOF
[auth.openapi.platformKey]
bearer = "$platform_key"

[auth.openapi.authorityKey]
bearer = "$authority_key"
EOF

checks=not_a_server_error,status_code_conformance,content_type_conformance
checks+=,response_headers_conformance,response_schema_conformance
checks+=,unsupported_method,allow_header_conformance
arguments=(
    run "$root/docs/openapi.yaml"
    --url "http://$address"
    --checks "$checks"
    --max-examples "$max_examples"
    --continue-on-failure
    --workers 1
    --generation-database none
    --request-timeout 10
    --suppress-health-check too_slow,filter_too_much
)
if [[ -n ${API_FUZZ_SEED:-} ]]; then
    arguments+=(--seed "$API_FUZZ_SEED")
fi
if [[ -n ${API_FUZZ_REPORT_DIR:-} ]]; then
    arguments+=(--report junit --report-dir "$(realpath -m "$API_FUZZ_REPORT_DIR")")
fi

status=0
# From the temporary directory: schemathesis keeps its own files in the working directory.
(cd "$work" && timeout --signal=INT --kill-after=10 "$time_limit" \
    "$venv/bin/schemathesis" --no-color --config-file "$work/schemathesis.toml" "${arguments[@]}") \
    || status=$?
if [[ $status -ne 0 ]]; then
    if [[ $status -eq 124 ]]; then
        echo "api-fuzz: schemathesis did not finish within $time_limit s" >&2
    fi
    echo "api-fuzz: FAILED (exit $status); the node's log:" >&2
    cat "$work/serve.err" >&2
    exit 1
fi
if ! kill -0 "$node_pid" 2>/dev/null; then
    echo "api-fuzz: the node died during the run:" >&2
    cat "$work/serve.err" >&2
    exit 1
fi
echo "api-fuzz: no finding"
