/**
 * Volume attachments through the compute service with the fake driver, on both engines: the
 * attach and detach jobs (hot-plug on a running server, nothing on a stopped one, the disk in
 * every later start), their compensation, a server delete that frees its volumes, jobs resumed
 * after a crash, and reconcile of attachments left half-way.
 */
import { randomUUID } from "node:crypto";
import { expect, it } from "vitest";
import { beginVolumeAttach, getComputeVolumeAttachment, listComputeJobs, listServerVolumeAttachments } from "../db/index.ts";
import { describeEachEngine } from "../db/testing/databases.ts";
import { isComputeError } from "./errors.ts";
import { FakeDriver } from "./testing/fake-driver.ts";
import { computeWorld, type ComputeWorld } from "./testing/world.ts";

const gib = 1024 ** 3;

/** A volume of alice's as gateways/volumes makes one: a row and its engine volume. */
async function newVolume(w: ComputeWorld, owner = w.alice.uuid): Promise<string> {
  const id = randomUUID();
  const now = Date.now();
  await w.db.kysely
    .insertInto("volumes")
    .values({ id, user_uuid: owner, name: "", description: null, size_gib: 1, status: "available", engine_name: `volume-${id}`, bootable: 0, image_id: null, snapshot_id: null, source_volid: null, created_at: now, updated_at: now })
    .execute();
  await w.engine.createVolume(`volume-${id}`, gib);
  return id;
}

async function activeServer(w: ComputeWorld, compute: ReturnType<ComputeWorld["service"]>): Promise<string> {
  const created = await compute.createServer(w.caller, { name: "vm", imageRef: w.imageId, flavorRef: "1" });
  await compute.idle();
  return created.id;
}

const jobStates = async (w: ComputeWorld, id: string) => (await listComputeJobs(w.db, id)).map((job) => [job.action, job.state, job.attempts]);

describeEachEngine("compute volume attachments", (databases) => {
  it("attach hot-plugs into a running server, named by the attachment with the volume id as serial; detach takes it out", async () => {
    const w = await computeWorld(databases);
    const driver = new FakeDriver();
    const compute = w.service({ driver });
    await compute.start();
    const server = await activeServer(w, compute);
    const volume = await newVolume(w);

    const attachment = await compute.attachVolume(w.caller, server, { volumeId: volume });
    // The API's answer is the row as recorded, before the job ran.
    expect(attachment).toMatchObject({ serverId: server, volumeId: volume, device: "/dev/vdc", state: "attaching" });
    await compute.idle();
    expect(await compute.getVolumeAttachment(w.caller, server, volume)).toMatchObject({ state: "attached" });
    expect(driver.instances.get(server)?.disks?.get(attachment.attachmentId)).toEqual({
      socketPath: "/run/okeanos/nbd.sock",
      exportName: `volume-${volume}`,
      id: attachment.attachmentId,
      serial: volume,
      device: "/dev/vdc",
    });
    expect(await compute.getServer(w.caller, server)).toMatchObject({ status: "ACTIVE", taskState: null, volumesAttached: [volume] });

    // A soft reboot starts the machine anew: the disk comes from the spec.
    await compute.serverAction(w.caller, server, { kind: "reboot", hard: false });
    await compute.idle();
    expect(driver.instances.get(server)?.spec.extraDisks.map((disk) => disk.id)).toEqual([attachment.attachmentId]);

    const gate = driver.gate("detachDisk");
    await compute.detachVolume(w.caller, server, volume);
    await gate.entered;
    expect((await compute.getVolumeAttachment(w.caller, server, volume)).state).toBe("detaching");
    expect(await compute.getServer(w.caller, server)).toMatchObject({ status: "ACTIVE", taskState: null, volumesAttached: [volume] });
    gate.release();
    await compute.idle();
    expect(driver.disksOf(server)).toEqual([]);
    expect(await compute.listVolumeAttachments(w.caller, server)).toEqual([]);
    expect((await compute.getServer(w.caller, server)).volumesAttached).toEqual([]);
    expect(await jobStates(w, server)).toEqual([
      ["create", "done", 1],
      ["attachVolume", "done", 1],
      ["reboot", "done", 1],
      ["detachVolume", "done", 1],
    ]);
    await compute.close();
  });

  it("a stopped server: attach plugs nothing, the next start has the disk; a detach while stopped leaves it out", async () => {
    const w = await computeWorld(databases);
    const driver = new FakeDriver();
    const compute = w.service({ driver });
    await compute.start();
    const server = await activeServer(w, compute);
    await compute.serverAction(w.caller, server, { kind: "stop" });
    await compute.idle();
    const volume = await newVolume(w);
    const attachment = await compute.attachVolume(w.caller, server, { volumeId: volume, device: "/dev/vde" });
    await compute.idle();
    expect(driver.disksOf(server)).toEqual([]);
    expect((await compute.getVolumeAttachment(w.caller, server, volume)).state).toBe("attached");
    await compute.serverAction(w.caller, server, { kind: "start" });
    await compute.idle();
    expect(driver.disksOf(server)).toEqual([attachment.attachmentId]);
    expect(driver.instances.get(server)?.spec.extraDisks[0]).toMatchObject({ device: "/dev/vde", serial: volume });

    await compute.serverAction(w.caller, server, { kind: "stop" });
    await compute.idle();
    await compute.detachVolume(w.caller, server, volume);
    await compute.idle();
    await compute.serverAction(w.caller, server, { kind: "start" });
    await compute.idle();
    expect(driver.instances.get(server)?.spec.extraDisks).toEqual([]);
    await compute.close();
  });

  it("a failed attach is undone (volume available, server ACTIVE); a failed detach leaves it attached", async () => {
    const w = await computeWorld(databases);
    const driver = new FakeDriver();
    const compute = w.service({ driver });
    await compute.start();
    const server = await activeServer(w, compute);
    const volume = await newVolume(w);

    driver.fail("attachDisk");
    await compute.attachVolume(w.caller, server, { volumeId: volume });
    await compute.idle();
    expect(await compute.listVolumeAttachments(w.caller, server)).toEqual([]);
    expect(await compute.getServer(w.caller, server)).toMatchObject({ status: "ACTIVE", fault: null });
    expect(driver.callsOf("detachDisk")).toEqual([server]); // the compensation takes out what may be in
    driver.fail("attachDisk", null);

    await compute.attachVolume(w.caller, server, { volumeId: volume });
    await compute.idle();
    driver.fail("detachDisk");
    await compute.detachVolume(w.caller, server, volume);
    await compute.idle();
    expect((await compute.getVolumeAttachment(w.caller, server, volume)).state).toBe("attached");
    expect(await compute.getServer(w.caller, server)).toMatchObject({ status: "ACTIVE", fault: null });
    expect((await listComputeJobs(w.db, server)).at(-1)).toMatchObject({ action: "detachVolume", state: "failed", error: "fake detachDisk failure" });
    driver.fail("detachDisk", null);
    await compute.detachVolume(w.caller, server, volume);
    await compute.idle();
    expect(await compute.listVolumeAttachments(w.caller, server)).toEqual([]);
    await compute.close();
  });

  it("refusals reach the caller as Nova's: another's volume 404, in use 400, a second attach while one waits 409", async () => {
    const w = await computeWorld(databases);
    const cli = w.service({ worker: false });
    const serve = w.service();
    await serve.start();
    const server = await activeServer(w, serve);
    const volume = await newVolume(w);
    const foreign = await newVolume(w, randomUUID());
    const code = (promise: Promise<unknown>) => promise.then(() => "resolved", (error: unknown) => (isComputeError(error) ? error.code : String(error)));
    expect(await code(cli.attachVolume(w.caller, server, { volumeId: foreign }))).toBe("ENOT_FOUND");
    await cli.attachVolume(w.caller, server, { volumeId: volume });
    expect(await code(cli.attachVolume(w.caller, server, { volumeId: await newVolume(w) }))).toBe("ECONFLICT");
    expect(await code(cli.serverAction(w.caller, server, { kind: "stop" }))).toBe("ECONFLICT");
    // The serving worker finds the CLI's job at its next poll.
    while ((await cli.getVolumeAttachment(w.caller, server, volume)).state !== "attached") await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await code(cli.attachVolume(w.caller, server, { volumeId: volume }))).toBe("EBAD_REQUEST");
    expect(await code(cli.detachVolume(w.caller, server, foreign))).toBe("ENOT_FOUND");
    expect(await code(cli.getVolumeAttachment(w.caller, server, foreign))).toBe("ENOT_FOUND");
    await serve.close();
  });

  it("deleting the server frees its volumes, never deletes them; a queued attach is cancelled by the delete", async () => {
    const w = await computeWorld(databases);
    const cli = w.service({ worker: false });
    const serve = w.service();
    await serve.start();
    const server = await activeServer(w, serve);
    const attached = await newVolume(w);
    await serve.attachVolume(w.caller, server, { volumeId: attached });
    await serve.idle();
    await serve.close();

    const queued = await newVolume(w);
    await cli.attachVolume(w.caller, server, { volumeId: queued }); // no worker runs it
    await cli.deleteServer(w.caller, server);
    const next = w.service();
    await next.start();
    await next.idle();
    expect(await listServerVolumeAttachments(w.db, server)).toEqual([]);
    for (const volume of [attached, queued]) expect(await w.engine.maps.exists(`volume-${volume}`)).toBe(true);
    expect((await jobStates(w, server)).map(([action, state]) => `${action} ${state}`)).toEqual(["create done", "attachVolume done", "attachVolume failed", "delete done"]);
    await next.close();
  });

  it("an attach and a detach interrupted by a crash are finished by the next process, the disk plugged once", async () => {
    const w = await computeWorld(databases);
    const dying = new FakeDriver();
    const first = w.service({ driver: dying });
    await first.start();
    const server = await activeServer(w, first);
    const volume = await newVolume(w);
    dying.hang("attachDisk");
    const attachment = await first.attachVolume(w.caller, server, { volumeId: volume });
    await dying.hung();
    await first.close({ abandon: true });

    const driver = new FakeDriver();
    driver.instances.set(server, { ...dying.instances.get(server)!, disks: new Map() }); // the same QEMU, the disk not in yet
    const second = w.service({ driver });
    await second.start();
    await second.idle();
    expect((await getComputeVolumeAttachment(w.db, attachment.attachmentId))?.state).toBe("attached");
    expect(driver.disksOf(server)).toEqual([attachment.attachmentId]);
    expect(await jobStates(w, server)).toEqual([
      ["create", "done", 1],
      ["attachVolume", "done", 2],
    ]);

    driver.hang("detachDisk");
    await second.detachVolume(w.caller, server, volume);
    await driver.hung();
    await second.close({ abandon: true });
    const after = new FakeDriver();
    after.instances.set(server, driver.instances.get(server)!);
    const third = w.service({ driver: after });
    await third.start();
    await third.idle();
    expect(after.disksOf(server)).toEqual([]);
    expect(await listServerVolumeAttachments(w.db, server)).toEqual([]);
    expect((await jobStates(w, server)).at(-1)).toEqual(["detachVolume", "done", 2]);
    await third.close();
  });

  it("reconcile: an attach left without its job is undone, a detach left without its job is attached again", async () => {
    const w = await computeWorld(databases);
    const driver = new FakeDriver();
    const first = w.service({ driver });
    await first.start();
    const server = await activeServer(w, first);
    const detaching = await newVolume(w);
    const attachment = await first.attachVolume(w.caller, server, { volumeId: detaching });
    await first.idle();
    await first.close();
    // As a compensation that failed would leave them: rows half-way, no job.
    await w.db.kysely.updateTable("compute_volume_attachments").set({ state: "detaching" }).where("id", "=", attachment.attachmentId).execute();
    const attaching = await newVolume(w);
    const stray = await beginVolumeAttach(w.db, { serverId: server, volumeId: attaching });
    await w.db.kysely.updateTable("compute_jobs").set({ state: "failed" }).where("id", "=", stray.job.id).execute();

    const second = w.service({ driver });
    const report = await second.start();
    expect(report?.repaired[server]).toBe(`detach of volume ${detaching} without a job → attached; attach of volume ${attaching} without a job → undone`);
    expect((await listServerVolumeAttachments(w.db, server)).map((row) => [row.volumeId, row.state])).toEqual([[detaching, "attached"]]);
    await second.close();
  });
});
