#!/usr/bin/env bash
# The first quick-start command of README.md: installs what okeanos needs, shows the engine's
# work on the embedded default store (a directory, ./data): a raw disk image imported as
# deduplicated blocks, a snapshot, two clones that copy no data, a hash, a diff against an
# updated image, an export that matches the original, and what it all costs in the store —
# then runs `okeanos serve` over that store until Ctrl-C: every API on port 8080 (identity,
# the object store) and every volume over NBD, printing where each listens and how to log in.
# OKEANOS_DEMO_SERVE=0 stops after the engine part.
#
# Re-runnable: an existing store at $OKEANOS_STORE (default file:./data) is kept; only the
# demo-* volumes this script made before are replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

ensure_node
ensure_debian_packages util-linux # flock(1): the file store's volume locks
ensure_npm_dependencies
# Optional speed-up of large NBD reads; built only if a C compiler is already here.
scripts/build-nbd-addon.sh --if-able

repo="$PWD"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

okeanos() {
  printf '\n$ okeanos %s\n' "$*"
  node "$repo/bin/okeanos.js" "$@"
}

# A 64 MiB "disk": 8 MiB of data, a copy of its first 4 MiB at 32 MiB (the same block
# twice: stored once), zeros (holes) elsewhere. Its update changes 1 MiB at 48 MiB.
image="$work/disk.raw"
head -c 8M /dev/urandom >"$image"
dd if="$image" of="$image" bs=1M count=4 seek=32 conv=notrunc status=none
truncate -s 64M "$image"
update="$work/disk-update.raw"
cp "$image" "$update"
dd if=/dev/urandom of="$update" bs=1M count=1 seek=48 conv=notrunc status=none

if node "$repo/bin/okeanos.js" store stats >/dev/null 2>&1; then
  echo "Using the existing store; replacing its demo-* volumes"
  for name in demo-vm2 demo-vm1 demo-golden demo-image demo-update; do
    node "$repo/bin/okeanos.js" volume delete "$name" >/dev/null 2>&1 || true
  done
else
  okeanos store init
fi
okeanos volume import "$image" demo-image
okeanos volume snapshot demo-image demo-golden
okeanos volume clone demo-golden demo-vm1
okeanos volume clone demo-golden demo-vm2 --size 128M
okeanos volume hash demo-golden
okeanos volume import "$update" demo-update
okeanos volume diff demo-golden demo-update
okeanos volume list
okeanos volume export demo-vm1 "$work/vm1.raw"
cmp "$image" "$work/vm1.raw" && echo "(the export of demo-vm1 is byte-identical to the imported disk)"
okeanos store stats

if [[ "${OKEANOS_DEMO_SERVE:-1}" != 0 ]]; then
  printf '\n$ okeanos serve\n'
  exec node "$repo/bin/okeanos.js" serve
fi
