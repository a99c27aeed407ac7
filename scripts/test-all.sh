#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian/Ubuntu machine, then runs all
# of it (`npm test`: tsc, eslint, vitest). The second quick-start command of README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

# Debian packages the tests use, and why:
test_debian_packages=(
  util-linux # flock(1): the file backend's cross-process volume locks (engine/blocker/flock.ts)
  qemu-utils # qemu-img and qemu-nbd: interoperability tests of the NBD server (engine/nbd, coming)
)

ensure_node
ensure_debian_packages "${test_debian_packages[@]}"
echo "okeanos: node $(node --version), npm $(npm --version)" >&2
# Always a clean install here: the suite must pass on exactly what package-lock.json pins.
npm_install_locked
npm test
