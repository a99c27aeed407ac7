#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian/Ubuntu machine, then runs all
# of it (`npm test`: tsc, eslint, vitest). The second quick-start command of README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

# Debian packages the tests use, and why:
test_debian_packages=(
  util-linux # flock(1): the file backend's cross-process volume locks (engine/blocker/flock.ts)
  qemu-utils       # qemu-io, qemu-img, qemu-nbd: NBD interoperability tests (engine/nbd/interop.test.ts)
  libnbd-bin       # nbdinfo, nbdcopy, nbdsh: NBD interoperability tests
  fio              # fio's nbd engine: verified random writes at queue depth 32 (engine/nbd/interop.test.ts)
  wrk              # not the tests: 4 KiB PUT/GET requests/s of the object store in bench/pithos.bench.ts
  python3-libnbd   # nbdsh's Python bindings (nbdsh -c scripts)
  qemu-system-x86  # a real VM booted from a volume over NBD (test/vm)
  e2fsprogs        # debugfs: read the guest's files out of an exported volume (test/vm)
  python3-openstackclient # the real `openstack` client against okeanos serve (identity/real-clients.test.ts)
  python3-swiftclient     # the real `swift` client: v1 and Keystone v3 auth (identity/real-clients.test.ts)
  rclone           # rclone with a swift remote: sync up/down and check against the object store (gateways/pithos)
  postgresql       # every database test runs on PostgreSQL too; the tests start their own server (db/testing)
  openssl          # throwaway CA and certificates for the NBD TLS tests (engine/nbd/testing/pki.ts)
  ca-certificates  # apt-get download of the guest kernel and busybox (test/vm/build-guest.sh)
  ceph-mon         # the monitor of the single-host test cluster (scripts/dev-ceph.sh, engine/blocker/rados)
  ceph-osd         # its one OSD (memstore); pulls in ceph-base for monmaptool and ceph-authtool
  ceph-common      # ceph and rados: dev-ceph.sh creates the pool and probes it
  uuid-runtime     # uuidgen: the cluster's fsid and the OSD's uuid (scripts/dev-ceph.sh)
  iproute2         # ss: dev-ceph.sh picks free ports for the monitor
  librados-dev     # librados headers: the rados backend's native addon (scripts/build-rados.sh)
  g++              # node-gyp compiles that addon (C++) and the NBD server's (C, scripts/build-nbd-addon.sh)
  make             # node-gyp builds through make
  python3          # node-gyp runs gyp, a Python program
  genisoimage      # the compute driver's cloud-init NoCloud seed disk (compute/qemu)
)

ensure_node
ensure_debian_packages "${test_debian_packages[@]}"
echo "okeanos: node $(node --version), npm $(npm --version)" >&2
# Always a clean install here: the suite must pass on exactly what package-lock.json pins.
npm_install_locked
# The rados backend's optional native addon: npm ci does not build it (machines without
# librados must install), the rados tests need it. They run on a single-host Ceph that the
# suite starts (vitest globalSetup, scripts/dev-ceph.sh), and fail rather than skip here.
scripts/build-rados.sh
# The NBD server's optional addon (a connection's socket send buffer): its tests fail under
# CI=true without it, and the interop and benchmark runs should measure what users get.
scripts/build-nbd-addon.sh
export OKEANOS_TEST_CEPH="${OKEANOS_TEST_CEPH:-1}"
npm test
