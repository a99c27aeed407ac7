#!/usr/bin/env bash
# Builds the rados backend's native addon (engine/blocker/rados/native: node-addon-api
# against librados' C API) into engine/blocker/rados/native/build/Release/okeanos_rados.node.
#
# Optional by design: only `rados:` stores need it. `npm ci` never builds it, so a machine
# without librados installs and runs everything else; opening a rados store without the
# addon fails with ENO_STORE pointing here. Installs what the build needs when it is
# missing (Debian/Ubuntu: apt-get, as root or through sudo), then builds in ~10 s.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

native_dir=engine/blocker/rados/native
addon="$native_dir/build/Release/okeanos_rados.node"

# The build's needs: librados' headers and library, and node-gyp's (a C++ compiler, make, python3).
missing=()
[ -f /usr/include/rados/librados.h ] || missing+=(librados-dev)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "build-rados: missing ${missing[*]} and no apt-get here: install librados' headers, a C++ compiler, make and python3" >&2
    exit 1
  fi
  ensure_debian_packages "${missing[@]}"
fi

ensure_node
[ -d node_modules/node-addon-api ] || ensure_npm_dependencies

node_gyp_rebuild "$native_dir" build-rados
version="$(node -e 'console.log(require(process.argv[1]).libradosVersion)' "$PWD/$addon")"
echo "build-rados: built $addon (librados $version)" >&2
