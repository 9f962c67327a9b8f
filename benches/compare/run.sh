#!/usr/bin/env bash
# keystead vs hand-rolled peers, side by side (issue 8): Rust (rusqlite + HMAC-SHA256 + subtle),
# Python (sqlite3 + hmac) and Node.js (better-sqlite3 + node:crypto). One command: builds and
# installs what it needs, runs the three drivers, prints one summary table.
#
#   benches/compare/run.sh
#
# Environment:
#   KEYSTEAD_COMPARE_N        keys in the Rust comparison (default 1000000)
#   KEYSTEAD_COMPARE_SMALL_N  second, small keystead store verified in the same rounds (10000)
#   KEYSTEAD_COMPARE_PY_N     keys in the Python comparison (default 100000)
#   KEYSTEAD_COMPARE_NODE_N   keys in the Node comparison (default 100000)
#   KEYSTEAD_COMPARE_ROUNDS   interleaved rounds per measurement (default 5)
#   KEYSTEAD_COMPARE_ROUND_MS length of one round per contestant (default 500)
#   KEYSTEAD_COMPARE_ONLY     comma-separated subset of rust,python,node (default: all)
#   KEYSTEAD_COMPARE_AUTOGROUP_NICE  e.g. -10: run each driver in a session (scheduler autogroup)
#                             of its own with this nice level. With autogroups (Linux default),
#                             every busy session gets an equal share of the CPUs whatever its
#                             processes' nice levels, so on a machine shared with another busy
#                             session a 2-thread test gets about one CPU. Negative values need
#                             root. Unset (default): run as is.
#
# Needs cargo, python3 (venv, pip) and node/npm; installs the rest (crates, maturin from PyPI,
# better-sqlite3 from npm). Builds go to target/ (the peer: benches/compare/rust-peer/target).
# Logs and raw results: target/compare/. The summary shows only values measured in this run;
# anything that could not be measured is listed as "not available" with the reason.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$root/target/compare
mkdir -p "$out"
results=$out/results.txt
: >"$results"
only=${KEYSTEAD_COMPARE_ONLY:-rust,python,node}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

step() { printf -- '--- %s\n' "$*" >&2; }
na() { echo "NOTAVAILABLE $1: $2" >>"$results"; echo "not available: $1: $2" >&2; }
wants() { [[ ",$only," == *",$1,"* ]]; }
collect() { grep -aE '^(RESULT|NOTAVAILABLE) ' "$1" >>"$results" || true; }
# Runs a driver, in its own autogroup at KEYSTEAD_COMPARE_AUTOGROUP_NICE if that is set.
drive() {
    if [ -n "${KEYSTEAD_COMPARE_AUTOGROUP_NICE:-}" ] && command -v setsid >/dev/null; then
        setsid -w sh -c 'echo "$0" >/proc/self/autogroup || echo "run.sh: cannot set the autogroup nice level" >&2; exec "$@"' \
            "$KEYSTEAD_COMPARE_AUTOGROUP_NICE" "$@"
    else
        "$@"
    fi
}

# --- the Rust driver (also pre-fills the keystead stores of the Python and Node drivers)
bin=$here/rust-peer/target/release/keystead-compare
step "building benches/compare/rust-peer (release)"
if cargo build --release --locked --manifest-path "$here/rust-peer/Cargo.toml" >"$out/rust-build.log" 2>&1; then
    export KEYSTEAD_COMPARE_BIN=$bin
else
    na rust "cargo build of benches/compare/rust-peer failed (see $out/rust-build.log)"
    export KEYSTEAD_COMPARE_BIN=$out/missing-keystead-compare
fi

if wants rust && [ -x "$KEYSTEAD_COMPARE_BIN" ]; then
    step "Rust: keystead vs rusqlite peer"
    drive "$KEYSTEAD_COMPARE_BIN" --n "${KEYSTEAD_COMPARE_N:-1000000}" | tee "$out/rust.txt"
    status=${PIPESTATUS[0]}
    collect "$out/rust.txt"
    [ "$status" -eq 0 ] || na rust "the Rust driver exited with status $status"
fi

# --- Python: the binding built with maturin into its own venv, and the stdlib peer
if wants python; then
    venv=$root/target/venv-compare-python
    py=$venv/bin/python
    step "Python: venv $venv, maturin, keystead wheel"
    if [ ! -x "$py" ]; then python3 -m venv "$venv" >"$out/python-build.log" 2>&1 || true; fi
    if [ ! -x "$py" ]; then
        na python "cannot create a venv with python3 -m venv (see $out/python-build.log)"
    else
        maturin=$(grep -E '^maturin==' "$root/bindings/python/requirements-dev.txt" 2>/dev/null || echo maturin)
        rm -rf "$out/wheels-python"
        if "$py" -m pip install -q "$maturin" >>"$out/python-build.log" 2>&1 \
            && "$venv/bin/maturin" build --release -m "$root/bindings/python/Cargo.toml" \
                -o "$out/wheels-python" >>"$out/python-build.log" 2>&1 \
            && "$py" -m pip install -q --force-reinstall --no-deps "$out"/wheels-python/keystead-*.whl \
                >>"$out/python-build.log" 2>&1; then
            :
        else
            # Never measure a stale install.
            "$py" -m pip uninstall -y -q keystead >/dev/null 2>&1 || true
            na python.keystead "building or installing the Python binding failed (see $out/python-build.log)"
        fi
        step "Python: keystead binding vs sqlite3 + hmac peer"
        drive "$py" "$here/python_peer.py" --n "${KEYSTEAD_COMPARE_PY_N:-100000}" | tee "$out/python.txt"
        status=${PIPESTATUS[0]}
        collect "$out/python.txt"
        [ "$status" -eq 0 ] || na python "python_peer.py exited with status $status"
    fi
fi

# --- Node: better-sqlite3 from package-lock.json, the binding's addon built by cargo
if wants node; then
    step "Node: npm ci in benches/compare, cargo build -p keystead-node (release)"
    node_ok=1
    if ! (cd "$here" && npm ci --no-audit --no-fund) >"$out/node-build.log" 2>&1; then
        na node "npm ci in benches/compare failed (see $out/node-build.log)"
        node_ok=0
    elif ! (cd "$here" && node -e "require('better-sqlite3')(':memory:')") >>"$out/node-build.log" 2>&1; then
        # Its install script may have been skipped: build the native module now.
        (cd "$here" && npm rebuild better-sqlite3) >>"$out/node-build.log" 2>&1 || true
    fi
    # The addon is built with cargo (what `npm run build` in bindings/node runs) and copied to
    # target/compare, so that nothing under bindings/ is rewritten.
    addon=
    if (cd "$root" && cargo build --release -p keystead-node --message-format=json-render-diagnostics) \
        >"$out/node-addon.json" 2>>"$out/node-build.log"; then
        lib=$(python3 - "$out/node-addon.json" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "keystead_node" and "cdylib" in m["target"]["kind"]:
        print(m["filenames"][0])
EOF
)
        if [ -n "$lib" ] && cp "$lib" "$out/keystead.node"; then addon=$out/keystead.node; fi
    fi
    if [ -z "$addon" ]; then
        na node.keystead "cargo build -p keystead-node failed (see $out/node-build.log)"
        export KEYSTEAD_NODE_ADDON=$out/missing-keystead.node
    else
        export KEYSTEAD_NODE_ADDON=$addon
    fi
    if [ "$node_ok" -eq 1 ]; then
        step "Node: keystead binding vs better-sqlite3 + crypto peer"
        (cd "$here" && drive node node_peer.mjs --n "${KEYSTEAD_COMPARE_NODE_N:-100000}") | tee "$out/node.txt"
        status=${PIPESTATUS[0]}
        collect "$out/node.txt"
        [ "$status" -eq 0 ] || na node "node_peer.mjs exited with status $status"
    fi
fi

# --- the summary: only what is in results.txt
python3 - "$results" <<'EOF'
import os, platform, re, sys, time

values, missing = {}, []
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line.startswith("RESULT "):
        k, _, v = line[7:].partition("=")
        values[k] = v
    elif line.startswith("NOTAVAILABLE "):
        missing.append(line[13:])

def num(k):
    try:
        return float(values[k])
    except (KeyError, ValueError):
        return None

def rate(k):
    v = num(k)
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M/s"
    return f"{v / 1e3:.1f} k/s" if v >= 1e4 else f"{v:.0f} /s"

def ratio(k):
    v = num(k)
    return "-" if v is None else f"{v:.2f}x"

def mib(k):
    v = num(k)
    return "-" if v is None else f"{v / 1024:.1f} MiB"

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
print()
print(f"keystead vs hand-rolled peers, {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} CPUs ({cpu}), "
      f"{mem / 1048576:.1f} GiB RAM, load average {os.getloadavg()[0]:.1f}")
ag = os.environ.get("KEYSTEAD_COMPARE_AUTOGROUP_NICE")
print(f"drivers run {'in their own scheduler autogroup at nice ' + ag if ag else 'in the calling session (no autogroup change)'}")
print(f"N: Rust {values.get('rust.n', '-')} (small store {values.get('rust.keystead_small.n', '-')}), "
      f"Python {values.get('python.n', '-')}, Node {values.get('node.n', '-')}; medians of interleaved rounds; "
      f"ratio = median of per-round keystead/peer")
w = 58
print(f"{'':<{w}} {'keystead':>12} {'peer':>12} {'ratio':>8}")
def row(label, a, b, r):
    print(f"{label:<{w}} {a:>12} {b:>12} {r:>8}")
for lang in ("rust", "python", "node"):
    row(f"{lang}: verify/s, valid key", rate(f"{lang}.keystead.verify_per_s"), rate(f"{lang}.peer.verify_per_s"), ratio(f"{lang}.ratio.verify"))
    if lang == "rust":
        row("rust: verify/s, valid key, keystead record cache off", rate("rust.keystead_uncached.verify_per_s"), rate("rust.peer.verify_per_s"), ratio("rust.ratio.verify_uncached"))
    row(f"{lang}: rejects/s, one-character typo", rate(f"{lang}.keystead.typo_per_s"), rate(f"{lang}.peer.typo_per_s"), ratio(f"{lang}.ratio.typo"))
print("per second of CPU time of the measuring thread (Node: of the process), which a busy machine does not inflate:")
for lang in ("rust", "python", "node"):
    row(f"{lang}: verify/CPU-s, valid key", rate(f"{lang}.keystead.verify_per_cpu_s"), rate(f"{lang}.peer.verify_per_cpu_s"), ratio(f"{lang}.ratio.verify_cpu"))
    if lang == "rust":
        row("rust: verify/CPU-s, valid key, record cache off", rate("rust.keystead_uncached.verify_per_cpu_s"), rate("rust.peer.verify_per_cpu_s"), ratio("rust.ratio.verify_uncached_cpu"))
    row(f"{lang}: rejects/CPU-s, one-character typo", rate(f"{lang}.keystead.typo_per_cpu_s"), rate(f"{lang}.peer.typo_per_cpu_s"), ratio(f"{lang}.ratio.typo_cpu"))
print("other:")
row("rust: bulk import keys/s (create_many / txn per 10k)", rate("rust.keystead.import_keys_per_s"), rate("rust.peer.import_keys_per_s"), "")
for lang in ("python", "node"):
    row(f"{lang}: bulk import keys/s (binding: no bulk API)", "n/a", rate(f"{lang}.peer.import_keys_per_s"), "")
    row(f"{lang}: create keys/s, one transaction per key", rate(f"{lang}.keystead.create_keys_per_s"), rate(f"{lang}.peer.create_keys_per_s"), "")
row("rust: file bytes per key", values.get("rust.keystead.bytes_per_key", "-"), values.get("rust.peer.bytes_per_key", "-"), "")
row("rust: peak RSS, import process", mib("rust.keystead.import_peak_rss_kib"), mib("rust.peer.import_peak_rss_kib"), "")
row("rust: peak RSS, open + verify process", mib("rust.keystead.serve_peak_rss_kib"), mib("rust.peer.serve_peak_rss_kib"), "")
row("rust: keystead verify/s, 1 thread | 2 threads", rate("rust.keystead.verify_1t_per_s"), rate("rust.keystead.verify_2t_per_s"), ratio("rust.ratio.threads_2_over_1"))
row("rust: keystead verifies per CPU-second, 1 | 2 threads", rate("rust.keystead.verify_1t_per_cpu_s"), rate("rust.keystead.verify_2t_per_cpu_s"), "")
row("rust: CPUs the verifying threads got, 1 | 2 threads", values.get("rust.keystead.cpus_used_1t", "-"), values.get("rust.keystead.cpus_used_2t", "-"), "")
row("rust: control (HMAC only, shares nothing), 1 | 2 threads", rate("rust.control.hmac_1t_per_s"), rate("rust.control.hmac_2t_per_s"), ratio("rust.ratio.control_threads_2_over_1"))
row("rust: keystead, both threads on the same keys, 1 | 2 threads", rate("rust.keystead.same_key_1t_per_s"), rate("rust.keystead.same_key_2t_per_s"), ratio("rust.ratio.same_key_threads_2_over_1"))
row(f"rust: keystead verify/s at {values.get('rust.keystead_small.n', '-')} keys | time ratio N/small",
    rate("rust.keystead_small.verify_per_s"), "", ratio("rust.ratio.verify_ns_n_over_small"))

print()
print("Targets")
print("  (judged on the wall-clock medians; in brackets the same figure per CPU-second)")
def target(label, key, ok, show, need=None, cpu_key=None):
    v = num(key)
    c = num(cpu_key) if cpu_key else None
    extra = f"  [per CPU-second: {show(c)}, {'met' if ok(c) else 'missed'}]" if c is not None else ""
    if v is None:
        print(f"  {label:<52} not measured")
    elif need is not None and not need():
        print(f"  {label:<52} {show(v):>12}  not applicable ({need.__doc__})")
    else:
        print(f"  {label:<52} {show(v):>12}  {'met' if ok(v) else 'MISSED'}{extra}")
def at_1m():
    """Rust N is not 1,000,000"""
    return num("rust.n") == 1_000_000
target("rust verify <= 0.6 us median at 1M keys", "rust.keystead.verify_ns", lambda v: v <= 600, lambda v: f"{v / 1000:.2f} us", at_1m, "rust.keystead.verify_cpu_ns")
target(f"rust verify flat {values.get('rust.keystead_small.n', '?')}..{values.get('rust.n', '?')} keys (time ratio <= 1.2)", "rust.ratio.verify_ns_n_over_small", lambda v: v <= 1.2, lambda v: f"{v:.2f}x", None, "rust.ratio.verify_cpu_ns_n_over_small")
target("malformed rejection >= 10M/s", "rust.keystead.typo_per_s", lambda v: v >= 10e6, lambda v: f"{v / 1e6:.2f} M/s", None, "rust.keystead.typo_per_cpu_s")
target("python binding >= 10x its peer", "python.ratio.verify", lambda v: v >= 10, lambda v: f"{v:.2f}x", None, "python.ratio.verify_cpu")
target("node binding >= 10x its peer", "node.ratio.verify", lambda v: v >= 10, lambda v: f"{v:.2f}x", None, "node.ratio.verify_cpu")
target("2 threads >= 1.8x one", "rust.ratio.threads_2_over_1", lambda v: v >= 1.8, lambda v: f"{v:.2f}x")
c1, c2 = num("rust.keystead.cpus_used_1t"), num("rust.keystead.cpus_used_2t")
k, ctl, ctl_r = num("rust.ratio.threads_per_cpu_2_over_1"), num("rust.ratio.control_threads_per_cpu_2_over_1"), num("rust.ratio.control_threads_2_over_1")
if None not in (c1, c2, k, ctl, ctl_r):
    print(f"  {'':<52} (CPUs the threads got: {c1:.2f} with 1, {c2:.2f} with 2; work per CPU-second 2/1 threads:\n"
          f"  {'':<52}  keystead {k:.2f}, share-nothing HMAC control {ctl:.2f}; the control's own 2/1 speed-up {ctl_r:.2f}x;\n"
          f"  {'':<52}  keystead with both threads on the same keys {num('rust.ratio.same_key_threads_per_cpu_2_over_1') or float('nan'):.2f})")
target("RSS <= 128 MiB at 1M keys (open + verify)", "rust.keystead.serve_peak_rss_kib", lambda v: v <= 128 * 1024, lambda v: f"{v / 1024:.1f} MiB", at_1m)
target("RSS <= 128 MiB at 1M keys (import)", "rust.keystead.import_peak_rss_kib", lambda v: v <= 128 * 1024, lambda v: f"{v / 1024:.1f} MiB", at_1m)
target("<= 300 bytes of file per key", "rust.keystead.bytes_per_key", lambda v: v <= 300, lambda v: f"{v:.0f} B")
if missing:
    print()
    for m in missing:
        print(f"not available: {m}")
EOF
