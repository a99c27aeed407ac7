import { readFile } from "node:fs/promises";
import { expect, it } from "vitest";
import { getQuota, listComputeJobs, setLimit } from "../db/index.ts";
import { describeEachEngine } from "../db/testing/databases.ts";
import { isComputeError, type ComputeErrorCode } from "./errors.ts";
import { FakeDriver } from "./testing/fake-driver.ts";
import { computeWorld, imageData, type ComputeWorld } from "./testing/world.ts";

const sshKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx1Y2t5IGtleSBmb3IgdGVzdHMgb25seSEhISEhISE= alice@laptop";

async function rejects(promise: Promise<unknown>, code: ComputeErrorCode): Promise<Error> {
  const error = await promise.then(
    () => new Error("resolved"),
    (caught: unknown) => caught as Error,
  );
  expect(isComputeError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  return error;
}

async function usage(w: ComputeWorld): Promise<Record<string, number>> {
  const figures: Record<string, number> = {};
  for (const resource of ["compute.vm", "compute.cpu", "compute.ram", "volume.disk"]) {
    const quota = await getQuota(w.db, w.alice.uuid, resource);
    figures[resource] = quota.usage;
    figures[`${resource} pending`] = quota.pendingIncrease;
  }
  return figures;
}

describeEachEngine("compute service", (databases) => {
  it("create boots a clone of the image with the seed; stop, start, reboot, delete move the states", async () => {
    const w = await computeWorld(databases);
    const driver = new FakeDriver();
    const compute = w.service({ driver });
    await compute.start();
    await compute.createKeypair(w.caller, "k1", `${sshKey}\n`);
    const created = await compute.createServer(w.caller, { name: "Web Server_1!", imageRef: "cirros", flavorRef: "1", keyName: "k1", userData: Buffer.from("#!/bin/sh\necho hi\n") });
    expect(created).toMatchObject({ status: "BUILD", taskState: "spawning", rootVolume: `server-${created.id}` });
    await compute.idle();

    const active = await compute.getServer(w.caller, created.id);
    expect(active).toMatchObject({ status: "ACTIVE", vmState: "active", taskState: null, powerState: 1, progress: 100 });
    const spec = driver.instances.get(created.id)!.spec;
    expect(spec.seed).toEqual({ instanceId: created.id, hostname: "web-server-1", sshAuthorizedKeys: [sshKey.trim()], userData: Buffer.from("#!/bin/sh\necho hi\n") });
    expect(spec.rootDisk).toEqual({ socketPath: "/run/okeanos/nbd.sock", exportName: `server-${created.id}` });
    expect(spec.kernel).toBeUndefined();
    const info = await w.engine.info(`server-${created.id}`);
    // A clone of the image's map: same size (flavor disk 0), no private block.
    expect([info.header.sizeBytes, info.privateBlocks]).toEqual([imageData.length, 0]);
    expect(await usage(w)).toMatchObject({ "compute.vm": 1, "compute.cpu": 1, "compute.ram": 512 * 1024 * 1024, "volume.disk": imageData.length, "compute.vm pending": 0 });

    await compute.serverAction(w.caller, created.id, { kind: "stop" });
    await compute.idle();
    expect(await compute.getServer(w.caller, created.id)).toMatchObject({ status: "SHUTOFF", powerState: 4 });
    await compute.serverAction(w.caller, created.id, { kind: "start" });
    await compute.idle();
    expect((await compute.getServer(w.caller, created.id)).status).toBe("ACTIVE");
    await compute.serverAction(w.caller, created.id, { kind: "reboot", hard: true });
    await compute.idle();
    expect((await compute.getServer(w.caller, created.id)).status).toBe("ACTIVE");
    expect(driver.calls.map((call) => call.method).filter((method) => method !== "list" && method !== "status")).toEqual(["start", "stop", "start", "reboot"]);

    await compute.deleteServer(w.caller, created.id);
    await compute.idle();
    await rejects(compute.getServer(w.caller, created.id), "ENOT_FOUND");
    expect(await compute.listServers(w.caller, {})).toEqual([]);
    expect(driver.instances.has(created.id)).toBe(false);
    expect(await w.engine.maps.exists(`server-${created.id}`)).toBe(false);
    expect(await usage(w)).toMatchObject({ "compute.vm": 0, "compute.cpu": 0, "compute.ram": 0, "volume.disk": 0 });
    await compute.close();
  });

  it("409 on a second action while a job waits; delete cancels the queued job and wins", async () => {
    const w = await computeWorld(databases);
    // The CLI's service: it only queues.
    const cli = w.service({ worker: false });
    const created = await cli.createServer(w.caller, { name: "vm", imageRef: w.imageId, flavorRef: "1" });
    await rejects(cli.serverAction(w.caller, created.id, { kind: "stop" }), "ECONFLICT");
    const serve = w.service();
    await serve.start();
    await serve.idle();
    expect((await cli.getServer(w.caller, created.id)).status).toBe("ACTIVE");
    await serve.close();

    await cli.serverAction(w.caller, created.id, { kind: "stop" });
    const conflict = await rejects(cli.serverAction(w.caller, created.id, { kind: "reboot", hard: false }), "ECONFLICT");
    expect(conflict.message).toBe(`Cannot 'reboot' instance ${created.id} while it is in task_state powering-off`);
    await rejects(cli.serverAction(w.caller, created.id, { kind: "start" }), "ECONFLICT");
    await cli.deleteServer(w.caller, created.id);
    await cli.deleteServer(w.caller, created.id); // a second DELETE is the same job
    expect((await listComputeJobs(w.db, created.id)).map((job) => [job.action, job.state])).toEqual([
      ["create", "done"],
      ["stop", "failed"],
      ["delete", "queued"],
    ]);
    const driver = new FakeDriver();
    const again = w.service({ driver });
    await again.start();
    await again.idle();
    expect(driver.callsOf("stop")).toEqual([]);
    await rejects(again.getServer(w.caller, created.id), "ENOT_FOUND");
    expect(await usage(w)).toMatchObject({ "compute.vm": 0, "compute.cpu": 0, "volume.disk": 0 });
    await again.close();
  });

  it("delete while a job runs waits for it, then wins", async () => {
    const w = await computeWorld(databases);
    const driver = new FakeDriver();
    const compute = w.service({ driver });
    await compute.start();
    const created = await compute.createServer(w.caller, { name: "vm", imageRef: w.imageId, flavorRef: "1" });
    await compute.idle();
    const gate = driver.gate("reboot");
    await compute.serverAction(w.caller, created.id, { kind: "reboot", hard: false });
    await gate.entered;
    expect((await compute.getServer(w.caller, created.id)).status).toBe("REBOOT");
    await compute.deleteServer(w.caller, created.id);
    expect((await compute.getServer(w.caller, created.id)).taskState).toBe("deleting");
    gate.release();
    await compute.idle();
    expect(driver.calls.map((call) => call.method).slice(-2)).toEqual(["reboot", "destroy"]);
    await rejects(compute.getServer(w.caller, created.id), "ENOT_FOUND");
    await compute.close();
  });

  it("over quota: 403 with Nova's message, no server left, usage unchanged", async () => {
    const w = await computeWorld(databases);
    await setLimit(w.db, w.alice.uuid, "compute.cpu", 2);
    const compute = w.service();
    await compute.start();
    await compute.createServer(w.caller, { name: "one", imageRef: w.imageId, flavorRef: "1" });
    // The first build done: its commission accepted, so only the refusal could change usage.
    await compute.idle();
    const before = await usage(w);
    const refused = await rejects(compute.createServer(w.caller, { name: "two", imageRef: w.imageId, flavorRef: "2" }), "EQUOTA");
    expect(refused.message).toBe("Quota exceeded for cores: Requested 2, but already used 1 of 2 cores");
    expect((await compute.listServers(w.caller, {})).map((server) => server.name)).toEqual(["one"]);
    expect(await usage(w)).toEqual(before);
    expect(await usage(w)).toMatchObject({ "compute.cpu": 1, "compute.cpu pending": 0 });
    await compute.close();
  });

  it("a failed build rejects its commission, removes its volume and ends in ERROR", async () => {
    const w = await computeWorld(databases);
    const driver = new FakeDriver();
    driver.fail("start");
    const compute = w.service({ driver });
    await compute.start();
    const created = await compute.createServer(w.caller, { name: "vm", imageRef: w.imageId, flavorRef: "1" });
    await compute.idle();
    const failed = await compute.getServer(w.caller, created.id);
    expect(failed).toMatchObject({ status: "ERROR", taskState: null, fault: { code: 500, message: "fake start failure" } });
    expect(driver.callsOf("destroy")).toEqual([created.id]);
    expect(await w.engine.maps.exists(created.rootVolume)).toBe(false);
    expect(await usage(w)).toMatchObject({ "compute.vm": 0, "compute.vm pending": 0, "volume.disk": 0, "volume.disk pending": 0 });
    await rejects(compute.serverAction(w.caller, created.id, { kind: "start" }), "ECONFLICT");
    await compute.deleteServer(w.caller, created.id);
    await compute.idle();
    await rejects(compute.getServer(w.caller, created.id), "ENOT_FOUND");
    await compute.close();
  });

  it("resize charges the deltas and keeps the power state; createImage freezes with the boot properties", async () => {
    const w = await computeWorld(databases);
    const kernel = Buffer.from("a kernel, or so it says\n");
    const kernelId = await w.uploadImage("vmlinuz", kernel);
    const bootImage = await w.uploadImage("direct", imageData, { kernel_id: kernelId, os_command_line: "console=ttyS0 root=/dev/vda" });
    const driver = new FakeDriver();
    const compute = w.service({ driver });
    await compute.start();
    const created = await compute.createServer(w.caller, { name: "vm", imageRef: bootImage, flavorRef: "1" });
    await compute.idle();
    const spec = driver.instances.get(created.id)!.spec;
    expect(spec.kernel?.commandLine).toBe("console=ttyS0 root=/dev/vda");
    expect(await readFile(spec.kernel!.kernelPath)).toEqual(kernel);

    await compute.serverAction(w.caller, created.id, { kind: "stop" });
    await compute.idle();
    await compute.serverAction(w.caller, created.id, { kind: "resize", flavorRef: "2" });
    await compute.idle();
    expect(await compute.getServer(w.caller, created.id)).toMatchObject({ status: "SHUTOFF", flavorId: "2", vcpus: 2, ramMiB: 1024 });
    expect(await usage(w)).toMatchObject({ "compute.cpu": 2, "compute.ram": 1024 * 1024 * 1024, "compute.cpu pending": 0 });

    const { imageId } = await compute.serverAction(w.caller, created.id, { kind: "createImage", name: "snap1", metadata: { purpose: "test" } });
    expect(imageId).toBeDefined();
    expect((await w.plankton.refresh(imageId!)).image.status).toBe("queued"); // listed at once
    await compute.idle();
    expect(w.freezeCalls.begin).toEqual([
      {
        owner: w.alice.uuid,
        name: "snap1",
        properties: { purpose: "test", kernel_id: kernelId, os_command_line: "console=ttyS0 root=/dev/vda", image_type: "snapshot", instance_uuid: created.id, base_image_ref: bootImage },
      },
    ]);
    expect(w.freezeCalls.complete).toEqual([imageId]);
    expect(await w.engine.maps.exists(`freeze-${imageId}`)).toBe(true);
    expect(await compute.getServer(w.caller, created.id)).toMatchObject({ status: "SHUTOFF", taskState: null });
    await compute.close();
  });
});
