#!/usr/bin/env bash
# Checks of the uniffi FFI layer and the generated Swift bindings. Steps 1-5 need only cargo and
# gcc; step 6 brings its own Swift toolchain (a chroot). Run from anywhere:
#
#   1. regenerating the bindings from a fresh release build gives exactly the committed files;
#   2. the committed C header compiles;
#   3. every function the header declares is exported by the built cdylib;
#   4. the contract version and every API checksum the committed Swift checks at load time
#      match the built library (so the Swift would not fatalError on first use);
#   5. a C program drives the FFI end to end through the exported C functions (open, create,
#      verify, revoke, verify again, errors, close, free), linked once against the cdylib and
#      once against the staticlib (the latter under AddressSanitizer/LeakSanitizer).
#   6. the Swift package builds and its XCTest suite passes (`swift build`, `swift test`),
#      against the library built from this checkout, in a Debian trixie chroot that
#      scripts/swift-chroot.sh builds once and caches outside the repository.
#
# Step 6 needs root (chroot, mount). Where it cannot run, this script fails and says why; only
# KEYSTEAD_SKIP_SWIFT=1 skips it, and says so loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

section() { printf '\n---- swift/ffi: %s ----\n' "$*"; }

if [[ "$(uname -s)" != Linux ]]; then
    echo "scripts/test-swift.sh: the symbol and linking checks are written for Linux (ELF, gcc)" >&2
    exit 1
fi

swift_dir=bindings/swift
ffi_dir=$swift_dir/Sources/keysteadFFI
header=$ffi_dir/keysteadFFI.h
swift_source=$swift_dir/Sources/keystead/keystead.swift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

section "1. regenerated bindings match the committed ones"
library=$("$swift_dir/generate.sh" --out-dir "$work/generated" | tail -n 1)
staticlib=${library%.so}.a
test -f "$library" && test -f "$staticlib"
# KeysteadDates.swift is hand-written (Date forms of the millisecond times); the rest is generated.
diff -r -x KeysteadDates.swift "$work/generated/swift/Sources" "$swift_dir/Sources"
test -f "$swift_dir/Sources/keystead/KeysteadDates.swift"
echo "ok: $swift_dir/Sources is up to date (bindings/swift/generate.sh regenerates it)"

section "2. the header compiles"
gcc -fsyntax-only -D_Nullable= -D_Nonnull= -x c "$header" 2>"$work/header.log" || {
    cat "$work/header.log" >&2
    exit 1
}
# And without a single warning when included, as C11 and as C99.
for std in c11 c99; do
    echo '#include "keysteadFFI.h"' |
        gcc -fsyntax-only -std=$std -Wall -Wextra -Wpedantic -Werror -D_Nullable= -D_Nonnull= \
            -I "$ffi_dir" -x c -
done
echo "ok: $header"

section "3. every function the header declares is exported by the cdylib"
# gcc's own parse of the header lists its function declarations, one a line.
gcc -fsyntax-only -aux-info "$work/aux.txt" -D_Nullable= -D_Nonnull= -x c "$header" 2>/dev/null
grep -F "/* $header:" "$work/aux.txt" |
    sed -E 's/^.*[ *]([A-Za-z_][A-Za-z0-9_]*) \(.*$/\1/' | sort -u >"$work/declared.txt"
nm -D --defined-only "$library" | awk '$2 == "T" { print $3 }' | sort -u >"$work/exported.txt"
declared=$(wc -l <"$work/declared.txt")
if ((declared < 50)); then
    echo "only $declared functions parsed out of $header; the parsing is broken" >&2
    exit 1
fi
missing=$(comm -23 "$work/declared.txt" "$work/exported.txt")
if [[ -n "$missing" ]]; then
    echo "declared in $header but not exported by $library:" >&2
    echo "$missing" >&2
    exit 1
fi
echo "ok: all $declared declared functions are exported by $(basename "$library")"

section "4. the Swift's contract version and API checksums match the library"
contract=$(sed -n 's/^ *let bindings_contract_version = \([0-9]*\)$/\1/p' "$swift_source")
{
    echo '#include <stdio.h>'
    echo "#include \"keysteadFFI.h\""
    echo 'int main(void) {'
    echo '    int bad = 0, n = 0;'
    echo "    n++; if (ffi_keystead_ffi_uniffi_contract_version() != $contract) { bad++; puts(\"contract version\"); }"
    sed -n -E 's/^ *if \((uniffi_keystead_ffi_checksum_[a-z0-9_]+)\(\) != ([0-9]+)\) \{$/    n++; if (\1() != \2) { bad++; puts("\1"); }/p' \
        "$swift_source"
    echo '    printf("%d of %d load-time checks differ\n", bad, n);'
    echo '    return bad != 0 || n < 10;'
    echo '}'
} >"$work/checksums.c"
gcc -std=c11 -Wall -D_Nullable= -D_Nonnull= -I "$ffi_dir" "$work/checksums.c" \
    -o "$work/checksums" -L "$(dirname "$library")" -lkeystead_ffi \
    -Wl,-rpath,"$(dirname "$library")"
"$work/checksums"

section "5. end-to-end through the C ABI (ffi/tests/c/ffi_smoke.c)"
cflags=(-std=c11 -Wall -Wextra -Werror -D_Nullable= -D_Nonnull=
    "-DUNIFFI_CONTRACT_VERSION=$contract" -I "$ffi_dir")
# Against the cdylib (what SwiftPM links on Linux).
gcc "${cflags[@]}" ffi/tests/c/ffi_smoke.c -o "$work/smoke-dynamic" \
    -L "$(dirname "$library")" -lkeystead_ffi -Wl,-rpath,"$(dirname "$library")"
mkdir "$work/store-dynamic"
"$work/smoke-dynamic" "$work/store-dynamic"
# Against the staticlib (what the Swift XCFramework packages), with AddressSanitizer and
# LeakSanitizer on the C side: every RustBuffer and object handle must be freed exactly once.
gcc "${cflags[@]}" -g -fsanitize=address,undefined -fno-omit-frame-pointer \
    ffi/tests/c/ffi_smoke.c -o "$work/smoke-static" "$staticlib" -lpthread -ldl -lm
mkdir "$work/store-static"
ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1 \
    "$work/smoke-static" "$work/store-static"
if ldd "$work/smoke-static" | grep -q keystead_ffi; then
    echo "the static smoke binary should not load libkeystead_ffi.so" >&2
    exit 1
fi

section "6. swift build and swift test (Debian trixie chroot)"
if [[ "${KEYSTEAD_SKIP_SWIFT:-}" == 1 ]]; then
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo "!!! SKIPPED: the Swift package was NOT built and its XCTest suite NOT run       !!!"
    echo "!!! (KEYSTEAD_SKIP_SWIFT=1). Only checks 1-5 above ran.                         !!!"
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    exit 0
fi
chroot_dir=$(bash scripts/swift-chroot.sh | tail -n 1)
# The package is copied to a fixed place in the chroot whose .build directory is kept between
# runs (swift build is incremental); everything else is replaced by this checkout's files.
pkg=$chroot_dir/keystead/swift
mkdir -p "$pkg" "$chroot_dir/keystead/lib" "$chroot_dir/keystead/vectors"
find "$pkg" -mindepth 1 -maxdepth 1 ! -name .build -exec rm -rf {} +
cp -r "$swift_dir/Package.swift" "$swift_dir/Sources" "$swift_dir/Tests" "$pkg/"
rm -f "$chroot_dir/keystead/lib/"* "$chroot_dir/keystead/vectors/"*
cp "$library" "$chroot_dir/keystead/lib/"
cp tests/vectors/*.json "$chroot_dir/keystead/vectors/"
mounted_proc=
if ! mountpoint -q "$chroot_dir/proc"; then
    mount -t proc proc "$chroot_dir/proc"
    mounted_proc=1
fi
trap 'if [[ -n "$mounted_proc" ]]; then umount "$chroot_dir/proc" || true; fi; rm -rf "$work"' EXIT
in_chroot() {
    chroot "$chroot_dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 KEYSTEAD_VECTORS_DIR=/keystead/vectors LD_LIBRARY_PATH=/keystead/lib \
        sh -c "cd /keystead/swift && $1"
}
in_chroot 'swift --version' 2>&1 | head -n 1
in_chroot 'swift build --build-tests -Xlinker -L/keystead/lib' 2>&1 | tail -n 5
in_chroot 'swift test --skip-build --disable-swift-testing' 2>&1 | tee "$work/swift-test.log" | grep -vE "^Test Case '.*' (started|passed)" || true
if ! grep -qE "Executed [1-9][0-9]* tests?, with 0 failures" "$work/swift-test.log"; then
    echo "swift test failed or ran no test" >&2
    exit 1
fi

echo
echo "swift/ffi checks passed, including swift build and swift test"
