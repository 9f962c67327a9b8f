#!/usr/bin/env bash
# Checks of the uniffi FFI layer and the generated Swift/Kotlin bindings that run without a
# Swift toolchain (there is none on CI). Needs only cargo and gcc. Run from anywhere:
#
#   1. regenerating the bindings from a fresh release build gives exactly the committed files;
#   2. the committed C header compiles;
#   3. every function the header declares is exported by the built cdylib;
#   4. the contract version and every API checksum the committed Swift checks at load time
#      match the built library (so the Swift would not fatalError on first use);
#   5. a C program drives the FFI end to end through the exported C functions (open, create,
#      verify, revoke, verify again, errors, close, free), linked once against the cdylib and
#      once against the staticlib (the latter under AddressSanitizer/LeakSanitizer).
#
# The XCTest suite in bindings/swift/Tests is NOT compiled or run here (no Swift compiler).
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
diff -r "$work/generated/swift/Sources" "$swift_dir/Sources"
diff -r "$work/generated/kotlin/src" bindings/kotlin/src
echo "ok: $swift_dir/Sources and bindings/kotlin/src are up to date (bindings/swift/generate.sh regenerates them)"

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
# Against the cdylib (what Kotlin/JNA loads).
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

echo
echo "swift/ffi checks passed (the XCTest suite in $swift_dir/Tests needs a Swift toolchain and was not run)"
