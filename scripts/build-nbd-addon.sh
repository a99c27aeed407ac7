#!/usr/bin/env bash
# Builds the NBD server's optional native addon (engine/nbd/native: Node-API in C, no
# libraries) into engine/nbd/native/build/Release/okeanos_socket.node. It sets the kernel
# send buffer of unix-socket connections, which Node cannot: large READ replies then go out
# in one write (docs/nbd.md, "Speed"). Without it the server runs on the kernel's default.
#
#   scripts/build-nbd-addon.sh            installs a C compiler, make and python3 when missing
#                                         (apt-get, as root or through sudo), then builds (~5 s)
#   scripts/build-nbd-addon.sh --if-able  builds only if those are already here, else says so
#                                         and exits 0 (the demo: no compiler installed for it)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

native_dir=engine/nbd/native
addon="$native_dir/build/Release/okeanos_socket.node"

missing=()
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "${1:-}" = "--if-able" ]; then
    echo "build-nbd-addon: skipped (no ${missing[*]}): the NBD server keeps the kernel's socket send buffer; scripts/build-nbd-addon.sh installs them and builds it" >&2
    exit 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "build-nbd-addon: missing ${missing[*]} and no apt-get here: install a C compiler, make and python3" >&2
    exit 1
  fi
  ensure_debian_packages "${missing[@]}"
fi

ensure_node
if [ "${1:-}" = "--if-able" ]; then
  if ! node_gyp_rebuild "$native_dir" build-nbd-addon; then
    echo "build-nbd-addon: the build failed (above); the NBD server keeps the kernel's socket send buffer" >&2
    exit 0
  fi
else
  node_gyp_rebuild "$native_dir" build-nbd-addon
fi
node -e 'const a = require(process.argv[1]); if (typeof a.setSendBufferBytes !== "function") process.exit(1)' "$PWD/$addon"
echo "build-nbd-addon: built $addon" >&2
