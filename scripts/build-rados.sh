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

# node-gyp ships inside npm; use that copy rather than downloading one.
npm_dir="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
node_gyp=(node "$npm_dir/node_modules/node-gyp/bin/node-gyp.js")
[ -f "$npm_dir/node_modules/node-gyp/bin/node-gyp.js" ] || node_gyp=(npm exec --yes -- node-gyp)

# Node-API is ABI-stable, so any installed headers with node_api.h will do; prefer the
# running Node's own. Without any, node-gyp downloads the headers of the running Node.
node_prefix="$(dirname "$(dirname "$(node -p process.execPath)")")"
nodedir_args=()
for candidate in "$node_prefix" "$node_prefix"/node_modules/node-*/ /usr/local /usr; do
  candidate="${candidate%/}"
  if [ -f "$candidate/include/node/node_api.h" ]; then
    nodedir_args=(--nodedir="$candidate")
    break
  fi
done

echo "build-rados: node-gyp rebuild in $native_dir ${nodedir_args[*]}" >&2
"${node_gyp[@]}" rebuild --directory "$native_dir" "${nodedir_args[@]}" --loglevel=warn
version="$(node -e 'console.log(require(process.argv[1]).libradosVersion)' "$PWD/$addon")"
echo "build-rados: built $addon (librados $version)" >&2
