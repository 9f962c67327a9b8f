#!/usr/bin/env bash
# Builds the Node.js binding (bindings/node, napi-rs) in release mode and runs its node:test
# suite. Needs only node (>= 20.17), npm and the Rust toolchain; installs the npm packages
# from package-lock.json. Idempotent. Fails if the build fails, a test fails or no test ran.
# Run from anywhere (CI: scripts/test-all calls it from the repo root).
set -euo pipefail
cd "$(dirname "$0")/../bindings/node"

echo "node $(node --version), npm $(npm --version)"
npm ci --no-audit --no-fund

# Generates index.js (the loader) and index.d.ts next to keystead.<platform>.node.
npm run build

# index.js and index.d.ts are committed; in CI a build that changes them means they are stale.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1 \
    && ! git diff --quiet -- index.js index.d.ts; then
    if [ "${CI:-}" = "true" ]; then
        echo "bindings/node/index.js or index.d.ts is out of date; run npm run build and commit:" >&2
        git --no-pager diff --stat -- index.js index.d.ts >&2
        exit 1
    fi
    echo "note: the build changed index.js / index.d.ts; commit them" >&2
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# Under a throwaway PostgreSQL server (scripts/test-postgres.sh installs and starts one, or uses
# $KEYSTEAD_TEST_PG_URL): test/postgres.test.js runs the binding in fleet mode.
bash ../../scripts/test-postgres.sh -- npm test 2>&1 | tee "$log"

tests="$(grep -aoE '^(# |ℹ )tests [0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+$' || true)"
if [ -z "$tests" ] || [ "$tests" -eq 0 ]; then
    echo "test-node: no tests ran" >&2
    exit 1
fi
echo "test-node: $tests node:test tests passed"
