#!/usr/bin/env bash
# Fuzz smoke run (called by scripts/test-all): builds the cargo-fuzz targets in fuzz/ on stable
# without a sanitizer and runs each one for a bounded time on a copy of its committed corpus
# (fuzz/corpus/<target>/), so nothing in the repository is written. Fails on any crash (a
# panic or failed assertion), timeout or out-of-memory, printing the crashing input as hex.
#
#   scripts/test-fuzz.sh                 # every target, FUZZ_SMOKE_SECONDS (20) each
#   FUZZ_SMOKE_SECONDS=5 scripts/test-fuzz.sh parse_key
#
# Longer runs with AddressSanitizer: fuzz/run-long.sh (see fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SMOKE_SECONDS:-20}"
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=(parse_authorization_header parse_key decode_record store_ops)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# `cargo fuzz build` has no --locked: fail here if fuzz/Cargo.lock is out of date instead
# (e.g. after a dependency was added to core).
if ! cargo metadata --manifest-path fuzz/Cargo.toml --locked --format-version 1 >/dev/null; then
  echo "fuzz/Cargo.lock is out of date: run \`cargo metadata --manifest-path fuzz/Cargo.toml" \
    "--format-version 1 >/dev/null\` (or cargo fuzz build) and commit fuzz/Cargo.lock" >&2
  exit 1
fi

# A target directory of its own: sanitizer builds (fuzz/run-long.sh) use other flags.
target_dir=fuzz/target/smoke
cargo fuzz build --sanitizer none --debug-assertions --target-dir "$target_dir"
host="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$target_dir/$host/release"

work="$(mktemp -d "${TMPDIR:-/tmp}/keystead-fuzz-smoke.XXXXXX")"
# Scratch store files of store_ops's file-backed inputs (one in 32; the others use its
# `memory:` backend), in /dev/shm when possible, removed however this ends.
scratch="$(mktemp -d /dev/shm/keystead-fuzz-scratch.XXXXXX 2>/dev/null ||
  mktemp -d "${TMPDIR:-/tmp}/keystead-fuzz-scratch.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
export KEYSTEAD_FUZZ_DIR="$scratch"
failed=()
for target in "${targets[@]}"; do
  if [ ! -d "fuzz/corpus/$target" ] || [ ! -x "$bin_dir/$target" ]; then
    echo "unknown fuzz target: $target" >&2
    exit 2
  fi
  mkdir -p "$work/$target/artifacts"
  cp -R "fuzz/corpus/$target" "$work/$target/corpus"
  echo "--- fuzz $target for ${seconds}s"
  status=0
  "$bin_dir/$target" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 \
    -artifact_prefix="$work/$target/artifacts/" "$work/$target/corpus" \
    >"$work/$target/log" 2>&1 || status=$?
  if [ "$status" -eq 0 ]; then
    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' \
      "$work/$target/log" || true
  else
    failed+=("$target")
    echo "FAILED: fuzz target $target (exit $status); end of its log:"
    tail -n 60 "$work/$target/log"
    for artifact in "$work/$target/artifacts"/*; do
      [ -f "$artifact" ] || continue
      echo "input $(basename "$artifact") ($(wc -c <"$artifact") bytes) as hex:"
      od -An -v -tx1 "$artifact" | tr -d ' \n'
      echo
    done
    echo "reproduce: cargo fuzz run --sanitizer none -a $target <file with those bytes>"
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz smoke run failed: ${failed[*]} (logs and inputs kept in $work)" >&2
  exit 1
fi
rm -rf "$work"
echo "fuzz smoke run passed: ${targets[*]}"
