/**
 * unplugDisk's conversation with QEMU, against a scripted monitor: it asks again while the
 * guest keeps the device, gives up with EHYPERVISOR naming how often it asked, and deletes the
 * block node only once the device is gone (retrying while QEMU still holds it). hotplug.test.ts does the same with a real guest.
 */
import { describe, expect, it } from "vitest";
import { isComputeError } from "../errors.ts";
import { attachedDiskNames, unplugDisk, type QmpCall } from "./disks.ts";

const diskId = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const { nodeName, deviceId } = attachedDiskNames(diskId);

/**
 * A monitor whose guest releases the device after `releaseAfterRequests` device_del requests
 * (never if undefined), and whose block node stays in use for `nodeHeldDeletes` blockdev-dels
 * after that (Infinity: for ever).
 */
function scriptedMonitor(releaseAfterRequests: number | undefined, options: { deviceThere?: boolean; nodeHeldDeletes?: number } = {}) {
  const calls: string[] = [];
  let deviceThere = options.deviceThere ?? true;
  let nodeThere = true;
  let requests = 0;
  let heldDeletes = options.nodeHeldDeletes ?? 0;
  const qmp = (async (command: string, args?: Record<string, unknown>) => {
    calls.push(command);
    switch (command) {
      case "qom-list":
        return deviceThere ? [{ name: "type" }, { name: deviceId }] : [{ name: "type" }];
      case "device_del":
        expect(args).toEqual({ id: deviceId });
        requests += 1;
        if (!deviceThere) throw new Error(`DeviceNotFound: Device '${deviceId}' not found`);
        if (releaseAfterRequests !== undefined && requests >= releaseAfterRequests) deviceThere = false;
        return {};
      case "query-named-block-nodes":
        return nodeThere ? [{ "node-name": "root" }, { "node-name": nodeName }] : [{ "node-name": "root" }];
      case "blockdev-del":
        expect(deviceThere).toBe(false);
        expect(args).toEqual({ "node-name": nodeName });
        if (heldDeletes > 0) {
          heldDeletes -= 1;
          throw new Error(`QMP blockdev-del failed: GenericError: Node ${nodeName} is in use`);
        }
        nodeThere = false;
        return {};
      default:
        throw new Error(`unexpected ${command}`);
    }
  }) as QmpCall;
  return { qmp, calls, requests: () => requests, nodeThere: () => nodeThere };
}

describe("unplugDisk", () => {
  it("asks the guest once when it answers, then deletes the block node", async () => {
    const monitor = scriptedMonitor(1);
    await unplugDisk(monitor.qmp, diskId, { timeoutMs: 5_000, retryMs: 1_000 });
    expect(monitor.requests()).toBe(1);
    expect(monitor.nodeThere()).toBe(false);
  });

  it("asks again every retry period while the guest keeps the device", async () => {
    const monitor = scriptedMonitor(3);
    await unplugDisk(monitor.qmp, diskId, { timeoutMs: 5_000, retryMs: 20 });
    expect(monitor.requests()).toBe(3);
    expect(monitor.calls.at(-1)).toBe("blockdev-del");
  });

  it("gives up with EHYPERVISOR saying how long and how often it asked; the block node stays", async () => {
    const monitor = scriptedMonitor(undefined);
    const error = await unplugDisk(monitor.qmp, diskId, { timeoutMs: 300, retryMs: 50 }).catch((caught: unknown) => caught);
    expect(isComputeError(error, "EHYPERVISOR")).toBe(true);
    const requests = Number(/within 0.3 s of (\d+) unplug requests/.exec((error as Error).message)?.[1]);
    expect(requests).toBeGreaterThanOrEqual(3);
    expect(requests).toBe(monitor.requests());
    expect(monitor.calls).not.toContain("blockdev-del");
    expect(monitor.nodeThere()).toBe(true);
  });

  it("deletes the node once QEMU lets go of it, when the device left first", async () => {
    const monitor = scriptedMonitor(1, { nodeHeldDeletes: 3 });
    await unplugDisk(monitor.qmp, diskId, { timeoutMs: 5_000, retryMs: 1_000 });
    expect(monitor.calls.filter((call) => call === "blockdev-del")).toHaveLength(4);
    expect(monitor.nodeThere()).toBe(false);
  });

  it("a node held past its patience fails with QEMU's error, and the node stays", async () => {
    const monitor = scriptedMonitor(1, { nodeHeldDeletes: Infinity });
    const error = await unplugDisk(monitor.qmp, diskId, { timeoutMs: 5_000, retryMs: 1_000, nodeReleaseTimeoutMs: 300 }).catch((caught: unknown) => caught);
    expect(String(error)).toMatch(/is in use/);
    expect(monitor.calls.filter((call) => call === "blockdev-del").length).toBeGreaterThanOrEqual(2);
    expect(monitor.nodeThere()).toBe(true);
  });

  it("a device already gone (a request honoured after an earlier timeout) is not asked for; the node goes", async () => {
    const monitor = scriptedMonitor(undefined, { deviceThere: false });
    await unplugDisk(monitor.qmp, diskId, { timeoutMs: 1_000, retryMs: 100 });
    expect(monitor.requests()).toBe(0);
    expect(monitor.nodeThere()).toBe(false);
  });
});
