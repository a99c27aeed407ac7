/**
 * compute-attachments.ts on both engines: attach and detach begin with their job in one
 * transaction, with every refusal Nova makes (wrong owner, volume not available, device taken
 * or invalid, too many disks, another job, a server state), the complete and undo steps are
 * idempotent, a DELETE cancels a queued attach and the server's rows go with it, and two
 * attaches of one volume racing on PostgreSQL leave exactly one attachment.
 */
import { randomUUID } from "node:crypto";
import { expect, it } from "vitest";
import type { MetadataDatabase } from "../connect.ts";
import { describeEachEngine } from "../testing/databases.ts";
import { rejectsWith, seedUser } from "../testing/fixtures.ts";
import {
  attachmentsPerServerMax,
  beginVolumeAttach,
  beginVolumeDetach,
  completeVolumeAttach,
  completeVolumeDetach,
  getComputeVolumeAttachment,
  listServerVolumeAttachments,
  removeServerVolumeAttachments,
  requestedDevice,
  restoreVolumeAttachment,
  undoVolumeAttach,
} from "./compute-attachments.ts";
import { activeComputeJobs, claimComputeJob, enqueueComputeJob, finishComputeJob, listComputeJobs, releaseComputeJob } from "./compute-jobs.ts";
import { createComputeServer, getComputeServer } from "./compute-servers.ts";

const t0 = 1_700_000_000_000;

async function newServer(db: MetadataDatabase, userUuid: string): Promise<string> {
  const id = randomUUID();
  const { job } = await createComputeServer(
    db,
    { id, userUuid, name: "vm", flavorId: "1", vcpus: 1, ramMiB: 512, diskGiB: 1, imageId: null, rootVolume: `server-${id}`, keyName: null, publicKey: null, userData: null, bootProperties: {}, metadata: {} },
    { provisions: [] },
    t0,
  );
  await releaseComputeJob(db, job.id, t0);
  await runNextJob(db, { vmState: "active", powerState: 1 });
  return id;
}

/** Claims the next job and finishes it done, as the worker would. */
async function runNextJob(db: MetadataDatabase, server: { vmState?: "active" | "stopped"; powerState?: number } = {}): Promise<string> {
  const job = await claimComputeJob(db, t0);
  expect(job).toBeDefined();
  await finishComputeJob(db, job!.id, { state: "done", server }, t0);
  return job!.action;
}

async function newVolume(db: MetadataDatabase, userUuid: string, status: "available" | "creating" = "available"): Promise<string> {
  const id = randomUUID();
  await db.kysely
    .insertInto("volumes")
    .values({ id, user_uuid: userUuid, name: "", description: null, size_gib: 1, status, engine_name: `volume-${id}`, bootable: 0, image_id: null, snapshot_id: null, source_volid: null, created_at: t0, updated_at: t0 })
    .execute();
  return id;
}

describeEachEngine("compute volume attachments", (databases) => {
  it("attach: the row (attaching, /dev/vdc on) and its job in one go; complete makes it attached; the job blocks other actions", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const server = await newServer(db, alice.uuid);
    const volume = await newVolume(db, alice.uuid);

    const { attachment, job } = await beginVolumeAttach(db, { serverId: server, volumeId: volume }, t0 + 1);
    expect(attachment).toMatchObject({ serverId: server, volumeId: volume, volumeName: `volume-${volume}`, device: "/dev/vdc", state: "attaching" });
    expect(job).toMatchObject({ action: "attachVolume", state: "queued", args: { attachmentId: attachment.id, volumeId: volume } });
    // Nova runs attach with no task_state: the server stays ACTIVE, but the job blocks.
    expect((await getComputeServer(db, server))?.taskState).toBeNull();
    const conflict = await rejectsWith(enqueueComputeJob(db, { serverId: server, action: "stop", taskState: "powering-off" }), "ECONFLICT");
    expect(conflict.message).toMatch(/while it is in task_state attachVolume/);

    expect(await completeVolumeAttach(db, attachment.id)).toBe(true);
    expect(await completeVolumeAttach(db, attachment.id)).toBe(true); // a replay
    expect(await runNextJob(db)).toBe("attachVolume");
    expect(await listServerVolumeAttachments(db, server)).toMatchObject([{ id: attachment.id, state: "attached", device: "/dev/vdc" }]);

    // The next one takes vdd; a requested device is honoured when free.
    const second = await beginVolumeAttach(db, { serverId: server, volumeId: await newVolume(db, alice.uuid), device: "/dev/vdf" });
    expect(second.attachment.device).toBe("/dev/vdf");
    await undoVolumeAttach(db, second.attachment.id);
    await undoVolumeAttach(db, second.attachment.id); // a replay
    expect(await getComputeVolumeAttachment(db, second.attachment.id)).toBeUndefined();
    await runNextJob(db);
    const third = await beginVolumeAttach(db, { serverId: server, volumeId: await newVolume(db, alice.uuid) });
    expect(third.attachment.device).toBe("/dev/vdd");
  });

  it("refuses what Nova refuses: not found, another owner's volume, not available, in use, device taken or invalid, states", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const bob = await seedUser(db, "bob");
    const server = await newServer(db, alice.uuid);
    const volume = await newVolume(db, alice.uuid);

    await rejectsWith(beginVolumeAttach(db, { serverId: server, volumeId: randomUUID() }), "ENOT_FOUND");
    await rejectsWith(beginVolumeAttach(db, { serverId: randomUUID(), volumeId: volume }), "ENOT_FOUND");
    const bobs = await newVolume(db, bob.uuid);
    expect((await rejectsWith(beginVolumeAttach(db, { serverId: server, volumeId: bobs }), "ENOT_FOUND")).message).toBe(`Volume ${bobs} could not be found.`);
    const creating = await newVolume(db, alice.uuid, "creating");
    expect((await rejectsWith(beginVolumeAttach(db, { serverId: server, volumeId: creating }), "EINVALID")).message).toMatch(/status must be 'available'. Currently in 'creating'/);
    for (const bad of ["/dev/vda", "/dev/vdb", "/dev/vdzz", "vdc", "/dev/vds"]) {
      expect((await rejectsWith(beginVolumeAttach(db, { serverId: server, volumeId: volume, device: bad }), "EINVALID")).message).toMatch(/is invalid/);
    }
    expect(requestedDevice("/dev/sdc")).toBe("/dev/vdc");
    expect(requestedDevice("/dev/xvde")).toBe("/dev/vde");
    // Nothing was left behind by the refusals: no row, no job.
    expect(await listServerVolumeAttachments(db, server)).toEqual([]);
    expect(await activeComputeJobs(db, server)).toEqual([]);

    const first = await beginVolumeAttach(db, { serverId: server, volumeId: volume, device: "/dev/vdc" });
    await completeVolumeAttach(db, first.attachment.id);
    await runNextJob(db);
    expect((await rejectsWith(beginVolumeAttach(db, { serverId: server, volumeId: volume }), "EINVALID")).message).toMatch(/Currently in 'in-use'/);
    const other = await newVolume(db, alice.uuid);
    expect((await rejectsWith(beginVolumeAttach(db, { serverId: server, volumeId: other, device: "/dev/vdc" }), "ECONFLICT")).message).toBe("The supplied device path (/dev/vdc) is in use.");
    // In use on another server of the same owner too.
    const another = await newServer(db, alice.uuid);
    await rejectsWith(beginVolumeAttach(db, { serverId: another, volumeId: volume }), "EINVALID");

    // A stopped server takes attachments; an errored one does not.
    await enqueueComputeJob(db, { serverId: another, action: "stop", taskState: "powering-off" });
    await runNextJob(db, { vmState: "stopped", powerState: 4 });
    await beginVolumeAttach(db, { serverId: another, volumeId: other });
    await runNextJob(db);
    await db.kysely.updateTable("compute_servers").set({ vm_state: "error" }).where("id", "=", another).execute();
    const state = await rejectsWith(beginVolumeAttach(db, { serverId: another, volumeId: await newVolume(db, alice.uuid) }), "ECONFLICT");
    expect(state.message).toBe(`Cannot 'attach_volume' instance ${another} while it is in vm_state error`);
    expect((await rejectsWith(beginVolumeDetach(db, { serverId: another, volumeId: other }), "ECONFLICT")).message).toMatch(/detach_volume/);
  });

  it("at most attachmentsPerServerMax volumes: the next is Nova's TooManyDiskDevices", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const server = await newServer(db, alice.uuid);
    const devices: string[] = [];
    for (let index = 0; index < attachmentsPerServerMax; index++) {
      const { attachment } = await beginVolumeAttach(db, { serverId: server, volumeId: await newVolume(db, alice.uuid) });
      devices.push(attachment.device);
      await runNextJob(db);
    }
    expect(devices.at(0)).toBe("/dev/vdc");
    expect(devices.at(-1)).toBe("/dev/vdr");
    const error = await rejectsWith(beginVolumeAttach(db, { serverId: server, volumeId: await newVolume(db, alice.uuid) }), "EQUOTA_EXCEEDED");
    expect(error.message).toMatch(/maximum allowed number of disk devices \(16\)/);
  });

  it("detach: attached → detaching with its job; complete removes the row, restore puts it back; only attached rows detach", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const server = await newServer(db, alice.uuid);
    const volume = await newVolume(db, alice.uuid);
    const { attachment } = await beginVolumeAttach(db, { serverId: server, volumeId: volume });
    // While attaching, the attach job is there: a detach conflicts.
    await rejectsWith(beginVolumeDetach(db, { serverId: server, volumeId: volume }), "ECONFLICT");
    await completeVolumeAttach(db, attachment.id);
    await runNextJob(db);

    await rejectsWith(beginVolumeDetach(db, { serverId: server, volumeId: randomUUID() }), "ENOT_FOUND");
    const loose = await newVolume(db, alice.uuid);
    expect((await rejectsWith(beginVolumeDetach(db, { serverId: server, volumeId: loose }), "ENOT_FOUND")).message).toBe(`volume_id not found: ${loose}`);

    const detach = await beginVolumeDetach(db, { serverId: server, volumeId: volume });
    expect(detach.attachment).toMatchObject({ id: attachment.id, state: "detaching" });
    expect(detach.job).toMatchObject({ action: "detachVolume", args: { attachmentId: attachment.id, volumeId: volume } });
    // A failed detach: attached again, and a second detach may begin.
    await restoreVolumeAttachment(db, attachment.id);
    await runNextJob(db);
    expect((await getComputeVolumeAttachment(db, attachment.id))?.state).toBe("attached");
    await beginVolumeDetach(db, { serverId: server, volumeId: volume });
    await completeVolumeDetach(db, attachment.id);
    await completeVolumeDetach(db, attachment.id); // a replay
    await runNextJob(db);
    expect(await listServerVolumeAttachments(db, server)).toEqual([]);

    // A row left attaching without its job (a compensation that failed) does not detach.
    const stuck = await beginVolumeAttach(db, { serverId: server, volumeId: volume });
    await runNextJob(db);
    expect((await rejectsWith(beginVolumeDetach(db, { serverId: server, volumeId: volume }), "EINVALID")).message).toMatch(/Currently: attaching/);
    expect((await getComputeVolumeAttachment(db, stuck.attachment.id))?.state).toBe("attaching");
  });

  it("a DELETE cancels a queued attach; the server's rows go with removeServerVolumeAttachments", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const server = await newServer(db, alice.uuid);
    const volume = await newVolume(db, alice.uuid);
    await beginVolumeAttach(db, { serverId: server, volumeId: volume });
    const deleting = await enqueueComputeJob(db, { serverId: server, action: "delete", taskState: "deleting" });
    expect(deleting.cancelled.map((job) => job.action)).toEqual(["attachVolume"]);
    expect(await removeServerVolumeAttachments(db, server)).toBe(1);
    expect(await listServerVolumeAttachments(db, server)).toEqual([]);
    expect((await listComputeJobs(db, server)).map((job) => [job.action, job.state])).toEqual([
      ["create", "done"],
      ["attachVolume", "failed"],
      ["delete", "queued"],
    ]);
  });

  it("two attaches of one volume at once (two servers): exactly one wins", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const servers = [await newServer(db, alice.uuid), await newServer(db, alice.uuid)];
    const volume = await newVolume(db, alice.uuid);
    const results = await Promise.allSettled(servers.map((serverId) => beginVolumeAttach(db, { serverId, volumeId: volume })));
    expect(results.map((result) => result.status).sort()).toEqual(["fulfilled", "rejected"]);
    const rows = await db.kysely.selectFrom("compute_volume_attachments").select("server_id").where("volume_id", "=", volume).execute();
    expect(rows).toHaveLength(1);
  });
});
