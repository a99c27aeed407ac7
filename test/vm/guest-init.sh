#!/bin/sh
# /init of the test guest (build-guest.sh packs it into the initramfs with busybox-static).
# PID 1, busybox ash, no root filesystem: it mounts the virtio disk /dev/vda, does the task the
# kernel command line names, prints one result line on the serial console and powers off.
#
#   okeanos.task=write  mke2fs /dev/vda, then write token.txt (okeanos.token) and seq.txt
#                       (`seq 1 N`, N from okeanos.lines), sync, umount.
#   okeanos.task=check  mount /dev/vda, print token.txt and seq.txt's sha256; with
#                       okeanos.note=WORD also write note.txt (a write to a clone), sync, umount.
#   okeanos.task=live   mount /dev/vda (ext4, made on the host: a journal, so a snapshot taken
#                       mid-write is a crash the clone recovers from), write token.txt and
#                       seq.txt, sync, print the READY line; then write and sync after-N.txt
#                       files, printing a PROGRESS line after each, until a line arrives on the
#                       console (the test writes one to qemu's stdin); then write okeanos.note
#                       to post.txt, sync, umount.
#
# Result lines, the contract with vm.test.ts (values never contain spaces):
#   OKEANOS-VM: write-done token=T sha256=H
#   OKEANOS-VM: check-done token=T sha256=H note=N
#   OKEANOS-VM: live-done token=T sha256=H after=N note=N
#   OKEANOS-VM: error MESSAGE
# and, from the live task while it runs (not result lines):
#   OKEANOS-VM-READY: sha256=H       token.txt and seq.txt are written and synced
#   OKEANOS-VM-PROGRESS: N           after-N.txt is written and synced
# The lines are printed only after umount returned, so the data has reached the disk (umount
# syncs and issues a cache flush, which qemu turns into NBD_CMD_FLUSH).

# The initramfs has no /dev/console node (building it needs no root): PID 1 starts without
# stdio, so mount devtmpfs first, then take the console.
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

disk=/dev/vda

say() { echo "OKEANOS-VM: $*"; }
halt_now() { sync; poweroff -f; sleep 10; }
fail() { say "error $*"; halt_now; }

# Modules in dependency order, written by build-guest.sh (empty when all are built in).
while read -r module; do
  [ -n "$module" ] || continue
  insmod "/lib/modules/$module" || fail "insmod-$module"
done </etc/okeanos-modules

task=
token=
lines=
note=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    okeanos.task=*) task=${arg#*=} ;;
    okeanos.token=*) token=${arg#*=} ;;
    okeanos.lines=*) lines=${arg#*=} ;;
    okeanos.note=*) note=${arg#*=} ;;
  esac
done

# virtio_blk probes while insmod runs, but the node may appear a moment later.
tries=0
while [ ! -b "$disk" ]; do
  tries=$((tries + 1))
  [ "$tries" -le 100 ] || fail "no-$disk"
  sleep 0.1
done

mount_disk() {
  mount -t ext2 "$disk" /mnt 2>/dev/null || mount -t ext4 "$disk" /mnt || fail "mount"
}

case "$task" in
  write)
    [ -n "$token" ] && [ -n "$lines" ] || fail "no-token-or-lines"
    mke2fs -q -L okeanos "$disk" >/dev/null || fail "mke2fs"
    mount_disk
    echo "$token" >/mnt/token.txt || fail "write-token"
    seq 1 "$lines" >/mnt/seq.txt || fail "write-seq"
    sync
    sha=$(sha256sum /mnt/seq.txt | cut -d' ' -f1)
    umount /mnt || fail "umount"
    say "write-done token=$token sha256=$sha"
    ;;
  check)
    mount_disk
    found=$(cat /mnt/token.txt) || fail "read-token"
    sha=$(sha256sum /mnt/seq.txt | cut -d' ' -f1) || fail "read-seq"
    if [ -n "$note" ]; then
      echo "$note" >/mnt/note.txt || fail "write-note"
      sync
    fi
    umount /mnt || fail "umount"
    say "check-done token=$found sha256=$sha note=${note:--}"
    ;;
  live)
    [ -n "$token" ] && [ -n "$lines" ] && [ -n "$note" ] || fail "no-token-lines-or-note"
    mount -t ext4 "$disk" /mnt || fail "mount-ext4"
    echo "$token" >/mnt/token.txt || fail "write-token"
    seq 1 "$lines" >/mnt/seq.txt || fail "write-seq"
    sync || fail "sync"
    sha=$(sha256sum /mnt/seq.txt | cut -d' ' -f1)
    echo "OKEANOS-VM-READY: sha256=$sha"
    n=0
    # Write without pause; look for the host's line between writes (busybox read takes 0.1 s).
    while ! read -t 0.1 reply; do
      n=$((n + 1))
      seq 1 2000 >"/mnt/after-$n.txt" || fail "write-after-$n"
      sync || fail "sync-after-$n"
      echo "OKEANOS-VM-PROGRESS: $n"
    done
    echo "$note" >/mnt/post.txt || fail "write-post"
    sync || fail "sync-post"
    umount /mnt || fail "umount"
    say "live-done token=$token sha256=$sha after=$n note=$note"
    ;;
  *)
    fail "unknown-task-${task:-none}"
    ;;
esac
halt_now
