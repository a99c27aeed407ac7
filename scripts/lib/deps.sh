# Sourced by scripts/*.sh: installs what okeanos needs on a Debian/Ubuntu machine.
# Idempotent: installs nothing that is already there, runs apt-get update only when
# something is missing, and uses sudo only when not root.

node_version_min="22.18.0"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

debian_package_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# ensure_debian_packages PKG…: apt-get installs those of PKG… that are missing.
ensure_debian_packages() {
  local missing=() package
  for package in "$@"; do
    debian_package_installed "$package" || missing+=("$package")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "okeanos: installing Debian packages: ${missing[*]}" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

node_is_recent() {
  command -v node >/dev/null 2>&1 && node -e '
    const want = process.argv[1].split(".").map(Number);
    const have = process.versions.node.split(".").map(Number);
    for (let i = 0; i < 3; i++) if (have[i] !== want[i]) process.exit(have[i] > want[i] ? 0 : 1);
  ' "$node_version_min"
}

# ensure_node: a Node.js >= $node_version_min first on PATH. Debian's nodejs is older, so
# Node 24 comes from npm into /usr/local (`npm i -g node@24` alone fails with EEXIST
# where Debian's /usr/bin/node exists; /usr/local/bin comes first on PATH).
ensure_node() {
  case ":$PATH:" in *":/usr/local/bin:"*) ;; *) export PATH="/usr/local/bin:$PATH" ;; esac
  hash -r
  node_is_recent && return 0
  command -v npm >/dev/null 2>&1 || ensure_debian_packages nodejs npm
  echo "okeanos: installing Node.js 24 into /usr/local (found: $(node --version 2>/dev/null || echo none))" >&2
  # node@24 fetches its binary in a preinstall script. npm 11.19 runs it with a warning, but
  # refuses `--allow-scripts=node` there: the flag reaches the script's own nested, project-
  # scoped npm install, which fails with EALLOWSCRIPTS. So plain first; the flag only if an
  # npm that blocks unlisted scripts left no new node behind.
  as_root npm install --global --prefix /usr/local --no-audit --no-fund node@24 || true
  hash -r
  if ! node_is_recent; then
    as_root npm install --global --prefix /usr/local --no-audit --no-fund --allow-scripts=node node@24
    hash -r
  fi
  if ! node_is_recent; then
    echo "okeanos: still no Node.js >= $node_version_min on PATH (node is $(command -v node || echo missing))" >&2
    return 1
  fi
}

# npm_install_locked: installs exactly what package-lock.json pins. package.json pins
# @napi-rs/blake-hash to 1.3.4 and msgpackr-extract to 3.0.3 because the registry here lacks
# some other-platform optional packages of later versions, which makes npm leave them out of
# the lock and then `npm ci` refuse the lock as out of sync.
npm_install_locked() {
  npm ci --no-audit --no-fund
}

# ensure_npm_dependencies: npm_install_locked unless node_modules already matches package-lock.json.
ensure_npm_dependencies() {
  if [ -f node_modules/.package-lock.json ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
    return 0
  fi
  npm_install_locked
}

# node_gyp_rebuild DIR WHO: builds the Node-API addon in DIR with the node-gyp inside npm.
# Node-API is ABI-stable, so any installed headers with node_api.h will do; the running
# Node's own are preferred. Without any, node-gyp downloads the headers of the running Node.
node_gyp_rebuild() {
  local dir="$1" who="$2" npm_dir node_prefix candidate
  npm_dir="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
  local node_gyp=(node "$npm_dir/node_modules/node-gyp/bin/node-gyp.js")
  [ -f "$npm_dir/node_modules/node-gyp/bin/node-gyp.js" ] || node_gyp=(npm exec --yes -- node-gyp)
  node_prefix="$(dirname "$(dirname "$(node -p process.execPath)")")"
  local nodedir_args=()
  for candidate in "$node_prefix" "$node_prefix"/node_modules/node-*/ /usr/local /usr; do
    candidate="${candidate%/}"
    if [ -f "$candidate/include/node/node_api.h" ]; then
      nodedir_args=(--nodedir="$candidate")
      break
    fi
  done
  echo "$who: node-gyp rebuild in $dir ${nodedir_args[*]}" >&2
  "${node_gyp[@]}" rebuild --directory "$dir" "${nodedir_args[@]}" --loglevel=warn
}
