import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { expect, it } from "vitest";
import { getQuota, listComputeJobs, type ComputeJob } from "../db/index.ts";
import { describeEachEngine } from "../db/testing/databases.ts";
import { testPauseDirVariable } from "./steps.ts";
import { FakeDriver } from "./testing/fake-driver.ts";
import { computeWorld, type ComputeWorld } from "./testing/world.ts";

async function charged(w: ComputeWorld): Promise<number[]> {
  const figures: number[] = [];
  for (const resource of ["compute.vm", "compute.cpu", "volume.disk"]) {
    const quota = await getQuota(w.db, w.alice.uuid, resource);
    figures.push(quota.usage, quota.pendingIncrease, quota.pendingDecrease);
  }
  return figures;
}

const jobStates = (jobs: ComputeJob[]) => jobs.map((job) => [job.action, job.state, job.attempts]);

describeEachEngine("compute crash recovery", (databases) => {
  it("a build interrupted mid-job is finished by the next process: active, charged once", async () => {
    const w = await computeWorld(databases);
    const dying = new FakeDriver();
    dying.hang("start");
    const first = w.service({ driver: dying });
    await first.start();
    const created = await first.createServer(w.caller, { name: "vm", imageRef: w.imageId, flavorRef: "1" });
    await dying.hung();
    await first.close({ abandon: true }); // the process is gone; its job row says running

    const driver = new FakeDriver();
    const second = w.service({ driver });
    await second.start();
    await second.idle();
    expect((await second.getServer(w.caller, created.id)).status).toBe("ACTIVE");
    expect(jobStates(await listComputeJobs(w.db, created.id))).toEqual([["create", "done", 2]]);
    expect(driver.instances.get(created.id)?.boots).toBe(1);
    expect(await charged(w)).toEqual([1, 0, 0, 1, 0, 0, 65536, 0, 0]);
    await second.close();
  });

  it("a delete interrupted mid-job is finished by the next process: gone, released once", async () => {
    const w = await computeWorld(databases);
    const driver = new FakeDriver();
    const first = w.service({ driver });
    await first.start();
    const created = await first.createServer(w.caller, { name: "vm", imageRef: w.imageId, flavorRef: "1" });
    await first.idle();
    driver.hang("destroy");
    await first.deleteServer(w.caller, created.id);
    await driver.hung();
    await first.close({ abandon: true });

    // The same host: the instance still runs under the next process's driver.
    const next = new FakeDriver();
    next.instances.set(created.id, driver.instances.get(created.id)!);
    const second = w.service({ driver: next });
    await second.start();
    await second.idle();
    expect(next.instances.has(created.id)).toBe(false);
    expect(await w.engine.maps.exists(created.rootVolume)).toBe(false);
    expect(jobStates(await listComputeJobs(w.db, created.id))).toEqual([
      ["create", "done", 1],
      ["delete", "done", 2],
    ]);
    expect(await charged(w)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0]);
    await second.close();
  });

  it("replaying finished steps changes nothing: a create job run twice boots once and charges once", async () => {
    const w = await computeWorld(databases);
    const driver = new FakeDriver();
    const first = w.service({ driver });
    await first.start();
    const created = await first.createServer(w.caller, { name: "vm", imageRef: w.imageId, flavorRef: "1" });
    await first.idle();
    await first.close();
    const before = await charged(w);
    // As if the process died after every step but before recording the outcome.
    await w.db.kysely.updateTable("compute_jobs").set({ state: "running" }).where("server_id", "=", created.id).execute();
    await w.db.kysely.updateTable("compute_servers").set({ vm_state: "building", task_state: "spawning" }).where("id", "=", created.id).execute();

    const second = w.service({ driver });
    await second.start();
    await second.idle();
    expect((await second.getServer(w.caller, created.id)).status).toBe("ACTIVE");
    expect(driver.instances.get(created.id)?.boots).toBe(1);
    expect(await charged(w)).toEqual(before);
    await second.close();
  });

  it("reconcile: an active server whose process is gone is stopped; an orphan instance is destroyed", async () => {
    const w = await computeWorld(databases);
    const first = w.service();
    await first.start();
    const created = await first.createServer(w.caller, { name: "vm", imageRef: w.imageId, flavorRef: "1" });
    await first.idle();
    await first.close();

    const rebooted = new FakeDriver(); // the host rebooted: no QEMU process survived…
    const orphan = "0f9e8d7c-6b5a-4321-8fed-cba987654321";
    rebooted.instances.set(orphan, { spec: { id: orphan } as never, power: "running", boots: 1 }); // …but a stray one did
    const second = w.service({ driver: rebooted });
    const report = await second.start();
    expect(report).toEqual({ repaired: { [created.id]: "active but not running → stopped" }, destroyedOrphans: [orphan] });
    expect(await second.getServer(w.caller, created.id)).toMatchObject({ status: "SHUTOFF", powerState: 4 });
    expect(rebooted.instances.size).toBe(0);
    await second.serverAction(w.caller, created.id, { kind: "start" });
    await second.idle();
    expect((await second.getServer(w.caller, created.id)).status).toBe("ACTIVE");
    await second.close();
  });

  it("the test pause hook (test/vm/compute-crash.test.ts) holds a job between two steps until its file goes", async () => {
    const w = await computeWorld(databases);
    const pauseDir = await mkdtemp(join(tmpdir(), "okeanos-pause-"));
    process.env[testPauseDirVariable] = pauseDir;
    try {
      const driver = new FakeDriver();
      const service = w.service({ driver });
      await service.start();
      const created = await service.createServer(w.caller, { name: "vm", imageRef: w.imageId, flavorRef: "1" });
      await service.idle();
      await writeFile(join(pauseDir, "delete.destroyed"), "");
      await service.deleteServer(w.caller, created.id);
      let reached: string | undefined;
      for (let waited = 0; reached === undefined && waited < 5_000; waited += 20) {
        reached = await readFile(join(pauseDir, "delete.destroyed.reached"), "utf8").catch(() => undefined);
        if (reached === undefined) await sleep(20);
      }
      expect(reached).toBe(created.id);
      // Held after the destroy, before the volume's delete.
      expect(driver.instances.has(created.id)).toBe(false);
      expect(await w.engine.maps.exists(created.rootVolume)).toBe(true);
      await rm(join(pauseDir, "delete.destroyed"));
      await service.idle();
      expect(await w.engine.maps.exists(created.rootVolume)).toBe(false);
      expect(jobStates(await listComputeJobs(w.db, created.id))).toEqual([
        ["create", "done", 1],
        ["delete", "done", 1],
      ]);
      await service.close();
    } finally {
      delete process.env[testPauseDirVariable];
      await rm(pauseDir, { recursive: true, force: true });
    }
  });
});
