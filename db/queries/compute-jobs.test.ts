import { randomUUID } from "node:crypto";
import { expect, it } from "vitest";
import type { MetadataDatabase } from "../connect.ts";
import { describeEachEngine } from "../testing/databases.ts";
import { rejectsWith, seedUser } from "../testing/fixtures.ts";
import { acceptCommission, issueCommission } from "./commissions.ts";
import { getServerCharges } from "./compute-charges.ts";
import { createComputeFlavor, deleteComputeFlavor, getComputeFlavor, listComputeFlavors } from "./compute-flavors.ts";
import {
  activeComputeJobs,
  claimComputeJob,
  enqueueComputeJob,
  finishComputeJob,
  jobCancelledError,
  listComputeJobs,
  releaseComputeJob,
  resumeComputeJobs,
  withdrawComputeJob,
} from "./compute-jobs.ts";
import { createComputeKeypair, deleteComputeKeypair, listComputeKeypairs } from "./compute-keypairs.ts";
import {
  createComputeServer,
  deleteComputeServerMetadata,
  getComputeServer,
  getComputeServerMetadata,
  listComputeServers,
  setComputeServerMetadata,
  withdrawComputeServer,
} from "./compute-servers.ts";

const t0 = 1_700_000_000_000;

async function newServer(db: MetadataDatabase, userUuid: string, name = "vm1"): Promise<{ id: string; createJobId: number }> {
  const id = randomUUID();
  const { job } = await createComputeServer(
    db,
    {
      id,
      userUuid,
      name,
      flavorId: "1",
      vcpus: 1,
      ramMiB: 512,
      diskGiB: 1,
      imageId: null,
      rootVolume: `server-${id}`,
      keyName: null,
      publicKey: null,
      userData: null,
      bootProperties: {},
      metadata: { role: "web" },
    },
    { provisions: [] },
    t0,
  );
  expect(job.held).toBe(true);
  expect(await releaseComputeJob(db, job.id, t0)).toBe(true);
  return { id, createJobId: job.id };
}

/** Runs the create job to `active` the way the worker does. */
async function activate(db: MetadataDatabase, id: string): Promise<void> {
  const job = await claimComputeJob(db, t0);
  expect(job?.serverId).toBe(id);
  expect(await finishComputeJob(db, job!.id, { state: "done", server: { vmState: "active", powerState: 1 } }, t0)).toBe(true);
}

describeEachEngine("compute queries", (databases) => {
  it("create a server with its queued create job; the claim takes it once", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const { id, createJobId } = await newServer(db, alice.uuid);
    const server = await getComputeServer(db, id);
    expect(server).toMatchObject({ vmState: "building", taskState: "spawning", rootVolume: `server-${id}` });
    expect(await getComputeServerMetadata(db, id)).toEqual({ role: "web" });

    const [first, second] = await Promise.all([claimComputeJob(db, t0), claimComputeJob(db, t0)]);
    const claimed = [first, second].filter((job) => job !== undefined);
    expect(claimed.map((job) => [job.id, job.state, job.attempts])).toEqual([[createJobId, "running", 1]]);
    expect(await claimComputeJob(db, t0)).toBeUndefined();

    expect(await finishComputeJob(db, createJobId, { state: "done", server: { vmState: "active", powerState: 1 } }, t0 + 1)).toBe(true);
    expect(await finishComputeJob(db, createJobId, { state: "done" }, t0 + 2)).toBe(false);
    expect(await getComputeServer(db, id)).toMatchObject({ vmState: "active", taskState: null, powerState: 1, updatedAt: t0 + 1 });
  });

  it("one active job per server: a second action is ECONFLICT, a wrong vm_state too", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const { id } = await newServer(db, alice.uuid);
    const building = await rejectsWith(enqueueComputeJob(db, { serverId: id, action: "stop", taskState: "powering-off", actionName: "os-stop" }), "ECONFLICT");
    expect(building.message).toBe(`Cannot 'os-stop' instance ${id} while it is in task_state spawning`);
    await activate(db, id);

    const stop = await enqueueComputeJob(db, { serverId: id, action: "stop", taskState: "powering-off", allowedVmStates: ["active"] }, t0);
    expect(stop.server.taskState).toBe("powering-off");
    await rejectsWith(enqueueComputeJob(db, { serverId: id, action: "reboot", taskState: "rebooting" }), "ECONFLICT");
    const claimed = await claimComputeJob(db, t0);
    await finishComputeJob(db, claimed!.id, { state: "done", server: { vmState: "stopped", powerState: 4 } }, t0);
    const wrongState = await rejectsWith(enqueueComputeJob(db, { serverId: id, action: "stop", taskState: "powering-off", allowedVmStates: ["active"], actionName: "os-stop" }), "ECONFLICT");
    expect(wrongState.message).toBe(`Cannot 'os-stop' instance ${id} while it is in vm_state stopped`);
    await rejectsWith(enqueueComputeJob(db, { serverId: randomUUID(), action: "start", taskState: "powering-on" }), "ENOT_FOUND");
  });

  it("delete wins: it cancels a queued job, waits behind a running one, and is queued once", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const b = await newServer(db, alice.uuid, "b");
    await activate(db, b.id);
    const a = await newServer(db, alice.uuid, "a");
    const deleted = await enqueueComputeJob(db, { serverId: a.id, action: "delete", taskState: "deleting" }, t0);
    expect(deleted.cancelled.map((job) => [job.id, job.error])).toEqual([[a.createJobId, jobCancelledError]]);
    const again = await enqueueComputeJob(db, { serverId: a.id, action: "delete", taskState: "deleting" }, t0);
    expect([again.existing, again.job.id]).toEqual([true, deleted.job.id]);
    expect((await listComputeJobs(db, a.id)).map((job) => [job.action, job.state])).toEqual([
      ["create", "failed"],
      ["delete", "queued"],
    ]);

    await enqueueComputeJob(db, { serverId: b.id, action: "reboot", taskState: "rebooting" }, t0);
    // Oldest first: a's delete, then b's reboot.
    expect((await claimComputeJob(db, t0))?.serverId).toBe(a.id);
    const reboot = await claimComputeJob(db, t0);
    expect(reboot?.action).toBe("reboot");
    const deleteB = await enqueueComputeJob(db, { serverId: b.id, action: "delete", taskState: "deleting" }, t0);
    expect(deleteB.cancelled).toEqual([]);
    // The delete waits: no claim while the reboot runs.
    expect(await claimComputeJob(db, t0)).toBeUndefined();
    await finishComputeJob(db, reboot!.id, { state: "done", server: { vmState: "active" } }, t0);
    expect((await getComputeServer(db, b.id))?.taskState).toBe("deleting");
    expect((await claimComputeJob(db, t0))?.id).toBe(deleteB.job.id);
  });

  it("resume re-claims jobs a crash left running; withdraw takes back an unclaimed job", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const a = await newServer(db, alice.uuid, "a");
    await claimComputeJob(db, t0);
    expect((await resumeComputeJobs(db, t0)).map((job) => [job.id, job.attempts])).toEqual([[a.createJobId, 2]]);

    const b = await newServer(db, alice.uuid, "b");
    expect(await withdrawComputeServer(db, b.id)).toBe(true);
    // A held job is queued but not claimable; start-up releases it.
    const held = await enqueueComputeJob(db, { serverId: a.id, action: "delete", taskState: "deleting", held: true }, t0);
    expect(held.job.held).toBe(true);
    expect(await getComputeServer(db, b.id)).toBeUndefined();
    expect(await withdrawComputeServer(db, a.id)).toBe(false);

    expect(await claimComputeJob(db, t0)).toBeUndefined();
    await finishComputeJob(db, a.createJobId, { state: "done", server: { vmState: "active" } }, t0);
    expect(await claimComputeJob(db, t0)).toBeUndefined();
    expect((await resumeComputeJobs(db, t0)).map((job) => job.id)).toEqual([]);
    const deleting = await claimComputeJob(db, t0);
    expect(deleting?.id).toBe(held.job.id);
    await finishComputeJob(db, deleting!.id, { state: "done", server: { vmState: "active", taskState: null } }, t0);
    const resize = await enqueueComputeJob(db, { serverId: a.id, action: "resize", taskState: "resize_prep" }, t0);
    expect(await withdrawComputeJob(db, resize.job.id, t0)).toBe(true);
    expect((await getComputeServer(db, a.id))?.taskState).toBeNull();
    expect(await activeComputeJobs(db, a.id)).toEqual([]);
  });

  it("metadata merges or replaces; lists hide deleted servers", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const { id } = await newServer(db, alice.uuid);
    expect(await setComputeServerMetadata(db, id, { a: "1" }, false)).toEqual({ a: "1", role: "web" });
    expect(await setComputeServerMetadata(db, id, { b: "2" }, true)).toEqual({ b: "2" });
    await rejectsWith(deleteComputeServerMetadata(db, id, "nope"), "ENOT_FOUND");
    await deleteComputeServerMetadata(db, id, "b");
    expect(await getComputeServerMetadata(db, id)).toEqual({});
    const tooMany = Object.fromEntries(Array.from({ length: 129 }, (_, i) => [`k${i}`, "v"]));
    await rejectsWith(setComputeServerMetadata(db, id, tooMany, true), "EINVALID");

    await activate(db, id);
    const { job } = await enqueueComputeJob(db, { serverId: id, action: "delete", taskState: "deleting" }, t0);
    await claimComputeJob(db, t0);
    await finishComputeJob(db, job.id, { state: "done", server: { vmState: "deleted", deletedAt: t0 + 5 } }, t0 + 5);
    expect(await listComputeServers(db, { userUuid: alice.uuid })).toEqual([]);
    expect((await listComputeServers(db, { userUuid: alice.uuid, includeDeleted: true, changedSinceMs: t0 + 5 })).map((s) => s.id)).toEqual([id]);
    await rejectsWith(setComputeServerMetadata(db, id, { a: "1" }, false), "ENOT_FOUND");
  });

  it("flavors and keypairs: unique names, private flavors hidden unless asked", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    await createComputeFlavor(db, { id: "1", name: "m1.tiny", vcpus: 1, ramMiB: 512, diskGiB: 1 });
    await createComputeFlavor(db, { id: "2", name: "secret", vcpus: 2, ramMiB: 256, diskGiB: 0, isPublic: false, extraSpecs: { a: "b" } });
    await rejectsWith(createComputeFlavor(db, { id: "3", name: "m1.tiny", vcpus: 1, ramMiB: 512, diskGiB: 1 }), "EEXISTS");
    await rejectsWith(createComputeFlavor(db, { id: "4", name: "zero", vcpus: 0, ramMiB: 512, diskGiB: 1 }), "EINVALID");
    expect((await listComputeFlavors(db)).map((f) => f.id)).toEqual(["1"]);
    expect((await listComputeFlavors(db, { includePrivate: true })).map((f) => f.id)).toEqual(["2", "1"]);
    expect((await getComputeFlavor(db, "2"))?.extraSpecs).toEqual({ a: "b" });
    await deleteComputeFlavor(db, "2");
    await rejectsWith(deleteComputeFlavor(db, "2"), "ENOT_FOUND");

    await createComputeKeypair(db, { userUuid: alice.uuid, name: "k1", publicKey: "ssh-ed25519 AAAA", fingerprint: "aa:bb" });
    await rejectsWith(createComputeKeypair(db, { userUuid: alice.uuid, name: "k1", publicKey: "ssh-ed25519 AAAA", fingerprint: "aa:bb" }), "EEXISTS");
    expect((await listComputeKeypairs(db, alice.uuid)).map((k) => k.name)).toEqual(["k1"]);
    await deleteComputeKeypair(db, alice.uuid, "k1");
    await rejectsWith(deleteComputeKeypair(db, alice.uuid, "k1"), "ENOT_FOUND");
  });

  it("a server's charges: net accepted provisions and pending serials, by client key prefix", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice", { "compute.ram": 1 << 30 });
    const { id } = await newServer(db, alice.uuid);
    const other = randomUUID();
    const vm = (quantity: number) => [{ userUuid: alice.uuid, resource: "compute.vm", quantity }, { userUuid: alice.uuid, resource: "compute.ram", quantity: quantity * 512 }];
    const created = await issueCommission(db, { clientKey: `compute:${id}:1`, provisions: vm(1) });
    await acceptCommission(db, created.serial);
    const pending = await issueCommission(db, { clientKey: `compute:${id}:2`, provisions: [{ userUuid: alice.uuid, resource: "compute.ram", quantity: 1024 }] });
    await issueCommission(db, { clientKey: `compute:${other}:1`, provisions: vm(1), autoAccept: true });
    expect(await getServerCharges(db, id)).toEqual({
      accepted: [
        { userUuid: alice.uuid, resource: "compute.ram", quantity: 512 },
        { userUuid: alice.uuid, resource: "compute.vm", quantity: 1 },
      ],
      pendingSerials: [pending.serial],
    });
    await issueCommission(db, { clientKey: `compute:${id}:3`, provisions: vm(-1), autoAccept: true });
    expect((await getServerCharges(db, id)).accepted).toEqual([]);
  });
});
