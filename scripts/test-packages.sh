#!/usr/bin/env bash
# Installs the Python wheel and the npm tarball the way a user without a Rust toolchain would,
# and checks that every package (each crate, the wheel, both npm tarballs) carries the license
# texts. Runs after scripts/test-python.sh and scripts/test-node.sh (scripts/test-all), whose
# artifacts it reuses: target/wheels-python/keystead-*.whl and
# bindings/node/keystead.linux-x64-gnu.node. It builds nothing with Rust.
#
#  1. licenses: `cargo package --list` of every workspace crate lists LICENSE-MIT and
#     LICENSE-APACHE; the copies bindings/node needs (npm does not pack symlinks) equal the root's;
#     the Python sdist (maturin sdist, which needs cargo metadata) declares and carries both.
#  2. with cargo, rustc and rustup removed from PATH (asserted):
#     a. Python: a fresh venv, `pip install <wheel>`, the test requirements, then the pytest suite
#        of bindings/python run from a temporary directory; a plugin fails the run unless the
#        `keystead` the tests imported is the one installed in that venv.
#     b. Node: `npm pack`, `npm install --offline <tarball>` in an empty directory, a smoke run
#        (CJS require, ESM import, create, verify) that checks the addon loaded from the
#        installed package; then the napi-rs release layout, made by the real `napi artifacts`
#        and `napi prepublish` (publishing nothing): the per-platform package (npm/linux-x64-gnu
#        with the addon) and a main package without the addon, installed together offline,
#        load the addon from node_modules/keystead-linux-x64-gnu.
# Fails on any error; prints what it verified. Needs python3 (venv, pip), node and npm; the
# Python test requirements come from PyPI (pip's cache), nothing else from a registry.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

step() { printf -- '--- %s\n' "$*"; }
ok() { printf 'ok: %s\n' "$*"; }
fail() {
    printf 'test-packages: %s\n' "$*" >&2
    exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/keystead-packages.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---------------------------------------------------------------- 1. licenses (needs cargo)
step "license texts in every crate and in the npm package sources"
for license in LICENSE-MIT LICENSE-APACHE; do
    [ -s "$license" ] || fail "$license missing at the root"
done
crates=$(cargo metadata --no-deps --format-version 1 --locked \
    | python3 -c 'import json,sys; print("\n".join(p["name"] for p in json.load(sys.stdin)["packages"]))')
for crate in $crates; do
    list=$(cargo package --list --allow-dirty --locked -p "$crate" 2>/dev/null) \
        || fail "cargo package --list -p $crate failed"
    for license in LICENSE-MIT LICENSE-APACHE; do
        grep -qx "$license" <<<"$list" || fail "crate $crate does not ship $license"
    done
done
ok "crates ship LICENSE-MIT and LICENSE-APACHE: $(tr '\n' ' ' <<<"$crates")"
for dir in bindings/node bindings/node/npm/linux-x64-gnu; do
    for license in LICENSE-MIT LICENSE-APACHE; do
        cmp -s "$license" "$dir/$license" \
            || fail "$dir/$license differs from the root's $license (copy it again)"
    done
done
ok "bindings/node and its npm/linux-x64-gnu hold copies equal to the root's license texts"
maturin=target/venv-python/bin/maturin
[ -x "$maturin" ] || fail "$maturin is missing: run scripts/test-python.sh first"
"$maturin" sdist -m bindings/python/Cargo.toml -o "$work/sdist" >/dev/null 2>&1 || fail "maturin sdist failed"
python3 - "$work"/sdist/keystead-*.tar.gz <<'EOF' || fail "the sdist does not carry the license texts"
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    top = t.getnames()[0].split("/")[0]
    info = t.extractfile(f"{top}/PKG-INFO").read().decode()
    files = [l.split(": ", 1)[1] for l in info.splitlines() if l.startswith("License-File: ")]
    if sorted(files) != ["LICENSE-APACHE", "LICENSE-MIT"]:
        sys.exit(f"sdist PKG-INFO License-File entries: {files}")
    for f in files:
        if not t.getmember(f"{top}/{f}").isfile():
            sys.exit(f"sdist: {f} is not a regular file")
EOF
ok "the Python sdist declares and carries LICENSE-MIT and LICENSE-APACHE"

# ------------------------------------------------------------------ hide the Rust toolchain
# Drop every PATH entry that holds cargo, rustc or rustup (~/.cargo/bin, a distro's /usr/bin
# would be kept only if it had none of them).
norust_path=
IFS=: read -ra entries <<<"$PATH"
for entry in "${entries[@]}"; do
    [ -n "$entry" ] || continue
    if [ -e "$entry/cargo" ] || [ -e "$entry/rustc" ] || [ -e "$entry/rustup" ]; then
        continue
    fi
    norust_path=${norust_path:+$norust_path:}$entry
done
export PATH=$norust_path
unset CARGO RUSTC RUSTUP_TOOLCHAIN CARGO_TARGET_DIR
hash -r
for tool in cargo rustc rustup; do
    if command -v "$tool" >/dev/null; then fail "$tool is still on PATH: $(command -v "$tool")"; fi
done
ok "cargo, rustc and rustup are not on PATH"

# ------------------------------------------------------------------------- 2a. Python wheel
step "Python: pip install the wheel into a fresh venv, run the test suite against it"
shopt -s nullglob
wheels=(target/wheels-python/keystead-*.whl)
shopt -u nullglob
[ "${#wheels[@]}" -eq 1 ] || fail "expected exactly one wheel in target/wheels-python, found \
${#wheels[@]}: run scripts/test-python.sh first (it builds it with maturin)"
wheel=$root/${wheels[0]}
echo "wheel: ${wheel##*/}"

python=${PYTHON:-python3}
"$python" - "$wheel" "$root" <<'EOF' || fail "the wheel does not carry the license texts"
import re, sys, zipfile, pathlib
wheel, root = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    for license in ("LICENSE-MIT", "LICENSE-APACHE"):
        found = [n for n in names if n.endswith(".dist-info/licenses/" + license)]
        if len(found) != 1 or z.read(found[0]) != (root / license).read_bytes():
            sys.exit(f"{license}: {found or 'not in the wheel'}")
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = z.read(metadata).decode()
    if "License-Expression: MIT OR Apache-2.0" not in text:
        sys.exit("METADATA has no License-Expression: MIT OR Apache-2.0")
    # docs/releasing.md: the manylinux tag is the newest glibc symbol version the extension
    # module references (the version names in its .dynstr).
    tag = re.search(r"-manylinux_(\d+)_(\d+)_x86_64\.whl$", wheel)
    so = next(n for n in names if n.endswith(".so"))
    versions = {tuple(map(int, v)) for v in re.findall(rb"GLIBC_(\d+)\.(\d+)", z.read(so))}
    if not tag or max(versions) != tuple(map(int, tag.groups())):
        sys.exit(f"platform tag {tag and tag.group(0)} vs newest GLIBC_{max(versions)}")
    print("platform tag manylinux_%d_%d = the newest glibc symbol version the module uses" % max(versions))
EOF
ok "the wheel carries .dist-info/licenses/LICENSE-MIT and LICENSE-APACHE (equal to the root's) and License-Expression: MIT OR Apache-2.0"

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
venv=$work/venv
"$python" -m venv "$venv"
echo "fresh venv: $("$venv/bin/python" --version), $("$venv/bin/python" -m pip --version | cut -d' ' -f1-2)"
"$venv/bin/python" -m pip install -q "$wheel"
# The test suite's requirements minus the build tool (no build happens here).
grep -viE '^maturin([=<>~ ]|$)' bindings/python/requirements-dev.txt >"$work/requirements.txt"
"$venv/bin/python" -m pip install -q -r "$work/requirements.txt"

# From an empty directory: the source tree's bindings/python/python/keystead (no native
# module in it) is never on sys.path, so only the installed package can be imported.
mkdir "$work/py"
cat >"$work/py/keystead_installed_check.py" <<'EOF'
"""pytest plugin: fail the run unless the tests used the keystead installed in this venv."""
import sys


def pytest_sessionfinish(session, exitstatus):
    module = sys.modules.get("keystead")
    where = getattr(module, "__file__", None) or ""
    if not where.startswith(sys.prefix + "/"):
        print(f"\nkeystead imported from {where or 'nowhere'}, not from the venv {sys.prefix}")
        session.exitstatus = 1
    else:
        print(f"\nkeystead imported from {where}")
EOF
(
    cd "$work/py"
    "$venv/bin/python" -c '
import sys, keystead, keystead._keystead as native
for m in (keystead, native):
    assert m.__file__.startswith(sys.prefix + "/"), m.__file__
print("import keystead ->", keystead.__file__)
print("native module   ->", native.__file__)'
    status=0
    # Under a throwaway PostgreSQL server, for tests/test_postgres.py (scripts/test-postgres.sh).
    PYTHONPATH=$work/py bash "$root/scripts/test-postgres.sh" -- \
        "$venv/bin/python" -m pytest -q -p keystead_installed_check \
        -c "$root/bindings/python/pyproject.toml" --rootdir "$root/bindings/python" \
        "$root/bindings/python/tests" || status=$?
    [ "$status" -ne 5 ] || fail "pytest collected no tests"
    [ "$status" -eq 0 ] || fail "pytest against the installed wheel failed ($status)"
)
ok "the Python test suite passed against the wheel installed without Rust"

# --------------------------------------------------------------------------- 2b. npm tarball
step "Node: npm pack, npm install <tarball> offline in an empty directory, smoke run"
node_dir=$root/bindings/node
addon=keystead.linux-x64-gnu.node
[ -f "$node_dir/$addon" ] || fail "bindings/node/$addon is missing: run scripts/test-node.sh \
first (it builds the addon with napi-rs)"
echo "node $(node --version), npm $(npm --version)"
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

mkdir "$work/npm"
tarball=$work/npm/$(cd "$node_dir" && npm pack --silent --pack-destination "$work/npm" | tail -n 1)
[ -f "$tarball" ] || fail "npm pack produced no tarball"
echo "tarball: ${tarball##*/}"
contents=$(tar -tzf "$tarball")
for file in package/package.json package/index.js package/index.d.ts "package/$addon" \
    package/LICENSE-MIT package/LICENSE-APACHE; do
    grep -qx "$file" <<<"$contents" || fail "the tarball lacks $file"
done
# No optionalDependencies in the tarball installed from a file: npm must not go to the registry
# for a platform package (see docs/releasing.md; napi prepublish adds them in a release).
tar -xzOf "$tarball" package/package.json | node -e '
const p = JSON.parse(require("fs").readFileSync(0, "utf8"))
if (p.optionalDependencies && Object.keys(p.optionalDependencies).length)
  throw new Error("optionalDependencies in the packed package.json: " + JSON.stringify(p.optionalDependencies))'
# Every file package.json points at (main, types, every target in exports) is in the tarball:
# a new entry point outside the `files` patterns fails here, not in a user's install.
tar -xzOf "$tarball" package/package.json | node -e '
const p = JSON.parse(require("fs").readFileSync(0, "utf8"))
const packed = new Set(process.argv[1].split("\n"))
const targets = []
const walk = (v) => {
  if (typeof v === "string") targets.push(v)
  else if (v && typeof v === "object") Object.values(v).forEach(walk)
}
;[p.main, p.types, p.typings, p.module, p.exports].forEach(walk)
const missing = targets
  .filter((t) => !t.includes("*"))
  .map((t) => "package/" + t.replace(/^\.\//, ""))
  .filter((f) => !packed.has(f))
if (missing.length) throw new Error("package.json points at files the tarball lacks: " + missing.join(", "))
console.log("entry points packed: " + [...new Set(targets)].join(", "))' "$contents"
ok "the tarball holds the loader, the types, $addon and both license texts, and no optionalDependencies"

# The smoke run, copied into each app directory (require resolves from the script's place);
# which package directory the addon must come from is its argument.
cat >"$work/npm/smoke.js" <<'EOF'
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const [addonDir] = process.argv.slice(2)
const appDir = fs.realpathSync(process.cwd())
const main = require.resolve('keystead')
assert.equal(main, path.join(appDir, 'node_modules', 'keystead', 'lib', 'keystead.js'))
const { KeyStore, express, fastify } = require('keystead')
assert.equal(typeof express, 'function')
assert.equal(typeof fastify, 'function')
const addons = Object.keys(require.cache).filter((file) => file.endsWith('.node'))
assert.deepEqual(addons, [path.join(appDir, 'node_modules', addonDir, 'keystead.linux-x64-gnu.node')])

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keystead-smoke-'))
const store = KeyStore.open(path.join(dir, 'keystead.redb'))
const { key, info } = store.create({ name: 'smoke', scopes: ['chat:completions'] })
assert.equal(store.verify(key, { scopes: ['chat:completions'] }).code, 'valid')
assert.equal(store.verifyHeader(`Bearer ${key}`, { scopes: ['admin'] }).code, 'insufficient_scope')
assert.equal(store.verifyHeader(undefined).httpStatus, 401)
store.close()
fs.rmSync(dir, { recursive: true, force: true })

import('keystead').then((esm) => {
  assert.equal(esm.KeyStore, KeyStore)
  assert.equal(esm.default.KeyStore, KeyStore)
  console.log(`CJS require and ESM import of ${main}; addon ${addons[0]}; created ${info.id}, verified`)
})
EOF

app=$work/npm/app
mkdir "$app"
(
    cd "$app"
    echo '{"name":"keystead-smoke","version":"0.0.0","private":true}' >package.json
    npm install --offline --no-save --silent "$tarball"
    cp "$work/npm/smoke.js" . && node smoke.js keystead
)
ok "npm install --offline of the tarball works without Rust; the addon loads from node_modules/keystead"

step "Node: the napi-rs release layout (napi artifacts, napi prepublish), installed offline"
# The package's files, run through the release steps of docs/releasing.md with the
# real @napi-rs/cli (the devDependency scripts/test-node.sh installed), publishing nothing:
# napi artifacts copies the addon into npm/linux-x64-gnu (and next to index.js), napi prepublish
# writes the root's optionalDependencies, and the root's own *.node is removed before packing.
napi_cli=$node_dir/node_modules/@napi-rs/cli/dist/cli.js
[ -f "$napi_cli" ] || fail "$napi_cli is missing: run scripts/test-node.sh first (npm ci)"
release=$work/npm/release
mkdir -p "$release/artifacts"
# The root as packed above (its files exactly), without the addon, plus the npm/ directory.
tar -xzf "$tarball" -C "$release" --strip-components=1
rm "$release/$addon"
cp -R "$node_dir/npm" "$release/"
cp "$node_dir/$addon" "$release/artifacts/"
(
    cd "$release"
    node "$napi_cli" artifacts
    env -u GITHUB_REPOSITORY -u GITHUB_TOKEN \
        node "$napi_cli" prepublish -t npm --skip-optional-publish --no-gh-release
    node -e '
const p = require("./package.json")
const want = { "keystead-linux-x64-gnu": p.version }
if (JSON.stringify(p.optionalDependencies) !== JSON.stringify(want))
  throw new Error("napi prepublish wrote optionalDependencies " + JSON.stringify(p.optionalDependencies))'
    rm -f -- ./*.node
)
ok "napi prepublish set optionalDependencies {\"keystead-linux-x64-gnu\": \"0.1.0\"} on the root"

platform_tgz=$work/npm/$(cd "$release/npm/linux-x64-gnu" && npm pack --silent --pack-destination "$work/npm" | tail -n 1)
platform_contents=$(tar -tzf "$platform_tgz")
for file in package/package.json "package/$addon" package/LICENSE-MIT package/LICENSE-APACHE; do
    grep -qx "$file" <<<"$platform_contents" || fail "the platform tarball lacks $file"
done
# shellcheck disable=SC2016 # JavaScript, not shell, inside the quotes
tar -xzOf "$platform_tgz" package/package.json | node -e '
const p = JSON.parse(require("fs").readFileSync(0, "utf8"))
const want = { name: "keystead-linux-x64-gnu", main: "keystead.linux-x64-gnu.node",
  os: ["linux"], cpu: ["x64"], libc: ["glibc"] }
for (const [k, v] of Object.entries(want))
  if (JSON.stringify(p[k]) !== JSON.stringify(v)) throw new Error(`${k}: ${JSON.stringify(p[k])}`)'
ok "${platform_tgz##*/}: the addon, both license texts, os/cpu/libc = linux/x64/glibc"

mkdir "$work/npm/release-tgz"
release_tgz=$work/npm/release-tgz/$(cd "$release" && npm pack --silent --pack-destination "$work/npm/release-tgz" | tail -n 1)
if tar -tzf "$release_tgz" | grep -q '\.node$'; then fail "the release root package carries an addon"; fi
release_app=$work/npm/release-app
mkdir "$release_app"
(
    cd "$release_app"
    echo '{"name":"keystead-release-smoke","version":"0.0.0","private":true}' >package.json
    # The platform tarball stands in for the registry: it satisfies the optional dependency.
    npm install --offline --no-save --silent "$platform_tgz" "$release_tgz"
    cp "$work/npm/smoke.js" . && node smoke.js keystead-linux-x64-gnu
)
ok "release root package (no addon) + keystead-linux-x64-gnu: the loader falls back to the platform package"

echo "test-packages: wheel ${wheel##*/} and npm ${tarball##*/} + ${platform_tgz##*/} verified without Rust"
