#!/usr/bin/env bash
# Longer fuzzing sessions, with AddressSanitizer by default (its rustc flags are nightly-only;
# RUSTC_BOOTSTRAP=1 enables them on the stable toolchain).
#
#   fuzz/run-long.sh                          # every target, 600 s each, one at a time
#   fuzz/run-long.sh -t 3600 -j 2 store_ops parse_key
#   fuzz/run-long.sh --no-asan -t 60          # no sanitizer (the smoke-test build)
#
# Options: -t SECONDS per target (or FUZZ_SECONDS; default 600), -j how many targets at once
# (default 1), --no-asan. Environment: FUZZ_WORK (working corpora, default
# ${TMPDIR:-/tmp}/keystead-fuzz), RSS_LIMIT_MB (default 2048), NICE (niceness, default 10).
#
# Each target's working corpus is $FUZZ_WORK/<target>, seeded from fuzz/corpus/<target> and
# kept between sessions (the committed corpora are never written). Crashing inputs go to
# fuzz/artifacts/<target>/ (git-ignored). Prints executions and corpus size per target and exits
# non-zero if any target failed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-600}"
jobs=1
asan=1
targets=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    -t) seconds="$2"; shift 2 ;;
    -j) jobs="$2"; shift 2 ;;
    --no-asan) asan=0; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(parse_authorization_header parse_key decode_record store_ops)
fi
work="${FUZZ_WORK:-${TMPDIR:-/tmp}/keystead-fuzz}"
rss="${RSS_LIMIT_MB:-2048}"
nice_level="${NICE:-10}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

if [ "$asan" -eq 1 ]; then
  target_dir=fuzz/target/asan
  RUSTC_BOOTSTRAP=1 nice -n "$nice_level" \
    cargo fuzz build --sanitizer address --debug-assertions --target-dir "$target_dir"
else
  target_dir=fuzz/target/smoke
  nice -n "$nice_level" \
    cargo fuzz build --sanitizer none --debug-assertions --target-dir "$target_dir"
fi
bin_dir="$target_dir/$(rustc -vV | sed -n 's/^host: //p')/release"

# Scratch store files of store_ops's file-backed inputs (one in 32; the others use its
# `memory:` backend), in /dev/shm when possible, removed however this ends.
scratch="$(mktemp -d /dev/shm/keystead-fuzz-scratch.XXXXXX 2>/dev/null ||
  mktemp -d "${TMPDIR:-/tmp}/keystead-fuzz-scratch.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
export KEYSTEAD_FUZZ_DIR="$scratch"

run_one() {
  local target="$1" status=0
  mkdir -p "$work/$target" "fuzz/artifacts/$target"
  cp -R "fuzz/corpus/$target/." "$work/$target/"
  nice -n "$nice_level" "$bin_dir/$target" \
    -max_total_time="$seconds" -rss_limit_mb="$rss" -timeout=60 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$target/" "$work/$target" >"$work/$target.log" 2>&1 ||
    status=$?
  echo "$status" >"$work/$target.status"
}

mkdir -p "$work"
echo "fuzzing ${targets[*]} for ${seconds}s each, $jobs at a time (asan=$asan); logs in $work"
for target in "${targets[@]}"; do
  if [ ! -x "$bin_dir/$target" ]; then
    echo "unknown fuzz target: $target" >&2
    exit 2
  fi
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
    wait -n || true
  done
  rm -f "$work/$target.status"
  run_one "$target" &
done
wait

failed=()
for target in "${targets[@]}"; do
  [ "$(cat "$work/$target.status" 2>/dev/null)" = 0 ] || failed+=("$target")
done

printf '\n%-28s %12s %8s %22s %s\n' target executions exec/s "corpus (files/bytes)" result
for target in "${targets[@]}"; do
  log="$work/$target.log"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
  corp="$(grep -E '^#[0-9]+\s+DONE' "$log" | tail -n 1 | sed -n 's/.* corp: \([^ ]*\).*/\1/p')"
  result=ok
  [ "$(cat "$work/$target.status" 2>/dev/null)" = 0 ] || result="FAILED (see $log)"
  printf '%-28s %12s %8s %22s %s\n' "$target" "${execs:-?}" "${rate:-?}" "${corp:-?}" "$result"
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "crashing inputs: fuzz/artifacts/<target>/" >&2
  exit 1
fi
