/**
 * Volume attachments end to end, with Debian's `openstack` client against `okeanos serve`
 * (compute on QEMU, block storage from gateways/volumes/): `volume create`; `server add volume`
 * into a running server — the guest (guest-init.sh's `cloud` task, which watches for
 * hot-plugged disks) finds the disk by its serial, the volume's id, and writes a marker onto
 * it; `server volume list`, `volume show` (in-use) and `server show` (volumes_attached);
 * `server remove volume` — the guest sees the disk go, the volume is available, and the
 * marker is on it, read over the serving process's NBD socket with `nbdsh`; then attached to
 * the server while it is SHUTOFF, the disk is there at the next boot; `server delete` frees
 * the volume without deleting it; `volume delete`.
 *
 * Needs what compute.test.ts needs (qemu-system-x86, e2fsprogs, genisoimage, apt,
 * python3-openstackclient) and libnbd-bin (nbdsh): skipped with a warning without them, fails
 * under CI=true. The setup is compute-setup.ts.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ci, setUpCompute, skipComputeTest, sleep, uploadGuestImages, type ComputeBed } from "./compute-setup.ts";
import { detachTimeoutMsDefault } from "../../compute/qemu/driver.ts";
import { bootTimeoutMs, guestBuildTimeoutMs, missingTools } from "./harness.ts";

const execFileAsync = promisify(execFile);
const nbdshMissing = missingTools(["nbdsh"]).length > 0;
if (nbdshMissing && !ci) console.warn("\n*** test/vm/volumes SKIPPED: nbdsh not found. To run it: apt-get install libnbd-bin ***\n");
const skipped = skipComputeTest("volumes") || (nbdshMissing && !ci);
const testTimeoutMs = 20 * 60_000;
/** A status change of a volume (a job of the serving process): seconds; a loaded machine, more. */
const statusTimeoutMs = 120_000;
/** A detach waits for the guest, asking again and again, for up to the driver's whole patience. */
const detachedTimeoutMs = detachTimeoutMsDefault + statusTimeoutMs;

describe.skipIf(skipped)("volumes: attach and detach through the openstack client", () => {
  let bed: ComputeBed;
  const openstack = (...args: string[]) => bed.openstack(...args);
  const json = <T = Record<string, unknown>>(...args: string[]) => bed.json<T>(...args);

  /** Polls `show` until its status is `value`; on failure says what the service and the guest said. */
  const reaches = async (kind: "server" | "volume", name: string, value: string, timeoutMs = statusTimeoutMs): Promise<Record<string, unknown>> => {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const shown = await json(kind, "show", name);
      if (shown["status"] === value) return shown;
      if (shown["status"] === "ERROR" || shown["status"] === "error" || performance.now() > deadline) {
        const consoleLog = await bed.openstackRun("console", "log", "show", "vm1");
        throw new Error(
          `${kind} ${name} is ${String(shown["status"])}, not ${value}: ${JSON.stringify(shown)}\n` +
            `okeanos serve's log:\n…${bed.serveLog().slice(-6000)}\nvm1's console:\n…${consoleLog.stdout.slice(-3000)}`,
        );
      }
      await sleep(2000);
    }
  };

  /** Waits for a console line matching `pattern`, its `count`-th occurrence. */
  const consoleLine = async (server: string, pattern: RegExp, count = 1): Promise<string> => {
    const deadline = performance.now() + bootTimeoutMs;
    for (;;) {
      const log = await openstack("console", "log", "show", server);
      const found = [...log.matchAll(new RegExp(pattern.source, "gm"))];
      if (found.length >= count) return found[count - 1]![0];
      expect(log, "the guest failed").not.toMatch(/^OKEANOS-VM: error /m);
      if (performance.now() > deadline) throw new Error(`no ${pattern} (#${count}) on ${server}'s console:\n…${log.slice(-4000)}\n${bed.serveLog().slice(-4000)}`);
      await sleep(2000);
    }
  };

  /** The volume's first 512 bytes, over okeanos serve's NBD socket (every volume is an export). */
  const firstSector = async (volumeId: string): Promise<string> => {
    const uri = `nbd+unix:///volume-${volumeId}?socket=${join(bed.computeDir, "nbd.sock")}`;
    const { stdout } = await execFileAsync("nbdsh", ["-u", uri, "-c", "import sys; sys.stdout.buffer.write(h.pread(512, 0))"], { env: { ...process.env, PATH: `/usr/bin:${process.env["PATH"] ?? ""}` } });
    return stdout;
  };

  beforeAll(async () => {
    bed = await setUpCompute({ name: "volumes", cpuLimit: 2 });
  }, guestBuildTimeoutMs + 60_000);

  afterAll(async () => {
    if (bed === undefined) return;
    await bed.openstackRun("server", "delete", "--wait", "vm1");
    await bed.openstackRun("volume", "delete", "data1");
    await bed.cleanUp();
  });

  it(
    "add volume to a running server, the guest writes to it, remove it, the marker is on the volume; attach while SHUTOFF; server delete frees it",
    async () => {
      const note = randomBytes(6).toString("hex");
      await uploadGuestImages(bed, note);
      await bed.okeanos("flavor", "create", "m1.test", "--vcpus", "1", "--ram", "256M", "--disk", "1G", "--id", "1");
      const vm1 = await json("server", "create", "--image", "guest-root", "--flavor", "m1.test", "--wait", "vm1");
      expect(vm1["status"]).toBe("ACTIVE");
      const serverId = String(vm1["id"]);
      await consoleLine("vm1", /^OKEANOS-VM-DISK: watching\r?$/);

      const created = await json("volume", "create", "--size", "1", "data1");
      const volumeId = String(created["id"]);
      await reaches("volume", "data1", "available");
      // virtio-blk's serial holds 20 bytes: the guest reads the volume id's first 20 characters.
      const serial = volumeId.slice(0, 20);

      // ── add: hot-plugged into the running guest ─────────────────────────────────
      const added = await json("server", "add", "volume", "vm1", "data1");
      expect(added).toMatchObject({ ID: volumeId, "Server ID": serverId, "Volume ID": volumeId, Device: "/dev/vdc" });
      await reaches("volume", "data1", "in-use");
      expect(await consoleLine("vm1", new RegExp(`^OKEANOS-VM-DISK: added vd[a-z] serial=${serial} marker=\\w+`))).toMatch(/marker=written/);
      expect(await json<Array<Record<string, unknown>>>("server", "volume", "list", "vm1")).toEqual([
        { ID: volumeId, Device: "/dev/vdc", "Server ID": serverId, "Volume ID": volumeId },
      ]);
      expect(JSON.stringify((await json("server", "show", "vm1"))["volumes_attached"])).toContain(volumeId);
      expect((await json("server", "show", "vm1"))["status"]).toBe("ACTIVE");
      // An attached volume cannot be deleted (Cinder's 400).
      expect((await bed.openstackRun("volume", "delete", "data1")).code).not.toBe(0);

      // ── remove: the guest lets go, the volume is available, the marker is on it ─
      await openstack("server", "remove", "volume", "vm1", "data1");
      await reaches("volume", "data1", "available", detachedTimeoutMs);
      await consoleLine("vm1", new RegExp(`^OKEANOS-VM-DISK: removed vd[a-z] serial=${serial}\\r?$`));
      expect(await json<unknown[]>("server", "volume", "list", "vm1")).toEqual([]);
      expect(await firstSector(volumeId)).toContain(`okeanos-disk-marker serial=${serial} note=${note}\n`);

      // ── attached while SHUTOFF: no hot-plug, the disk is there at the next boot ─
      await openstack("server", "stop", "vm1");
      await reaches("server", "vm1", "SHUTOFF");
      await openstack("server", "add", "volume", "--device", "/dev/vdd", "vm1", "data1");
      await reaches("volume", "data1", "in-use");
      await openstack("server", "start", "vm1");
      await reaches("server", "vm1", "ACTIVE");
      await consoleLine("vm1", new RegExp(`^OKEANOS-VM-DISK: added vd[a-z] serial=${serial} marker=written`), 2);

      // ── server delete frees the volume, never deletes it ───────────────────────
      await openstack("server", "delete", "--wait", "vm1");
      const freed = await reaches("volume", "data1", "available");
      expect(freed["attachments"]).toEqual([]);
      await openstack("volume", "delete", "data1");
      const deadline = performance.now() + statusTimeoutMs;
      while ((await bed.openstackRun("volume", "show", "data1")).code === 0) {
        if (performance.now() > deadline) throw new Error("data1 is still there");
        await sleep(2000);
      }
    },
    testTimeoutMs,
  );
});
