#!/usr/bin/env bash
# The main job on an embedded default, with no registry and no network: builds strata, makes
# an image from Debian's static busybox, runs a container on the strata union filesystem,
# and shows the layering: what the container writes is in its own layer (strata diff), not
# in the image; a commit makes a new image on top of the old one.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "scripts/demo.sh: run as root (containers need namespaces and cgroups)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
need=()
command -v fusermount3 >/dev/null || need+=(fuse3)
[ -x /bin/busybox ] || need+=(busybox-static)
pkg-config --exists libseccomp 2>/dev/null || need+=(libseccomp-dev pkg-config)
command -v protoc >/dev/null || need+=(protobuf-compiler)
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
cargo build --release -q
strata="$PWD/target/release/strata"

demo=$(mktemp -d /tmp/strata-demo.XXXXXX)
store="$demo/store"
trap 'rm -rf "$demo"' EXIT
S() { "$strata" --root "$store" "$@"; }

# The embedded default image: busybox plus a few files, as a plain rootfs tarball.
root="$demo/rootfs"
mkdir -p "$root"/{bin,etc,proc,dev,sys,tmp,root}
cp /bin/busybox "$root/bin/"
for a in sh ls cat echo id hostname ps wc rm mkdir; do ln -s busybox "$root/bin/$a"; done
echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
echo "root:x:0:" > "$root/etc/group"
echo "strata demo image" > "$root/etc/motd"
tar -C "$root" -cf "$demo/rootfs.tar" .

echo "== import the image"
S image import "$demo/rootfs.tar" --tag demo:1
S images

echo "== run a container: it writes a file and removes another"
S run --network none --name web --hostname demo demo:1 sh -c 'echo "PID $$ on $(hostname)"; echo hello > /root/hello; rm /etc/motd; ls /root /etc'

echo "== strata diff web: the changes live in the container's writable layer"
S diff web

echo "== the image is unchanged: a fresh container still has /etc/motd and no /root/hello"
S run --rm --network none demo:1 sh -c 'cat /etc/motd; ls /root'

echo "== commit the container as a new image on top of the old one, and run it"
S commit web demo:2 >/dev/null
S run --rm --network none demo:2 sh -c 'cat /root/hello; ls /etc'
S image history demo:2
S rm web >/dev/null
echo "== no container, no mount left behind:"
S ps -a
grep -c "$store" /proc/self/mountinfo || true
