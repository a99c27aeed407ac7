import { expect, it, vi } from "vitest";
import { describeEachEngine } from "../db/testing/databases.ts";
import { syncPowerStates } from "./power-sync.ts";
import { FakeDriver } from "./testing/fake-driver.ts";
import { computeWorld } from "./testing/world.ts";

const quiet = { info() {}, warn() {}, error() {} };

describeEachEngine("compute power-state sync", (databases) => {
  it("follows the hypervisor: a guest that powered itself off is SHUTOFF, one started behind our back ACTIVE", async () => {
    const w = await computeWorld(databases);
    const driver = new FakeDriver();
    const service = w.service({ driver, powerSyncIntervalMs: 0 });
    await service.start();
    const a = await service.createServer(w.caller, { name: "a", imageRef: w.imageId, flavorRef: "1" });
    const b = await service.createServer(w.caller, { name: "b", imageRef: w.imageId, flavorRef: "1" });
    await service.idle();
    await service.serverAction(w.caller, b.id, { kind: "stop" });
    await service.idle();
    const context = { db: w.db, driver, logger: quiet, now: Date.now };
    expect(await syncPowerStates(context)).toEqual({});

    driver.instances.get(a.id)!.power = "shutdown"; // the guest ran `poweroff`
    driver.instances.get(b.id)!.power = "running"; // someone started it by hand
    expect(await syncPowerStates(context)).toEqual({ [a.id]: "active, not running → stopped", [b.id]: "stopped, running → active" });
    expect((await service.getServer(w.caller, a.id)).status).toBe("SHUTOFF");
    expect((await service.getServer(w.caller, b.id)).status).toBe("ACTIVE");
    await service.close();
  });

  it("leaves a server with a job under way to the job", async () => {
    const w = await computeWorld(databases);
    const driver = new FakeDriver();
    const service = w.service({ driver, powerSyncIntervalMs: 0 });
    await service.start();
    const a = await service.createServer(w.caller, { name: "a", imageRef: w.imageId, flavorRef: "1" });
    await service.idle();
    const stopping = driver.gate("stop");
    await service.serverAction(w.caller, a.id, { kind: "stop" });
    await stopping.entered;
    driver.instances.get(a.id)!.power = "shutdown";
    expect(await syncPowerStates({ db: w.db, driver, logger: quiet, now: Date.now })).toEqual({});
    expect((await service.getServer(w.caller, a.id)).taskState).toBe("powering-off");
    stopping.release();
    await service.idle();
    expect((await service.getServer(w.caller, a.id)).status).toBe("SHUTOFF");
    await service.close();
  });

  it("runs by itself while the service runs", async () => {
    const w = await computeWorld(databases);
    const driver = new FakeDriver();
    const service = w.service({ driver, powerSyncIntervalMs: 20 });
    await service.start();
    const a = await service.createServer(w.caller, { name: "a", imageRef: w.imageId, flavorRef: "1" });
    await service.idle();
    driver.instances.get(a.id)!.power = "shutdown";
    await vi.waitFor(async () => expect((await service.getServer(w.caller, a.id)).status).toBe("SHUTOFF"), { timeout: 10_000 });
    await service.close();
  });
});
