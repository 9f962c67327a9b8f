#!/usr/bin/env bash
# Runs `keystead serve` behind real gateways: nginx (auth_request) and Caddy (forward_auth),
# from Debian's packages, each on loopback ports with its config in a temporary directory, in
# front of a tiny Python upstream (cli/tests/gateways.rs; the configs are
# cli/tests/gateways/nginx.conf and Caddyfile, shown in docs/gateways.md).
#
# Installs nginx-light (it has auth_request) and caddy with apt-get when `nginx` or `caddy` is
# missing (needs root); never starts the system services. Exits non-zero on any failure,
# including a gateway that cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v caddy >/dev/null || missing+=(caddy)
if [ ${#missing[@]} -gt 0 ]; then
    echo "--- installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "test-gateways: error: ${missing[*]} missing and not root to install them" >&2
        exit 1
    fi
    # policy-rc.d: the packages' scripts must not start nginx or caddy as services here.
    policy=/usr/sbin/policy-rc.d
    had_policy=0
    [ -e "$policy" ] && had_policy=1
    if [ "$had_policy" = 0 ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$had_policy" = 0 ] && rm -f "$policy"
fi
nginx -V 2>&1 | grep -q -- --with-http_auth_request_module ||
    { echo "test-gateways: error: this nginx lacks auth_request" >&2; exit 1; }
echo "--- $(nginx -v 2>&1), caddy $(caddy version | cut -d' ' -f1)"
cargo test -p keystead-cli --locked --test gateways -- --include-ignored
