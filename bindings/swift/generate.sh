#!/usr/bin/env bash
# Builds the keystead-ffi library (release) and regenerates the uniffi bindings from it:
#
#   <out>/swift/Sources/keystead/keystead.swift         the Swift API (module `keystead`)
#   <out>/swift/Sources/keysteadFFI/keysteadFFI.h       the C declarations it calls
#   <out>/swift/Sources/keysteadFFI/keysteadFFI.modulemap   uniffi's module map (for an
#                                                        XCFramework's Headers/module.modulemap)
#   <out>/swift/Sources/keysteadFFI/module.modulemap    the same plus `link "keystead_ffi"`,
#                                                        for SwiftPM's system-library target
#
# Usage: bindings/swift/generate.sh [--out-dir DIR]
#   Without --out-dir it writes into bindings/swift (the committed copies);
#   scripts/test-swift.sh passes a temporary directory and diffs the result against them.
# Prints the path of the built library on its last line of output.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out_dir=
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out-dir) out_dir=$2; shift 2 ;;
        *) echo "usage: $0 [--out-dir DIR]" >&2; exit 2 ;;
    esac
done

cd "$root"
cargo_flags=()
if [[ "${CI:-}" == true ]]; then cargo_flags+=(--locked); fi

case "$(uname -s)" in
    Darwin) lib_file=libkeystead_ffi.dylib ;;
    *) lib_file=libkeystead_ffi.so ;;
esac
target_dir=$(cargo metadata --format-version 1 --no-deps "${cargo_flags[@]}" |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
library="$target_dir/release/$lib_file"

# The library in release, as shipped. The generator reads the interface out of it, so the
# generator's own build profile does not matter (debug is quicker to build).
cargo build --release -p keystead-ffi "${cargo_flags[@]}" >&2
cargo build -p uniffi-bindgen "${cargo_flags[@]}" >&2
bindgen="$target_dir/debug/uniffi-bindgen"

swift_out=${out_dir:+$out_dir/swift}
swift_out=${swift_out:-$root/bindings/swift}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# --no-format: the output must not depend on whether swiftformat is installed.
"$bindgen" generate --library "$library" --language swift --no-format --out-dir "$scratch/swift" >&2

mkdir -p "$swift_out/Sources/keystead" "$swift_out/Sources/keysteadFFI"
cp "$scratch/swift/keystead.swift" "$swift_out/Sources/keystead/keystead.swift"
cp "$scratch/swift/keysteadFFI.h" "$scratch/swift/keysteadFFI.modulemap" \
    "$swift_out/Sources/keysteadFFI/"
# SwiftPM's system-library target (Linux) needs a file named module.modulemap that also says
# which library to link.
cat >"$swift_out/Sources/keysteadFFI/module.modulemap" <<'MODULEMAP'
// Written by bindings/swift/generate.sh: the module map of SwiftPM's system-library target
// (used on Linux), linking libkeystead_ffi. keysteadFFI.modulemap is uniffi's own, for the
// XCFramework's Headers/module.modulemap.
module keysteadFFI {
    header "keysteadFFI.h"
    link "keystead_ffi"
    export *
}
MODULEMAP

echo "$library"
