#!/bin/sh
# /init of the test guest (build-guest.sh packs it into the initramfs with busybox-static).
# PID 1, busybox ash, no root filesystem: it mounts the virtio disk /dev/vda, does the task the
# kernel command line names, prints one result line on the serial console and powers off
# (the cloud task stays running until the ACPI power button).
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
#   okeanos.task=cloud  a server of okeanos's compute service (test/vm/compute.test.ts): read the
#                       NoCloud seed (an ISO 9660 disk labelled cidata: meta-data's
#                       local-hostname and instance-id, and the SSH keys of meta-data's
#                       public-keys and user-data's ssh_authorized_keys), set the hostname,
#                       mount /dev/vda (ext4, made on the host), write the keys to
#                       /root/.ssh/authorized_keys on it, read /marker.txt, write okeanos.note
#                       (if given) to /marker.txt, sync, print the cloud line; then stay
#                       running until the ACPI power button is pressed (the compute service's
#                       stop), unmount and power off. Meanwhile it watches for hot-plugged
#                       disks as the watch task does (test/vm/volumes.test.ts).
#   okeanos.task=watch  touch no disk; print a DISK line whenever a virtio disk other than
#                       /dev/vda and the seed appears or goes (hot-plug, compute/qemu/disks.ts),
#                       and write a marker at the start of each new one when okeanos.note is
#                       given (compute/qemu/hotplug.test.ts); forever.
#
# Result lines, the contract with vm.test.ts and compute.test.ts (values never contain spaces):
#   OKEANOS-VM: write-done token=T sha256=H
#   OKEANOS-VM: check-done token=T sha256=H note=N
#   OKEANOS-VM: live-done token=T sha256=H after=N note=N
#   OKEANOS-VM: cloud hostname=H instance=I key-sha256=S found=M
#   OKEANOS-VM: error MESSAGE
# where S is the sha256 of authorized_keys as written (the distinct keys in the order met,
# meta-data's first, one a line, each ending in a newline) and M is what /marker.txt held
# before (`none` when it did not exist).
# and, from the live task while it runs (not result lines):
#   OKEANOS-VM-READY: sha256=H       token.txt and seq.txt are written and synced
#   OKEANOS-VM-PROGRESS: N           after-N.txt is written and synced
# and, from the cloud task once it has printed its line:
#   OKEANOS-VM-POWER: waiting DEVICE  it waits for the power button on /dev/input/DEVICE
#   OKEANOS-VM-POWER: none            no power button found: it sleeps until killed
#   OKEANOS-VM-POWER: pressed         the button was pressed: unmounting, powering off
# and, from the watch task and the cloud task (after its line), about other virtio disks:
#   OKEANOS-VM-DISK: watching                            the watch has begun
#   OKEANOS-VM-DISK: added DEV serial=S marker=written|none
#   OKEANOS-VM-DISK: removed DEV serial=S
# where S is the disk's virtio serial (/sys/block/DEV/serial: compute sets the volume's id)
# and the marker, one 512-byte block at offset 0 written with fsync (a cache flush, so NBD
# FLUSH), is the line `okeanos-disk-marker serial=S note=N` padded with zero bytes.
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

# ── the cloud task ────────────────────────────────────────────────────────────
seed_dir=/seed

# The NoCloud seed: by its label (blkid, when the busybox build has it: LABEL="cidata"), else the first
# /dev/vdb…vdz holding an ISO 9660 file system with a meta-data file.
mount_seed() {
  mkdir -p "$seed_dir"
  for device in $(blkid 2>/dev/null | awk -F: 'tolower($0) ~ /label="cidata"/ { print $1 }') /dev/vd[b-z]; do
    [ -b "$device" ] || continue
    if mount -t iso9660 -o ro "$device" "$seed_dir" 2>/dev/null; then
      [ -f "$seed_dir/meta-data" ] && return 0
      umount "$seed_dir"
    fi
  done
  return 1
}

# A YAML scalar as the seed writes it: double-quoted (a JSON string, compute/qemu/nocloud.ts),
# single-quoted or plain; only \" and \\ are unescaped (enough for hostnames and keys).
yaml_scalar() {
  sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' \
    -e '/^".*"$/ { s/^"//; s/"$//; s/\\"/"/g; s/\\\\/\\/g; }' \
    -e "/^'.*'\$/ { s/^'//; s/'\$//; s/''/'/g; }"
}

# The value of a top-level `KEY: value` line of FILE.
yaml_value() {
  sed -n "s/^$1:[[:space:]]*//p" "$2" | head -n 1 | yaml_scalar
}

# The items of a top-level `KEY:` block list of FILE (`  - item` lines), one a line.
yaml_list() {
  awk -v key="$1:" '
    $0 ~ /^[^ #-]/ { inside = ($1 == key) ; next }
    inside && /^[[:space:]]*-[[:space:]]/ { sub(/^[[:space:]]*-[[:space:]]*/, ""); print }
  ' "$2" | while IFS= read -r item; do printf '%s\n' "$item" | yaml_scalar; done
}

# Blocks until the ACPI power button (button.ko's input device, read through evdev): any
# event from it is a press. Prints the device, or returns 1 when there is none.
wait_power_button() {
  for name in /sys/class/input/event*/device/name; do
    [ -f "$name" ] || continue
    if [ "$(cat "$name")" = "Power Button" ]; then
      event=${name#/sys/class/input/}
      event=${event%%/*}
      echo "OKEANOS-VM-POWER: waiting $event"
      # One input_event struct (24 bytes on x86-64): the press.
      dd if="/dev/input/$event" of=/dev/null bs=24 count=1 2>/dev/null
      return 0
    fi
  done
  return 1
}

# The watch: every half second, the virtio disks other than vda and the seed (serial cidata),
# each as NAME=SERIAL; a new one is marked and reported, a vanished one reported.
watch_disks() {
  echo "OKEANOS-VM-DISK: watching"
  seen=" "
  while :; do
    now=" "
    for dir in /sys/block/vd*; do
      [ -d "$dir" ] || continue
      name=${dir##*/}
      [ "$name" = vda ] && continue
      serial=$(cat "$dir/serial" 2>/dev/null)
      [ "$serial" = cidata ] && continue
      now="$now$name=$serial "
      case "$seen" in *" $name=$serial "*) continue ;; esac
      marker=none
      if [ -n "$note" ] && [ -b "/dev/$name" ]; then
        printf 'okeanos-disk-marker serial=%s note=%s\n' "$serial" "$note" |
          dd of="/dev/$name" bs=512 conv=sync,fsync 2>/dev/null && marker=written
      fi
      echo "OKEANOS-VM-DISK: added $name serial=$serial marker=$marker"
    done
    for entry in $seen; do
      case "$now" in *" $entry "*) ;; *) echo "OKEANOS-VM-DISK: removed ${entry%%=*} serial=${entry#*=}" ;; esac
    done
    seen=$now
    sleep 0.5
  done
}

cloud() {
  # The seed's virtio disk may appear a moment after /dev/vda.
  tries=0
  until mount_seed; do
    tries=$((tries + 1))
    [ "$tries" -le 50 ] || fail "no-seed"
    sleep 0.2
  done
  [ -f "$seed_dir/meta-data" ] || fail "no-meta-data"
  hostname=$(yaml_value local-hostname "$seed_dir/meta-data")
  instance=$(yaml_value instance-id "$seed_dir/meta-data")
  [ -n "$hostname" ] && [ -n "$instance" ] || fail "no-hostname-or-instance-id"
  keys=$(
    {
      yaml_list public-keys "$seed_dir/meta-data"
      if [ -f "$seed_dir/user-data" ] && head -n 1 "$seed_dir/user-data" | grep -q '^#cloud-config'; then
        yaml_list ssh_authorized_keys "$seed_dir/user-data"
      fi
    } | awk 'NF > 0 && !seen[$0]++'
  )
  hostname "$hostname" || fail "hostname"
  mount -t ext4 "$disk" /mnt || fail "mount-ext4"
  mkdir -p /mnt/root/.ssh || fail "mkdir-ssh"
  chmod 700 /mnt/root/.ssh
  if [ -n "$keys" ]; then printf '%s\n' "$keys" >/mnt/root/.ssh/authorized_keys; else : >/mnt/root/.ssh/authorized_keys; fi || fail "write-keys"
  chmod 600 /mnt/root/.ssh/authorized_keys
  key_sha=$(sha256sum /mnt/root/.ssh/authorized_keys | cut -d' ' -f1)
  found=none
  if [ -f /mnt/marker.txt ]; then found=$(cat /mnt/marker.txt) || fail "read-marker"; fi
  if [ -n "$note" ]; then echo "$note" >/mnt/marker.txt || fail "write-marker"; fi
  # A journal commit and a cache flush (NBD_CMD_FLUSH): a snapshot taken after the line has it.
  sync || fail "sync"
  say "cloud hostname=$(hostname) instance=$instance key-sha256=$key_sha found=${found:-none}"
  watch_disks &
  watcher=$!
  if wait_power_button; then
    kill "$watcher"
    echo "OKEANOS-VM-POWER: pressed"
  else
    echo "OKEANOS-VM-POWER: none"
    while :; do sleep 3600; done
  fi
  umount /mnt || fail "umount"
  umount "$seed_dir"
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
  cloud)
    cloud
    ;;
  watch)
    watch_disks
    ;;
  *)
    fail "unknown-task-${task:-none}"
    ;;
esac
halt_now
