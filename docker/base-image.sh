#!/bin/sh
# Builds a local stand-in for the official node:20-bookworm-slim image, under that tag, for
# machines that cannot reach Docker Hub: Debian bookworm from Debian's mirror (debootstrap,
# minbase) plus this machine's Node.js laid out as the official image lays it out
# (/usr/local/bin/node, npm and corepack under /usr/local/lib/node_modules, headers under
# /usr/local/include/node). The Dockerfile stays exactly what users with Docker Hub build.
#
# Usage (root): docker/base-image.sh [TAG]      default TAG: node:20-bookworm-slim
# Needs: debootstrap, docker (a running engine), node ≥ 20 on this machine.
set -eu
TAG=${1:-node:20-bookworm-slim}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base-image: $TAG already present"
  exit 0
fi
NODE=$(command -v node)
NODE_PREFIX=$(dirname "$(dirname "$(readlink -f "$NODE")")")
NPM_DIR=$NODE_PREFIX/lib/node_modules/npm
[ -d "$NPM_DIR" ] || { echo "base-image: npm not found next to $NODE" >&2; exit 1; }
ROOTFS=$(mktemp -d /tmp/tunvs-base.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
echo "base-image: debootstrap bookworm from $MIRROR (a few minutes)..."
debootstrap --variant=minbase --include=ca-certificates,libstdc++6 bookworm "$ROOTFS" "$MIRROR" >/dev/null
mkdir -p "$ROOTFS/usr/local/bin" "$ROOTFS/usr/local/lib/node_modules" "$ROOTFS/usr/local/include"
cp "$(readlink -f "$NODE")" "$ROOTFS/usr/local/bin/node"
cp -r "$NPM_DIR" "$ROOTFS/usr/local/lib/node_modules/npm"
[ -d "$NODE_PREFIX/lib/node_modules/corepack" ] && cp -r "$NODE_PREFIX/lib/node_modules/corepack" "$ROOTFS/usr/local/lib/node_modules/"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$ROOTFS/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$ROOTFS/usr/local/bin/npx"
[ -d "$NODE_PREFIX/include/node" ] && cp -r "$NODE_PREFIX/include/node" "$ROOTFS/usr/local/include/node"
# This machine's own CA additions (e.g. a TLS-inspecting egress proxy in front of the npm
# registry): the stand-in trusts what the machine trusts, or npm ci inside a build fails.
# The official image has none; users pulling it from Docker Hub do not need this.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
  chroot "$ROOTFS" update-ca-certificates >/dev/null 2>&1
  mkdir -p "$ROOTFS/usr/local/etc"
  echo "cafile=/etc/ssl/certs/ca-certificates.crt" > "$ROOTFS/usr/local/etc/npmrc"
fi
# as in the official image: apt lists and caches emptied
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin
tar -C "$ROOTFS" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV NODE_VERSION='"$(node -p process.versions.node)" \
  --change 'CMD ["node"]' - "$TAG" >/dev/null
echo "base-image: $TAG built ($(node -v) from this machine on Debian bookworm)"
