#!/usr/bin/env bash
# keystead serve under wrk, on loopback, in one run (BENCHMARKS.md, "keystead serve"):
#   1. keystead serve answering checks (204)   vs   nginx answering `return 204` (the ceiling
#      of an HTTP round trip here);
#   2. nginx with auth_request to keystead serve, proxying to a static nginx upstream   vs
#      the same nginx proxying without auth (the overhead per request).
#   3. keystead serve verifying inline (a file store) vs on tokio's blocking pool (as for
#      PostgreSQL), on the same file store.
# Each target is measured in turn, ROUNDS times, and reported as medians and ratios.
#
#   benches/gateway/run.sh [--duration 10] [--connections 32] [--rounds 3]
#
# Needs wrk and nginx (`apt-get install wrk nginx-light`); builds keystead in release mode.
set -euo pipefail
cd "$(dirname "$0")/../.."

duration=10 connections=32 rounds=3 threads=2
while [ $# -gt 0 ]; do
    case $1 in
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "usage: $0 [--duration S] [--connections N] [--rounds N]" >&2; exit 2 ;;
    esac
done
for tool in wrk nginx; do
    command -v $tool >/dev/null || { echo "$0: $tool is missing (apt-get install wrk nginx-light)" >&2; exit 1; }
done

cargo build --release --locked -q -p keystead-cli
bin=$PWD/target/release/keystead
tmp=$(mktemp -d /tmp/ks-gw-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

export KEYSTEAD_DB=$tmp/keys.redb
key=$("$bin" create --name bench --scope chat:write 2>/dev/null)

"$bin" serve --listen 127.0.0.1:0 >"$tmp/serve.out" 2>"$tmp/serve.err" &
pids+=($!)
for _ in $(seq 200); do [ -s "$tmp/serve.out" ] && break; sleep 0.05; done
ks=$(sed -n 's/^listening on //p' "$tmp/serve.out")
# The same store, each check on tokio's blocking pool (what a PostgreSQL store does): the cost
# of spawn_blocking per check.
"$bin" serve --listen 127.0.0.1:0 --blocking-verify >"$tmp/serve2.out" 2>"$tmp/serve2.err" &
pids+=($!)
for _ in $(seq 200); do [ -s "$tmp/serve2.out" ] && break; sleep 0.05; done
ks_blocking=$(sed -n 's/^listening on //p' "$tmp/serve2.out")

static=$(free_port) upstream=$(free_port) plain=$(free_port) authed=$(free_port)
cat >"$tmp/nginx.conf" <<CONF
daemon off;
worker_processes auto;
pid $tmp/nginx.pid;
error_log $tmp/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $tmp/cb; proxy_temp_path $tmp/px; fastcgi_temp_path $tmp/fc;
    uwsgi_temp_path $tmp/uw; scgi_temp_path $tmp/sc;
    upstream keystead { server $ks; keepalive 64; }
    upstream api { server 127.0.0.1:$upstream; keepalive 64; }
    # The ceiling: a static 204.
    server { listen 127.0.0.1:$static; location / { return 204; } }
    # The upstream of both proxies.
    server { listen 127.0.0.1:$upstream; location / { return 200 "ok"; } }
    # Proxy, no auth.
    server {
        listen 127.0.0.1:$plain;
        location / { proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://api; }
    }
    # Proxy behind auth_request to keystead (as docs/gateways.md, minus the scopes table).
    server {
        listen 127.0.0.1:$authed;
        location / {
            auth_request /_keystead;
            auth_request_set \$keystead_key_id \$upstream_http_x_keystead_key_id;
            proxy_set_header X-Keystead-Key-Id \$keystead_key_id;
            proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://api;
        }
        location = /_keystead {
            internal;
            proxy_pass http://keystead/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_http_version 1.1; proxy_set_header Connection "";
        }
    }
}
CONF
nginx -p "$tmp" -c "$tmp/nginx.conf" &
pids+=($!)
for p in $static $upstream $plain $authed; do wait_port "$p"; done

# Every target must answer as expected before it is timed.
check() { # url expected-status
    got=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $key" "$1")
    [ "$got" = "$2" ] || { echo "$1 answered $got, not $2" >&2; exit 1; }
}
check "http://$ks/check" 204
check "http://$ks_blocking/check" 204
check "http://127.0.0.1:$static/" 204
check "http://127.0.0.1:$plain/" 200
check "http://127.0.0.1:$authed/" 200
got=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$authed/")
[ "$got" = 401 ] || { echo "auth_request without a key answered $got" >&2; exit 1; }

run() { # name url -> requests/s (fails on any non-2xx answer or socket error)
    out=$(wrk -t$threads -c"$connections" -d"${duration}s" -H "Authorization: Bearer $key" "$2")
    if grep -q -e 'Non-2xx' -e 'Socket errors' <<<"$out"; then
        echo "$1: errors during the run:" >&2; echo "$out" >&2; exit 1
    fi
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    lat=$(awk '/^    Latency/ {print $2}' <<<"$out")
    echo "  $1: $rps req/s (mean latency $lat)" >&2
    echo "$rps"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "wrk -t$threads -c$connections -d${duration}s, $rounds rounds, $(nproc) CPUs, $(nginx -v 2>&1)" >&2
declare -A all
for r in $(seq "$rounds"); do
    echo "round $r" >&2
    all[serve]+="$(run "keystead serve /check" "http://$ks/check") "
    all[static]+="$(run "nginx return 204" "http://127.0.0.1:$static/") "
    all[blocking]+="$(run "keystead serve /check, spawn_blocking" "http://$ks_blocking/check") "
    all[plain]+="$(run "nginx proxy, no auth" "http://127.0.0.1:$plain/") "
    all[authed]+="$(run "nginx auth_request + proxy" "http://127.0.0.1:$authed/") "
done
m() { tr ' ' '\n' <<<"${all[$1]}" | grep . | median; }
serve=$(m serve) static=$(m static) plain=$(m plain) authed=$(m authed) blocking=$(m blocking)
echo
echo "median req/s over $rounds rounds:"
printf '  keystead serve /check        %10.0f\n' "$serve"
printf '  nginx return 204             %10.0f\n' "$static"
printf '  keystead serve, spawn_blocking %8.0f\n' "$blocking"
printf '  nginx proxy, no auth         %10.0f\n' "$plain"
printf '  nginx auth_request + proxy   %10.0f\n' "$authed"
awk -v s="$serve" -v t="$static" -v p="$plain" -v a="$authed" -v b="$blocking" 'BEGIN {
    printf "keystead serve / nginx 204: %.2fx (target >= 0.5x)\n", s / t
    printf "spawn_blocking / inline verify: %.2fx\n", b / s
    printf "auth_request / plain proxy: %.2fx; overhead %.1f us per request (1/a - 1/p, at this concurrency)\n", a / p, (1 / a - 1 / p) * 1e6
}'
