/**
 * Attached volumes on the real qemu-system-x86_64 (TCG here): QemuDriver.attachDisk and
 * detachDisk (disks.ts) against test/vm's guest running its `watch` task (guest-init.sh),
 * which reports virtio disks as they come and go and writes a marker onto each new one.
 *
 * One boot carries the hot-plug: the disk appears in the guest with the volume id as its
 * serial and the guest's write reaches the volume over NBD; it is in slot 6 (vdc's) under the
 * attachment's names; attach twice is one disk; detach takes it out of the guest and closes
 * its NBD connection; a paused guest cannot release it, so detach gives up with EHYPERVISOR
 * and the disk stays until the guest, running again, honours the pending request. A second
 * boot starts with the disk on the command line, and a fresh driver (the service restarted)
 * detaches it by the same names. A stopped instance ignores attach and detach. Needs
 * qemu-system-x86, genisoimage and apt (test/vm/README.md): skipped with a loud warning
 * without them, failed under CI=true.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../../engine/engine.ts";
import { openObjectStore } from "../../engine/blocker/open-store.ts";
import { NbdServer } from "../../engine/nbd/server.ts";
import { requireTools } from "../../engine/nbd/testing/require-tool.ts";
import { bootTimeoutMs, buildGuest, guestBuildTimeoutMs, type Guest } from "../../test/vm/harness.ts";
import type { AttachedDisk, InstanceSpec } from "../driver.ts";
import { isComputeError } from "../errors.ts";
import { attachedDiskNames } from "./disks.ts";
import { QemuDriver } from "./driver.ts";
import { qmpExecute } from "./qmp.ts";

const haveTools = requireTools("qemu-system-x86_64", "genisoimage", "apt-get", "apt-cache", "dpkg-deb", "gzip");

const diskBytes = 64 * 1024 * 1024;
/** Boots, hot-plugs and the guest's half-second watch, on a loaded machine. */
const stepTimeoutMs = 2 * bootTimeoutMs + 60_000;
/** A paused guest's detach gives up after this, asking every half second (the driver's defaults, 160 s and 20 s, serve the others: a loaded TCG guest may take seconds). */
const shortDetachTimeoutMs = 2_000;
const shortDetachRetryMs = 500;

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = bootTimeoutMs): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const found = await probe();
    if (found !== undefined) return found;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** True when `text` occurs in the volume's bytes (read through the engine). */
async function volumeContains(engine: Engine, name: string, text: string): Promise<boolean> {
  const volume = await engine.openVolume(name, { readOnly: true });
  try {
    return (await volume.read(0, 4096)).includes(Buffer.from(text));
  } finally {
    await volume.close();
  }
}

interface PciDevice {
  slot: number;
  qdev_id: string;
}

describe.skipIf(!haveTools)("QemuDriver.attachDisk / detachDisk on qemu-system-x86_64", () => {
  let dir: string;
  let nbdSocket: string;
  let engine: Engine;
  let server: NbdServer;
  let guest: Guest;
  let driver: QemuDriver;
  const started = new Set<string>();

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "okh-"));
    nbdSocket = join(dir, "nbd.sock");
    guest = await buildGuest();
    engine = await Engine.init(await openObjectStore(`file:${join(dir, "store")}`, { create: true }));
    for (const name of ["root", "vol-a"]) await engine.createVolume(name, diskBytes);
    server = new NbdServer({ engine, exports: "all", socketPath: nbdSocket, shutdownTimeoutMs: 5_000 });
    await server.listen();
    driver = new QemuDriver({ stateDir: join(dir, "state"), nbdReconnectDelaySeconds: 10 });
  }, guestBuildTimeoutMs + 10_000);

  afterAll(async () => {
    for (const id of started) await driver?.destroy(id).catch(() => undefined);
    await server?.close();
    await engine?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  function specFor(note: string, extraDisks: AttachedDisk[] = []): InstanceSpec {
    const id = randomUUID();
    started.add(id);
    return {
      id,
      name: "hotplug",
      vcpus: 1,
      ramMiB: 256,
      rootDisk: { socketPath: nbdSocket, exportName: "root" },
      extraDisks,
      seed: { instanceId: id, hostname: "hotplug", sshAuthorizedKeys: [] },
      kernel: { kernelPath: guest.kernelPath, initrdPath: guest.initrdPath, commandLine: `console=ttyS0 loglevel=5 okeanos.task=watch okeanos.note=${note}` },
    };
  }

  const consoleHas = (id: string, pattern: RegExp) => async () => (pattern.test(await driver.consoleLog(id, 64 * 1024)) ? true : undefined);
  const qmp = <T>(id: string, command: string, args?: Record<string, unknown>) => qmpExecute<T>(driver.layout(id).qmpSocket, command, args);
  const pciDevices = async (id: string) => (await qmp<Array<{ devices: PciDevice[] }>>(id, "query-pci"))[0]!.devices;
  const nodeNames = async (id: string) => (await qmp<Array<{ "node-name": string }>>(id, "query-named-block-nodes", { flat: true })).map((node) => node["node-name"]);

  it(
    "hot-plugs a volume the guest finds by its serial and writes to; detaches it; a paused guest keeps it until it runs again",
    async () => {
      const token = randomBytes(6).toString("hex");
      const spec = specFor(token);
      await driver.start(spec);
      await until("the guest's watch", consoleHas(spec.id, /^OKEANOS-VM-DISK: watching\r?$/m));

      const volumeId = randomUUID();
      const disk: AttachedDisk = { socketPath: nbdSocket, exportName: "vol-a", id: randomUUID(), serial: volumeId, device: "/dev/vdc" };
      const { nodeName, deviceId } = attachedDiskNames(disk.id);
      await driver.attachDisk(spec.id, disk);
      await driver.attachDisk(spec.id, disk); // idempotent: one device, one node
      expect((await pciDevices(spec.id)).filter((device) => device.qdev_id === deviceId).map((device) => device.slot)).toEqual([6]);
      expect((await nodeNames(spec.id)).filter((name) => name === nodeName)).toHaveLength(1);

      // virtio's serial holds 20 bytes: the volume id's first 20 characters.
      const serial = volumeId.slice(0, 20);
      await until("the guest's marker", consoleHas(spec.id, new RegExp(`^OKEANOS-VM-DISK: added vdc serial=${serial} marker=written\\r?$`, "m")));

      await driver.detachDisk(spec.id, disk.id);
      expect((await pciDevices(spec.id)).map((device) => device.qdev_id)).not.toContain(deviceId);
      expect(await nodeNames(spec.id)).not.toContain(nodeName);
      await until("the guest's removal", consoleHas(spec.id, new RegExp(`^OKEANOS-VM-DISK: removed vdc serial=${serial}\\r?$`, "m")));
      await driver.detachDisk(spec.id, disk.id); // idempotent
      // The NBD connection closed with the node: the guest's flushed marker is on the volume.
      expect(await volumeContains(engine, "vol-a", `okeanos-disk-marker serial=${serial} note=${token}\n`)).toBe(true);

      // A paused guest cannot answer the unplug request: detach gives up, the disk stays…
      await driver.attachDisk(spec.id, disk);
      // The guest may name it vdc again or, if it still holds vdc's index, vdd.
      const added = new RegExp(`^OKEANOS-VM-DISK: added vd[a-z] serial=${serial} marker=written\r?$`, "gm");
      await until("the guest's second marker", async () => ((await driver.consoleLog(spec.id, 64 * 1024)).match(added)?.length === 2 ? true : undefined));
      await qmp(spec.id, "stop");
      const impatient = new QemuDriver({ stateDir: driver.stateDir, detachTimeoutMs: shortDetachTimeoutMs, detachRetryMs: shortDetachRetryMs });
      const error = await impatient.detachDisk(spec.id, disk.id).catch((caught: unknown) => caught);
      expect(isComputeError(error, "EHYPERVISOR")).toBe(true);
      expect((error as Error).message).toMatch(/did not release disk disk-[0-9a-f]{24} within 2 s of [2-5] unplug requests/);
      expect((await pciDevices(spec.id)).map((device) => device.qdev_id)).toContain(deviceId);
      // …until it runs again and honours the request still pending; detach then finishes the job.
      await qmp(spec.id, "cont");
      await until("the pending unplug", async () => ((await pciDevices(spec.id)).some((device) => device.qdev_id === deviceId) ? undefined : true));
      await driver.detachDisk(spec.id, disk.id);
      expect(await nodeNames(spec.id)).not.toContain(nodeName);
      await driver.destroy(spec.id);
    },
    stepTimeoutMs,
  );

  it(
    "a disk on the command line has the hot-plug's names: a fresh driver detaches it; a stopped instance ignores attach and detach",
    async () => {
      const disk: AttachedDisk = { socketPath: nbdSocket, exportName: "vol-a", id: randomUUID(), serial: randomUUID(), device: "/dev/vdd" };
      const { nodeName, deviceId } = attachedDiskNames(disk.id);
      const spec = specFor("boot", [disk]);
      await driver.attachDisk(spec.id, disk); // not running: nothing, and no error
      await driver.detachDisk(spec.id, disk.id);
      expect((await driver.status(spec.id)).power).toBe("shutdown");

      await driver.start(spec);
      expect((await pciDevices(spec.id)).filter((device) => device.qdev_id === deviceId).map((device) => device.slot)).toEqual([7]);
      await until("the guest's disk", consoleHas(spec.id, new RegExp(`^OKEANOS-VM-DISK: added vdc serial=${disk.serial.slice(0, 20)} marker=written\\r?$`, "m")));

      const fresh = new QemuDriver({ stateDir: driver.stateDir });
      await fresh.attachDisk(spec.id, disk); // there already: nothing
      await fresh.detachDisk(spec.id, disk.id);
      expect((await pciDevices(spec.id)).map((device) => device.qdev_id)).not.toContain(deviceId);
      expect(await nodeNames(spec.id)).not.toContain(nodeName);
      await driver.destroy(spec.id);
    },
    stepTimeoutMs,
  );
});
