#!/usr/bin/env bash
# Runs the Rust workspace tests (core, CLI, FFI), the Python binding's pytest suite and the
# Node binding's node:test suite while CPU-bound processes compete for every core, and reports
# per-test failures over several rounds. It answers one question: do our tests hold on a busy
# machine? (ARCHITECTURE.md, "Writing tests that hold on a busy machine".) Slow, so not part of
# every CI run; run it after changing a test that waits for time, processes or threads.
#
#   scripts/stress-tests.sh            # 3 rounds, 3 busy processes per core
#   KEYSTEAD_STRESS_ROUNDS=5 KEYSTEAD_STRESS_LOAD=8 scripts/stress-tests.sh
#
# Everything is built (and each suite run once) before the load starts, so the rounds time
# tests, not compilers. Exits 1 if any test failed in any round, 0 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

rounds=${KEYSTEAD_STRESS_ROUNDS:-3}
load=${KEYSTEAD_STRESS_LOAD:-$((3 * $(nproc)))}
logs=$(mktemp -d "${TMPDIR:-/tmp}/keystead-stress.XXXXXX")
burners=()

stop_burners() {
    for pid in "${burners[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${burners[@]}"; do wait "$pid" 2>/dev/null || true; done
    burners=()
}
trap stop_burners EXIT

echo "stress: $rounds round(s) with $load CPU-bound processes beside the tests on $(nproc) cores; logs in $logs"

echo "--- building (no load): Rust tests, Python and Node bindings"
cargo test --workspace --locked --no-run >"$logs/build-rust.log" 2>&1 \
    || { tail -n 30 "$logs/build-rust.log"; exit 1; }
bash scripts/test-python.sh >"$logs/build-python.log" 2>&1 \
    || { tail -n 30 "$logs/build-python.log"; echo "stress: the Python suite fails without load" >&2; exit 1; }
bash scripts/test-node.sh >"$logs/build-node.log" 2>&1 \
    || { tail -n 30 "$logs/build-node.log"; echo "stress: the Node suite fails without load" >&2; exit 1; }

failures=$logs/failures.txt
: >"$failures"
for round in $(seq 1 "$rounds"); do
    for _ in $(seq 1 "$load"); do
        sh -c 'while :; do :; done' &
        burners+=("$!")
    done
    start=$(date +%s)

    log=$logs/round-$round-rust.log
    cargo test --workspace --locked --no-fail-fast >"$log" 2>&1 || true
    # `test name ... FAILED` lines, named with the test binary that ran them.
    awk -v r="$round" '/^     Running /{bin=$2} /^test .* \.\.\. FAILED$/{print "round " r ": rust " bin " " $2}' \
        "$log" >>"$failures"
    grep -qE '^test result: ' "$log" || echo "round $round: rust: no test result (build or harness failure)" >>"$failures"

    log=$logs/round-$round-python.log
    (cd bindings/python && "$root/target/venv-python/bin/python" -m pytest -q -rf) >"$log" 2>&1 || true
    grep -E '^FAILED ' "$log" | sed "s/^FAILED /round $round: python /; s/ - .*//" >>"$failures" || true
    grep -qE '[0-9]+ passed' "$log" || echo "round $round: python: no test passed (see $log)" >>"$failures"

    log=$logs/round-$round-node.log
    (cd bindings/node && npm test) >"$log" 2>&1 || true
    grep -E '^not ok ' "$log" | sed "s/^not ok [0-9]* - /round $round: node /" >>"$failures" || true
    grep -qE '^(# |ℹ )pass [1-9]' "$log" || echo "round $round: node: no test passed (see $log)" >>"$failures"

    stop_burners
    echo "round $round: $(( $(date +%s) - start )) s, $(grep -c "^round $round:" "$failures" || true) failure(s)"
done

total=$(wc -l <"$failures")
if [ "$total" -eq 0 ]; then
    echo "stress: 0 failures in $rounds round(s) under a load of $load processes"
    exit 0
fi
echo "stress: $total failure(s) in $rounds round(s) under a load of $load processes:"
sed 's/^round [0-9]*: //' "$failures" | sort | uniq -c | sort -rn
echo "per round:"
cat "$failures"
exit 1
