#!/usr/bin/env bash
# Provides a Swift toolchain without touching the host: a Debian trixie chroot with swiftlang
# (Debian 12 has no Swift, and installing trixie's swiftlang on the host would replace its libc).
# Built once into a cache directory outside the repository and reused; rebuilt when missing,
# incomplete, or when its recorded Swift version is not the one wanted here.
#
#   scripts/swift-chroot.sh          # prints the chroot's path on its last line
#
# Needs root (debootstrap and chroot) and the network access apt already has: the Debian
# mirror is read from the host's apt sources, not named here.
# Environment: KEYSTEAD_SWIFT_CHROOT (the cache directory, default
# /var/cache/keystead/swift-trixie), KEYSTEAD_SWIFT_VERSION (wanted, default below).
set -euo pipefail

want=${KEYSTEAD_SWIFT_VERSION:-6.0.3}
dir=${KEYSTEAD_SWIFT_CHROOT:-/var/cache/keystead/swift-trixie}
stamp=$dir/.keystead-swift-version

fail() {
    echo "swift-chroot: $*" >&2
    exit 1
}

if [[ "$(id -u)" != 0 ]]; then
    fail "needs root to build and enter the chroot (debootstrap, chroot, mount /proc); run as root, or set KEYSTEAD_SKIP_SWIFT=1 to skip the Swift tests"
fi

# /usr/bin/swift is an absolute symlink (alternatives): look at it from inside the chroot.
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
    && chroot "$dir" /usr/bin/test -x /usr/bin/swift 2>/dev/null; then
    echo "swift-chroot: reusing $dir (Swift $want)" >&2
    echo "$dir"
    exit 0
fi

start=$(date +%s)
echo "swift-chroot: building a Debian trixie chroot with Swift $want in $dir (a few minutes, once)" >&2

mirror=
for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    # The first URIs line of a stanza for the main archive (not the security one).
    mirror=$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' "$f")
    [[ -n "$mirror" ]] && break
done
if [[ -z "$mirror" && -f /etc/apt/sources.list ]]; then
    mirror=$(awk '$1 == "deb" && $2 !~ /^\[/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list)
fi
[[ -n "$mirror" ]] || fail "could not find the Debian mirror in the host's apt sources"

if ! command -v debootstrap >/dev/null; then
    echo "swift-chroot: installing debootstrap on the host" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
        || fail "apt-get install debootstrap failed"
fi

# Built beside the cache directory and moved into place when complete, so that an interrupted
# build never looks like a usable chroot.
build=$dir.build
if mountpoint -q "$build/proc" 2>/dev/null; then umount "$build/proc"; fi
rm -rf "$build"
mkdir -p "$(dirname "$dir")"
cleanup() {
    if mountpoint -q "$build/proc" 2>/dev/null; then umount "$build/proc" || true; fi
}
trap cleanup EXIT

debootstrap --variant=minbase trixie "$build" "$mirror" >"$build.log" 2>&1 \
    || { tail -n 20 "$build.log" >&2; fail "debootstrap failed (log: $build.log)"; }
mount -t proc proc "$build/proc"
chroot "$build" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends swiftlang libc6-dev libstdc++-14-dev' \
    >>"$build.log" 2>&1 \
    || { tail -n 20 "$build.log" >&2; fail "installing swiftlang in the chroot failed (log: $build.log)"; }
version=$(chroot "$build" /usr/bin/swift --version 2>&1 | sed -n 's/.*Swift version \([0-9][0-9.]*\).*/\1/p' | head -n 1)
umount "$build/proc"
if [[ "$version" != "$want" ]]; then
    fail "trixie's swiftlang gives Swift '${version:-?}', not $want: check the Swift tests against it and update KEYSTEAD_SWIFT_VERSION in $0"
fi
chroot "$build" apt-get clean >/dev/null 2>&1 || true
echo "$version" >"$build/.keystead-swift-version"

if mountpoint -q "$dir/proc" 2>/dev/null; then umount "$dir/proc"; fi
rm -rf "$dir"
mv "$build" "$dir"
rm -f "$build.log"
echo "swift-chroot: built in $(( $(date +%s) - start )) s" >&2
echo "$dir"
