/**
 * Attached volumes on a QEMU instance: the same block node and the same device whether the
 * disk is on the command line at start (args.ts: `-blockdev` JSON and `-device`) or hot-plugged
 * later (QMP `blockdev-add` + `device_add`), so `device_del` / `blockdev-del` find it by name
 * after any restart of the service or of the instance.
 *
 *   attachment id ──► node-name `vol-<24 hex>`   raw ── file: nbd (unix socket, export, reconnect-delay)
 *                 └─► device id `disk-<24 hex>`  virtio-blk-pci, serial = volume id, bus pci.0, addr by device
 *
 * The `pc` machine (i440fx) hot-plugs on pci.0 through ACPI (the PIIX4 PM's PCI hotplug,
 * on by default): `device_add` appears in the guest at once (Linux's acpiphp, built into
 * Debian's kernels, scans the slot); `device_del` only *asks* — the guest's kernel ejects
 * the slot, then QEMU deletes the device. A guest that never answers (no ACPI, paused, hung)
 * keeps the disk: unplugDisk gives up after its timeout and says so, and the request stays
 * pending in QEMU (the guest may still honour it; the next detach then finds the device gone).
 *
 * Slots: with -nodefaults, pci.0 holds the host bridge (0), PIIX (1), VGA (2), the RNG (3), the
 * root disk (4) and the seed (5); an attachment's device /dev/vdc…vdr takes slot 6…21, the same
 * at every start and hot-plug, so the guest's PCI path of a volume never changes while it is
 * attached.
 */
import type { AttachedDisk } from "../driver.ts";
import { ComputeError } from "../errors.ts";

/** virtio-blk's serial is VIRTIO_BLK_ID_BYTES = 20 bytes. */
export const serialBytesMax = 20;
/**
 * QEMU's block node names are at most 31 characters (BlockDriverState.node_name[32]); a uuid's
 * 32 hex digits do not fit after a prefix, 24 of them do — 96 random bits, unique among the
 * 16 disks of one instance.
 */
const nameHexDigits = 24;
/** The PCI slot of /dev/vdc; vdd the next… (the header's table). */
export const attachmentPciSlotFirst = 6;
const deviceLetterFirst = "c";
/** The last slot an attachment may take: pc's bus has 32 (0–31). */
const attachmentPciSlotLast = 31;
/** An attached disk's id: the service's attachment uuid, or any id of letters, digits and "-" with enough of them to name it. */
const diskIdPattern = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;
/** Between two looks whether the guest has released an unplugged device. */
const unplugPollMs = 200;

export interface HostDiskChoices {
  nbdReconnectDelaySeconds: number;
}

/** What the driver calls QMP with (one short session per call). */
export type QmpCall = <T = unknown>(command: string, args?: Record<string, unknown>) => Promise<T>;

export function checkAttachedDisk(disk: AttachedDisk): void {
  if (typeof disk.id !== "string" || !diskIdPattern.test(disk.id) || disk.id.replaceAll("-", "").length < nameHexDigits) {
    throw new ComputeError("EBAD_REQUEST", `not a disk id: ${JSON.stringify(disk.id)} (letters, digits and -, at least ${nameHexDigits} letters or digits)`);
  }
}

/** QEMU's names of the disk `diskId`: its block node and its device. */
export function attachedDiskNames(diskId: string): { nodeName: string; deviceId: string } {
  const compact = diskId.replaceAll("-", "").slice(0, nameHexDigits).toLowerCase();
  return { nodeName: `vol-${compact}`, deviceId: `disk-${compact}` };
}

/** The PCI slot for a guest device `/dev/vdX`, or undefined (QEMU picks one) for another name. */
export function pciSlotOf(device: string): number | undefined {
  const match = /^\/dev\/vd([a-z])$/.exec(device);
  if (match === null) return undefined;
  const slot = attachmentPciSlotFirst + (match[1]!.charCodeAt(0) - deviceLetterFirst.charCodeAt(0));
  return slot >= attachmentPciSlotFirst && slot <= attachmentPciSlotLast ? slot : undefined;
}

/** A virtio-blk serial: the text cut to 20 bytes, never inside a UTF-8 character. */
export function virtioSerial(text: string): string {
  return Buffer.from(text, "utf8").subarray(0, serialBytesMax).toString("utf8").replace(/\uFFFD$/, "");
}

/**
 * The block node, as `blockdev-add` takes it and `-blockdev` reads it (JSON). The same
 * choices as the root disk's `-drive` (args.ts): raw over NBD on the unix socket,
 * reconnect-delay, discard=unmap, no O_DIRECT and flushes passed down (with the device's
 * write-cache=on below: the root disk's cache=writeback).
 */
export function blockdevOptions(disk: AttachedDisk, host: HostDiskChoices): Record<string, unknown> {
  return {
    driver: "raw",
    "node-name": attachedDiskNames(disk.id).nodeName,
    discard: "unmap",
    cache: { direct: false, "no-flush": false },
    "read-only": disk.readOnly === true,
    file: {
      driver: "nbd",
      server: { type: "unix", path: disk.socketPath },
      export: disk.exportName,
      "reconnect-delay": host.nbdReconnectDelaySeconds,
    },
  };
}

/** The device's properties, as `device_add` takes them. */
export function deviceProperties(disk: AttachedDisk): Record<string, string> {
  const { nodeName, deviceId } = attachedDiskNames(disk.id);
  const slot = pciSlotOf(disk.device);
  return {
    driver: "virtio-blk-pci",
    id: deviceId,
    drive: nodeName,
    serial: virtioSerial(disk.serial),
    "write-cache": "on",
    ...(slot !== undefined && { bus: "pci.0", addr: `0x${slot.toString(16)}` }),
  };
}

/**
 * Hot-plugs the disk: its block node (blockdev-add, unless there), then its device
 * (device_add, unless there). A device that QEMU refuses takes its new node back out.
 */
export async function plugDisk(qmp: QmpCall, disk: AttachedDisk, host: HostDiskChoices): Promise<void> {
  const { nodeName, deviceId } = attachedDiskNames(disk.id);
  const nodeAdded = !(await hasNode(qmp, nodeName));
  if (nodeAdded) await qmp("blockdev-add", blockdevOptions(disk, host));
  if (await hasDevice(qmp, deviceId)) return;
  try {
    await qmp("device_add", deviceProperties(disk));
  } catch (error) {
    if (nodeAdded) await qmp("blockdev-del", { "node-name": nodeName }).catch(() => undefined);
    throw error;
  }
}

/** How unplugDisk waits for the guest. */
export interface UnplugPatience {
  /** The whole wait; EHYPERVISOR after it. */
  timeoutMs: number;
  /** Between two `device_del` requests while the device is still there. */
  retryMs: number;
  /** How long blockdev-del may find the node still in use once the device is gone (default nodeReleaseTimeoutMsDefault). */
  nodeReleaseTimeoutMs?: number;
}

/**
 * QEMU can list a device as gone (qom-list) a moment before it lets go of the device's block
 * node: blockdev-del then fails with "Node … is in use" (seen in CI under load, both hot-plug
 * tests at once). The node is retried for this long before that error stands.
 */
export const nodeReleaseTimeoutMsDefault = 10_000;

/**
 * Unplugs the disk `diskId`: device_del, then waits for the guest to release the device, then
 * blockdev-del (which closes the NBD connection). The request is repeated every `retryMs`, as
 * Nova's libvirt driver does (device_detach_attempts × device_detach_timeout): a guest may drop
 * an ACPI eject it got while busy — early in its boot, or still handling the slot's insert — and
 * QEMU (7.2) re-sends the event for a repeated request. EHYPERVISOR after `timeoutMs`.
 */
export async function unplugDisk(qmp: QmpCall, diskId: string, patience: UnplugPatience): Promise<void> {
  const { nodeName, deviceId } = attachedDiskNames(diskId);
  const started = performance.now();
  let requests = 0;
  let lastRequest = -Infinity;
  while (await hasDevice(qmp, deviceId)) {
    const now = performance.now();
    if (now - started >= patience.timeoutMs) {
      throw new ComputeError(
        "EHYPERVISOR",
        `the guest did not release disk ${deviceId} within ${patience.timeoutMs / 1000} s of ${requests} unplug requests (its OS must support ACPI PCI hot-unplug; it may still release it later)`,
      );
    }
    if (now - lastRequest >= patience.retryMs) {
      lastRequest = now;
      requests += 1;
      await qmp("device_del", { id: deviceId }).catch((error: unknown) => {
        if (!/DeviceNotFound|not found/i.test(String(error))) throw error;
      });
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(unplugPollMs, patience.retryMs)));
  }
  await deleteNodeOnceReleased(qmp, nodeName, patience.nodeReleaseTimeoutMs ?? nodeReleaseTimeoutMsDefault);
}

/** blockdev-del of `nodeName` (if it is there), retried while QEMU still holds it for a device just removed. */
async function deleteNodeOnceReleased(qmp: QmpCall, nodeName: string, timeoutMs: number): Promise<void> {
  const started = performance.now();
  while (await hasNode(qmp, nodeName)) {
    try {
      await qmp("blockdev-del", { "node-name": nodeName });
      return;
    } catch (error) {
      if (!/is in use/i.test(String(error)) || performance.now() - started >= timeoutMs) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, unplugPollMs / 2));
  }
}

async function hasNode(qmp: QmpCall, nodeName: string): Promise<boolean> {
  const nodes = await qmp<Array<{ "node-name"?: string }>>("query-named-block-nodes", { flat: true });
  return nodes.some((node) => node["node-name"] === nodeName);
}

async function hasDevice(qmp: QmpCall, deviceId: string): Promise<boolean> {
  const children = await qmp<Array<{ name: string }>>("qom-list", { path: "/machine/peripheral" });
  return children.some((child) => child.name === deviceId);
}
