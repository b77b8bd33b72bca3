#!/usr/bin/env bash
# The main job on an embedded default, no network needed: builds strata, makes a two-layer
# image stack from files embedded here, mounts it with strata, changes it, and shows that the
# changes land in the writable layer while the image layers stay untouched.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    command -v fusermount3 >/dev/null || { apt-get update -qq && apt-get install -y -qq fuse3 >/dev/null; }
fi
cargo build --release -q
strata=$PWD/target/release/strata

demo=$(mktemp -d /tmp/strata-demo.XXXXXX)
mkdir -p "$demo"/{base,app,upper,work,merged}
# layer 1: a base "OS"
mkdir -p "$demo"/base/etc "$demo"/base/usr/share/doc
echo "strata-demo 1.0" > "$demo"/base/etc/os-release
echo "base motd" > "$demo"/base/etc/motd
echo "docs" > "$demo"/base/usr/share/doc/README
# layer 2: an "app" on top, which replaces motd and deletes the docs (OCI whiteout)
mkdir -p "$demo"/app/etc "$demo"/app/usr/share "$demo"/app/opt/app
echo "app motd" > "$demo"/app/etc/motd
touch "$demo"/app/usr/share/.wh.doc
echo '#!/bin/sh' > "$demo"/app/opt/app/run

"$strata" mount -o "lowerdir=$demo/app:$demo/base,upperdir=$demo/upper,workdir=$demo/work" "$demo/merged"
trap '"$strata" umount "$demo/merged" 2>/dev/null || true' EXIT

echo "== merged view (app over base):"
(cd "$demo/merged" && find . | sort)
echo "== /etc/motd: $(cat "$demo/merged/etc/motd")"

echo "== changing the merged view: edit os-release, delete motd, move /opt/app, add a file"
echo "edited" >> "$demo/merged/etc/os-release"
rm "$demo/merged/etc/motd"
mv "$demo/merged/opt/app" "$demo/merged/opt/app2"
echo "new" > "$demo/merged/hello"

echo "== writable layer (upper dir) now holds only the changes:"
(cd "$demo/upper" && find . -printf '%y %p\n' | sort)
echo "== image layers are untouched: base motd = '$(cat "$demo/base/etc/motd")', app motd = '$(cat "$demo/app/etc/motd")'"

"$strata" umount "$demo/merged"
trap - EXIT
echo "== remounted with the same writable layer:"
"$strata" mount -o "lowerdir=$demo/app:$demo/base,upperdir=$demo/upper,workdir=$demo/work" "$demo/merged"
(cd "$demo/merged" && find . | sort)
"$strata" umount "$demo/merged"
rm -rf "$demo"
