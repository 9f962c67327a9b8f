#!/usr/bin/env bash
# Long run of the reliability and security tests (issue 9) in a release build, printing the
# figures each test reports. CI runs the same tests at scale 1 (debug) via `cargo test`.
#
#   scripts/reliability.sh            # scale 5: 500 crash trials, 15 s of 4 processes, ...
#   KEYSTEAD_RELIABILITY_SCALE=20 scripts/reliability.sh
#   KEYSTEAD_RELIABILITY_SEED=123 scripts/reliability.sh   # replay the random choices
#
# Full logs go to target/reliability/<test>.log. Exit status: non-zero if any test failed.
set -uo pipefail
cd "$(dirname "$0")/.."

export KEYSTEAD_RELIABILITY_SCALE="${KEYSTEAD_RELIABILITY_SCALE:-5}"
logs=target/reliability
mkdir -p "$logs"
echo "keystead reliability run: scale $KEYSTEAD_RELIABILITY_SCALE, release build"

cargo test --release -p keystead --no-run \
  --test crash_consistency --test multiprocess --test revocation_latency \
  --test timing --test hostile_input --test permissions || exit 1

status=0
for test in crash_consistency multiprocess revocation_latency timing hostile_input permissions; do
  log="$logs/$test.log"
  # One test at a time inside each binary, so that the timing and latency figures are not
  # measured against the other tests of the same file.
  if cargo test --release -q -p keystead --test "$test" -- --nocapture --test-threads=1 \
      >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
  fi
  echo "== $test: $result"
  grep -aE '^\.?(crash consistency|first-open kills|multiprocess:|revocation latency|timing|full disk|SKIPPED|immutable|store on a read-only|create on a full disk)' "$log" \
    | sed -e 's/^\.//' -e 's/^/   /'
  grep -aE "^thread '.*' .*panicked" -A2 "$log" | sed -e 's/^/   /'
done
exit $status
