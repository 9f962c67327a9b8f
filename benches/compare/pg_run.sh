#!/usr/bin/env bash
# keystead on PostgreSQL (issue 14): pg_compare (Rust: cached verify PostgreSQL vs file, round
# trips of the timed loop, cold misses), then pg_peer.py (Python binding vs a psycopg peer) on
# the same database. Run under the throwaway cluster:
#
#   bash scripts/test-postgres.sh -- bash benches/compare/pg_run.sh
#
# Environment: KEYSTEAD_PG_BENCH_N (keys, default 100000), KEYSTEAD_PG_BENCH_ARGS (more
# pg_compare arguments), KEYSTEAD_PG_BENCH_PY (a Python with psycopg and a keystead built with
# the `postgres` feature; default target/venv-compare-python/bin/python; unset or missing: the
# Python part is reported as not available).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cargo build --release -q -p keystead-benches --features postgres --bin pg_compare
# shellcheck disable=SC2086
target/release/pg_compare --n "${KEYSTEAD_PG_BENCH_N:-100000}" ${KEYSTEAD_PG_BENCH_ARGS:-}
py=${KEYSTEAD_PG_BENCH_PY:-$root/target/venv-compare-python/bin/python}
if [ -x "$py" ] && "$py" -c 'import psycopg, keystead' 2>/dev/null; then
    "$py" benches/compare/pg_peer.py
else
    echo "NOTAVAILABLE python: $py lacks psycopg or keystead (see BENCHMARKS.md)"
fi
