#!/usr/bin/env bash
# Assembles the test guest from Debian packages: a kernel (linux-image-cloud-amd64) and an
# initramfs of busybox-static, the kernel modules a virtio disk needs, and guest-init.sh as
# /init. The packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
# a cache directory: nothing is installed system-wide.
#
#   bash test/vm/build-guest.sh        prints  kernel=PATH  initrd=PATH  key=KEY  (one a line)
#
# The result is cached under $OKEANOS_VM_CACHE (default ${TMPDIR:-/tmp}/okeanos-vm-cache) in a
# directory named after the package versions and a hash of the guest's scripts, so a rerun
# costs one `apt-cache` look-up. Needs apt-get, apt-cache, dpkg-deb and gzip on the host (any
# Debian); runs `apt-get update` once if apt knows no version of a package and we are root.
# Environment: OKEANOS_VM_KERNEL_PACKAGE (default linux-image-cloud-amd64; linux-image-amd64
# works too, only bigger).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache_root="${OKEANOS_VM_CACHE:-${TMPDIR:-/tmp}/okeanos-vm-cache}"
kernel_meta_package="${OKEANOS_VM_KERNEL_PACKAGE:-linux-image-cloud-amd64}"
busybox_package=busybox-static
# What /init needs from the kernel: the virtio PCI transport and block driver, and a driver
# for busybox mke2fs's ext2 (Debian builds ext4 in, with CONFIG_EXT4_USE_FOR_EXT2); for the
# cloud task, isofs (the NoCloud seed is ISO 9660), and the ACPI power button (button) with
# evdev, through which /init sees the press. Each one is either built in (modules.builtin)
# or packed with its dependencies.
modules_wanted=(virtio_pci virtio_blk ext4 isofs button evdev)

log() { echo "build-guest: $*" >&2; }
die() { log "$*"; exit 1; }

# Prints "KERNEL_PACKAGE KERNEL_VERSION BUSYBOX_VERSION": the versioned kernel package the
# metapackage depends on (linux-image-6.1.0-NN-cloud-amd64 (= V)), and what apt would fetch.
# One apt-cache run (~1 s), since a cached rerun pays for it too.
resolve_packages() {
  apt-cache show --no-all-versions "$kernel_meta_package" "$busybox_package" 2>/dev/null | awk '
    $1 == "Package:" { package = $2 }
    $1 == "Version:" { version[package] = $2 }
    $1 == "Depends:" && package != "busybox-static" {
      n = split(substr($0, 10), alternatives, /, /)
      for (i = 1; i <= n; i++) if (alternatives[i] ~ /^linux-image-[^ ]+ \(= [^)]+\)$/) dep = alternatives[i]
    }
    END {
      if (dep == "" || version["busybox-static"] == "") exit 1
      sub(/[)]$/, "", dep)
      split(dep, parts, / \(= /)
      print parts[1], parts[2], version["busybox-static"]
    }'
}

for tool in apt-get apt-cache dpkg-deb gzip sha256sum; do
  command -v "$tool" >/dev/null || die "needs $tool (a Debian host)"
done
if ! resolved=$(resolve_packages); then
  [ "$(id -u)" -eq 0 ] || die "apt knows no $kernel_meta_package or $busybox_package: run 'apt-get update' as root first"
  log "apt knows no $kernel_meta_package or $busybox_package: running apt-get update"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  resolved=$(resolve_packages) || die "apt cannot resolve $kernel_meta_package and $busybox_package"
fi
read -r kernel_package kernel_version busybox_version <<<"$resolved"

scripts_hash=$(cat "$here/build-guest.sh" "$here/guest-init.sh" | sha256sum | cut -c1-12)
key=$(printf '%s_%s-busybox_%s-%s' "$kernel_package" "$kernel_version" "$busybox_version" "$scripts_hash" | tr -c 'A-Za-z0-9._+-' '_')
out="$cache_root/$key"

print_result() {
  echo "kernel=$out/vmlinuz"
  echo "initrd=$out/initrd.img"
  echo "key=$key"
}

if [ -f "$out/initrd.img" ] && [ -f "$out/vmlinuz" ]; then
  touch "$out" 2>/dev/null || true # in use: keeps it from the pruning below
  print_result
  exit 0
fi

mkdir -p "$cache_root"
# Guests of other package versions or scripts, unused for a week (each is ~15 MB).
find "$cache_root" -mindepth 1 -maxdepth 1 -mtime +7 -exec rm -rf {} + 2>/dev/null || true
work=$(mktemp -d "$cache_root/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "building $key"

# As root, apt would fetch as its _apt user, who cannot write to our private directory.
apt_options=()
[ "$(id -u)" -ne 0 ] || apt_options=(-o APT::Sandbox::User=root)
download() {
  (cd "$work" && apt-get download -q "${apt_options[@]}" "$kernel_package=$kernel_version" "$busybox_package=$busybox_version" >&2)
}
if ! download; then
  # Stale package lists name a version the archive no longer has (security updates replace
  # kernels): refresh them and start over, under the new version's key.
  [ "$(id -u)" -eq 0 ] && [ -z "${OKEANOS_VM_REFRESHED:-}" ] || die "apt-get download failed"
  log "apt-get download failed: running apt-get update and starting over"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  rm -rf "$work"
  trap - EXIT
  OKEANOS_VM_REFRESHED=1 exec bash "$here/build-guest.sh"
fi
dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
dpkg-deb -x "$work"/busybox-static_*.deb "$work/busybox"
busybox="$work/busybox/bin/busybox"
[ -x "$busybox" ] || die "no bin/busybox in $busybox_package"

vmlinuz=$(find "$work/kernel/boot" -name 'vmlinuz-*' | head -n1)
[ -n "$vmlinuz" ] || die "no vmlinuz in $kernel_package"
release=${vmlinuz##*/vmlinuz-}
modules_dir="$work/kernel/lib/modules/$release"
# The package ships modules.builtin but not modules.dep (its postinst runs depmod).
"$busybox" depmod -b "$work/kernel" "$release"

# Staging tree of the initramfs.
stage="$work/stage"
mkdir -p "$stage"/{bin,dev,etc,lib/modules,mnt,proc,sys,tmp}
cp "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$stage/bin/$applet"
done
cp "$here/guest-init.sh" "$stage/init"
chmod 755 "$stage/init"

# Modules in load order: each one after its dependencies (modules.dep lists a module's
# dependencies, transitively, as paths relative to $modules_dir).
declare -A loaded=()
load_order=()
add_module_path() {
  local path=$1 dep
  [ -n "${loaded[$path]:-}" ] && return 0
  loaded[$path]=1
  for dep in $(awk -v p="$path:" '$1 == p { $1 = ""; print }' "$modules_dir/modules.dep"); do
    add_module_path "$dep"
  done
  load_order+=("$path")
}
for module in "${modules_wanted[@]}"; do
  path=$(awk -F: -v m="$module" '{ n = $1; sub(/.*\//, "", n); sub(/\.ko.*$/, "", n); gsub(/-/, "_", n) } n == m { print $1; exit }' "$modules_dir/modules.dep")
  if [ -n "$path" ]; then
    add_module_path "$path"
  elif grep -Eq "/${module//_/[-_]}\.ko$" "$modules_dir/modules.builtin"; then
    log "$module is built in"
  else
    die "$kernel_package has no $module, neither built in nor as a module"
  fi
done
: >"$stage/etc/okeanos-modules"
for path in "${load_order[@]}"; do
  name=${path##*/}
  name=${name%.ko*}.ko
  # Newer Debian kernels compress their modules; busybox insmod takes plain ones.
  case "$path" in
    *.ko) cp "$modules_dir/$path" "$stage/lib/modules/$name" ;;
    *.ko.xz) "$busybox" unxz -c "$modules_dir/$path" >"$stage/lib/modules/$name" ;;
    *.ko.gz) "$busybox" gunzip -c "$modules_dir/$path" >"$stage/lib/modules/$name" ;;
    *) die "cannot decompress $path" ;;
  esac
  echo "$name" >>"$stage/etc/okeanos-modules"
done
log "modules: ${load_order[*]:-none}"

mkdir "$work/result"
(cd "$stage" && find . | LC_ALL=C sort | "$busybox" cpio -o -H newc 2>/dev/null) | gzip -9 >"$work/result/initrd.img"
cp "$vmlinuz" "$work/result/vmlinuz"
# Renaming a whole directory is atomic; a concurrent build of the same key may have won.
mv -T "$work/result" "$out" 2>/dev/null || [ -f "$out/initrd.img" ] || die "cannot create $out"
log "built $out ($(du -h "$out/initrd.img" | cut -f1) initramfs)"
print_result
