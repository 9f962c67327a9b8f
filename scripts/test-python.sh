#!/usr/bin/env bash
# Builds the Python binding (bindings/python) into a venv under target/ and runs its checks:
# mypy --strict on the package's Python modules, the tests and the examples; stubtest on the
# installed package (the native module's stubs and the pure-Python modules); pytest, under a
# throwaway PostgreSQL server for the fleet-mode tests (scripts/test-postgres.sh).
# Needs only python3 (with venv and pip) and the Rust toolchain; installs the rest from PyPI.
# Idempotent: the venv and its tools are reused while requirements-dev.txt is unchanged, and
# cargo rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

binding=bindings/python
venv=target/venv-python
wheels=target/wheels-python
python=${PYTHON:-python3}
req=$binding/requirements-dev.txt
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 MYPY_CACHE_DIR=$PWD/target/mypy-cache-python

step() { printf -- '--- %s\n' "$*"; }

if ! "$venv/bin/python" -c 'import pip' 2>/dev/null; then
    step "creating $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi
py=$PWD/$venv/bin/python

stamp=$venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    step "installing build and test tools"
    "$py" -m pip install -q -r "$req"
    echo "$want" >"$stamp"
fi

step "building the keystead wheel (maturin, release)"
rm -rf "$wheels"
"$venv/bin/maturin" build --release --quiet -i "$py" -m "$binding/Cargo.toml" -o "$wheels"
"$py" -m pip install -q --force-reinstall --no-deps "$wheels"/keystead-*.whl

step "mypy --strict (the pure-Python package, tests, examples) and stubtest"
"$py" -m mypy --strict "$binding/python/keystead" "$binding/tests" "$binding/examples"
# stubtest takes no cache option: run it from target/ so that its .mypy_cache lands there.
(cd target && "$py" -m mypy.stubtest keystead)

step "pytest"
status=0
# Under a throwaway PostgreSQL server (scripts/test-postgres.sh installs and starts one, or
# uses $KEYSTEAD_TEST_PG_URL): tests/test_postgres.py runs the binding in fleet mode.
bash scripts/test-postgres.sh -- bash -c 'cd "$1" && "$2" -m pytest -q' _ "$binding" "$py" \
    || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit "$status"
