/**
 * The QEMU command line for one instance. Pure: the spec, the instance's paths and the host's
 * choices in, argv out (no shell: only QEMU's own option syntax needs care — a "," inside a
 * value is written ",,").
 *
 * Disks, in PCI slot order (the guest's vda, vdb…): the root disk, the NoCloud seed, then the
 * attached volumes (driver.ts: InstanceSpec.extraDisks) as `-blockdev` nodes and devices named
 * after their attachment, each in the slot of its device (disks.ts): the very node and device
 * a hot-plug adds, so a detach finds it either way.
 *
 * Durability: every NBD disk is `cache=writeback`, which means the guest sees a volatile write
 * cache (virtio-blk offers VIRTIO_BLK_F_FLUSH) and QEMU passes each guest flush down as
 * NBD_CMD_FLUSH (cache.no-flush=off): what a guest's fsync or journal commit acknowledged is
 * on the engine's stable storage. `cache=none` would differ only by O_DIRECT on host files,
 * which an NBD disk does not have; `cache=unsafe` drops flushes and is never used;
 * `writethrough` would flush after every write. `quit` and a guest power-off close the drives,
 * which flushes them; after a SIGKILL only writes the guest never flushed may be lost — as
 * on a real disk losing power.
 */
import type { AttachedDisk, InstanceSpec, NbdDisk } from "../driver.ts";
import { ComputeError } from "../errors.ts";
import { attachedDiskNames, blockdevOptions, checkAttachedDisk, deviceProperties, pciSlotOf, virtioSerial } from "./disks.ts";
import { checkSocketPath, type InstanceLayout } from "./layout.ts";

/** pc (i440fx) takes 255 vCPUs without an IOMMU for x2APIC. */
export const vcpusMax = 255;
/** Below this no Linux kernel boots; a smaller value is a caller's bug or a broken flavor. */
export const ramMiBMin = 16;
/**
 * Each disk is a virtio-blk PCI function of its own: pc's bus has 32 slots, of which the host
 * bridge, PIIX, VGA, the RNG, the root disk and the seed take six; 16 leaves room.
 */
export const extraDisksMax = 16;

export interface HostChoices {
  /** "kvm" when /dev/kvm is usable (falling back to TCG if KVM fails to initialise), else "tcg". */
  accel: "kvm" | "tcg";
  /** How long guest I/O waits for a vanished NBD server to come back before it fails (qemu's reconnect-delay). */
  nbdReconnectDelaySeconds: number;
}

/** A value inside a QEMU option string (QemuOpts: "," separates, ",," is a literal comma). */
export function optionValue(value: string): string {
  return value.replaceAll(",", ",,");
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function checkSpec(spec: InstanceSpec): void {
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1 || spec.vcpus > vcpusMax) {
    throw new ComputeError("EBAD_REQUEST", `vcpus must be an integer from 1 to ${vcpusMax}, not ${spec.vcpus}`);
  }
  if (!Number.isInteger(spec.ramMiB) || spec.ramMiB < ramMiBMin) {
    throw new ComputeError("EBAD_REQUEST", `ramMiB must be an integer of at least ${ramMiBMin}, not ${spec.ramMiB}`);
  }
  if (spec.extraDisks.length > extraDisksMax) throw new ComputeError("EBAD_REQUEST", `at most ${extraDisksMax} extra disks, not ${spec.extraDisks.length}`);
  for (const disk of [spec.rootDisk, ...spec.extraDisks]) {
    if (!disk.socketPath.startsWith("/")) {
      // QEMU's -daemonize changes to "/": a relative path would break reconnection.
      throw new ComputeError("EBAD_REQUEST", `an NBD socket path must be absolute: ${disk.socketPath}`);
    }
    checkSocketPath(disk.socketPath, `the NBD socket of export ${disk.exportName}`);
  }
  const taken = new Set<string>();
  for (const disk of spec.extraDisks) {
    checkAttachedDisk(disk);
    const { nodeName } = attachedDiskNames(disk.id);
    const slot = pciSlotOf(disk.device);
    for (const claim of [nodeName, ...(slot === undefined ? [] : [`slot ${slot}`])]) {
      if (taken.has(claim)) throw new ComputeError("EBAD_REQUEST", `two extra disks would both take ${claim} (disk ${disk.id}, device ${disk.device})`);
      taken.add(claim);
    }
  }
}

function nbdDrive(id: string, disk: NbdDisk, host: HostChoices): string {
  return [
    `if=none,id=${id},driver=raw`,
    "file.driver=nbd,file.server.type=unix",
    `file.server.path=${optionValue(disk.socketPath)}`,
    `file.export=${optionValue(disk.exportName)}`,
    `file.reconnect-delay=${host.nbdReconnectDelaySeconds}`,
    // The guest's TRIM reaches NBD_CMD_TRIM: the engine drops the blocks.
    "cache=writeback,discard=unmap",
    ...(disk.readOnly === true ? ["read-only=on"] : []),
  ].join(",");
}

function virtioDisk(driveId: string, serial: string, extra: string[] = []): string {
  return [`virtio-blk-pci,drive=${driveId}`, `serial=${optionValue(virtioSerial(serial))}`, ...extra].join(",");
}

/** An attached volume's device as a `-device` option (QemuOpts: key=value, "," doubled inside values). */
export function attachedDiskDevice(disk: AttachedDisk): string {
  const { driver, ...properties } = deviceProperties(disk);
  return [driver, ...Object.entries(properties).map(([key, value]) => `${key}=${optionValue(value)}`)].join(",");
}

export function qemuArgs(spec: InstanceSpec, layout: InstanceLayout, host: HostChoices): string[] {
  checkSpec(spec);
  const args = [
    // No /etc/qemu configuration, no default devices: everything the guest has is below.
    ...["-no-user-config", "-nodefaults", "-display", "none"],
    ...["-name", `guest=${optionValue(spec.name)},debug-threads=on`],
    ...(uuidPattern.test(spec.id) ? ["-uuid", spec.id] : []), // the guest's SMBIOS system uuid
    ...["-machine", host.accel === "kvm" ? "accel=kvm:tcg" : "accel=tcg"],
    // "max": every feature the accelerator offers (under KVM, the host's CPU): modern
    // distributions need x86-64-v2, which the default qemu64 model lacks.
    ...["-cpu", "max"],
    ...["-smp", String(spec.vcpus), "-m", String(spec.ramMiB)],
    ...["-daemonize", "-pidfile", layout.pidFile],
    // -D keeps the daemon's stderr open on this log (without it -daemonize sends it to /dev/null).
    ...["-D", layout.qemuLog, "-msg", "timestamp=on"],
    ...["-qmp", `unix:${optionValue(layout.qmpSocket)},server=on,wait=off`],
    // No password set yet: nobody can authenticate until vnc() sets one.
    ...["-vnc", `unix:${optionValue(layout.vncSocket)},password=on`, "-vga", "std"],
    ...["-chardev", `file,id=console,path=${optionValue(layout.consoleLog)},append=on`, "-serial", "chardev:console"],
    // Guests seed their RNG early (cloud-init generating SSH host keys); the host's is better.
    ...["-device", "virtio-rng-pci"],
    ...["-drive", nbdDrive("root", spec.rootDisk, host), "-device", virtioDisk("root", spec.rootDisk.exportName, ["bootindex=1"])],
    ...["-drive", `if=none,id=seed,driver=raw,file.driver=file,file.filename=${optionValue(layout.seedIso)},read-only=on`],
    ...["-device", virtioDisk("seed", "cidata")],
  ];
  for (const disk of spec.extraDisks) {
    // -blockdev's JSON form: the options blockdev-add takes, verbatim (no QemuOpts escaping).
    args.push("-blockdev", JSON.stringify(blockdevOptions(disk, host)), "-device", attachedDiskDevice(disk));
  }
  if (spec.kernel !== undefined) {
    args.push("-kernel", spec.kernel.kernelPath);
    if (spec.kernel.initrdPath !== undefined) args.push("-initrd", spec.kernel.initrdPath);
    if (spec.kernel.commandLine !== undefined) args.push("-append", spec.kernel.commandLine);
  }
  return args;
}
