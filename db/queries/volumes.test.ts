import { randomUUID } from "node:crypto";
import { expect, it } from "vitest";
import type { MetadataDatabase } from "../connect.ts";
import { describeEachEngine } from "../testing/databases.ts";
import { rejectsWith, seedUser } from "../testing/fixtures.ts";
import { acceptCommission, issueCommission } from "./commissions.ts";
import { createComputeServer } from "./compute-servers.ts";
import { getVolumeCharges, volumeCommissionPrefix } from "./volume-charges.ts";
import {
  beginDeleteVolumeSnapshot,
  createVolumeSnapshot,
  getVolumeSnapshot,
  listVolumeSnapshots,
  removeVolumeSnapshot,
  setVolumeSnapshotStatus,
  updateVolumeSnapshot,
} from "./volume-snapshots.ts";
import {
  beginDeleteBlockVolume,
  beginExtendBlockVolume,
  changeBlockVolumeMetadata,
  createBlockVolume,
  getBlockVolume,
  getBlockVolumeMetadata,
  getBlockVolumesMetadata,
  listBlockVolumes,
  removeBlockVolume,
  setBlockVolumeStatus,
  updateBlockVolume,
  volumeMetadataItemsMax,
  withdrawBlockVolume,
  type BlockVolume,
  type NewBlockVolume,
} from "./volumes.ts";

const t0 = 1_700_000_000_000;

async function newVolume(db: MetadataDatabase, userUuid: string, overrides: Partial<NewBlockVolume> = {}, nowMs = t0): Promise<BlockVolume> {
  const id = overrides.id ?? randomUUID();
  const volume = await createBlockVolume(
    db,
    { id, userUuid, name: "v", description: null, sizeGib: 1, engineName: `volume-${id}`, bootable: false, imageId: null, snapshotId: null, sourceVolid: null, metadata: {}, ...overrides },
    nowMs,
  );
  return volume;
}

async function available(db: MetadataDatabase, userUuid: string, overrides: Partial<NewBlockVolume> = {}, nowMs = t0): Promise<BlockVolume> {
  const volume = await newVolume(db, userUuid, overrides, nowMs);
  return (await setBlockVolumeStatus(db, volume.id, "creating", "available", nowMs))!;
}

/** What compute/ does when it attaches: a server row and an attachment row naming the volume. */
async function attach(db: MetadataDatabase, userUuid: string, volumeId: string, state: "attaching" | "attached" | "detaching" = "attached"): Promise<string> {
  const serverId = randomUUID();
  await createComputeServer(
    db,
    {
      id: serverId,
      userUuid,
      name: "vm",
      flavorId: "1",
      vcpus: 1,
      ramMiB: 512,
      diskGiB: 1,
      imageId: null,
      rootVolume: `server-${serverId}`,
      keyName: null,
      publicKey: null,
      userData: null,
      bootProperties: {},
      metadata: {},
    },
    {},
    t0,
  );
  const id = randomUUID();
  await db.kysely.insertInto("compute_volume_attachments").values({ id, server_id: serverId, volume_id: volumeId, device: "/dev/vdb", state, created_at: t0, updated_at: t0 }).execute();
  return id;
}

describeEachEngine("block-storage volumes", (databases) => {
  it("creates a volume creating, with metadata; gets it with no attachment; another owner's is just a row", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const volume = await newVolume(db, alice.uuid, { name: "data", description: "d", sizeGib: 3, metadata: { a: "1", b: "2" } });
    expect(volume).toMatchObject({ userUuid: alice.uuid, name: "data", description: "d", sizeGib: 3, status: "creating", bootable: false, attachment: undefined, createdAt: t0 });
    expect(await getBlockVolume(db, volume.id)).toEqual(volume);
    expect(await getBlockVolumeMetadata(db, volume.id)).toEqual({ a: "1", b: "2" });
    expect(await getBlockVolume(db, randomUUID())).toBeUndefined();
    // Names may be empty (Cinder's name is optional); sizes are whole GiB within the limit.
    await newVolume(db, alice.uuid, { name: "" });
    await rejectsWith(newVolume(db, alice.uuid, { sizeGib: 0 }), "EINVALID");
    await rejectsWith(newVolume(db, alice.uuid, { sizeGib: 1.5 }), "EINVALID");
    await rejectsWith(newVolume(db, alice.uuid, { name: "x".repeat(256) }), "EINVALID");
    await rejectsWith(newVolume(db, alice.uuid, { name: "a\u0000b" }), "EINVALID");
    await rejectsWith(newVolume(db, alice.uuid, { metadata: { "": "x" } }), "EINVALID");
    await rejectsWith(newVolume(db, alice.uuid, { imageId: randomUUID(), snapshotId: randomUUID() }), "EINVALID");
    await db.close();
  });

  it("lists newest first, pages by marker, sorts by name in byte order, filters by name and the derived status", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const bob = await seedUser(db, "bob");
    const names = ["b", "a", "é", "Z", "a"];
    const created: BlockVolume[] = [];
    for (const [i, name] of names.entries()) created.push(await available(db, alice.uuid, { name }, t0 + i));
    await available(db, bob.uuid, { name: "a" });
    const all = await listBlockVolumes(db, { userUuid: alice.uuid });
    expect(all.volumes.map((volume) => volume.id)).toEqual(created.map((volume) => volume.id).reverse());
    expect(all.next).toBeUndefined();
    // Pages of two, following the marker, give the same order.
    const seen: string[] = [];
    let marker: string | undefined;
    do {
      const page = await listBlockVolumes(db, { userUuid: alice.uuid, limit: 2, ...(marker !== undefined && { marker }) });
      seen.push(...page.volumes.map((volume) => volume.id));
      marker = page.next;
    } while (marker !== undefined);
    expect(seen).toEqual(all.volumes.map((volume) => volume.id));
    const byName = await listBlockVolumes(db, { userUuid: alice.uuid, sortKey: "name", sortDir: "asc" });
    expect(byName.volumes.map((volume) => volume.name)).toEqual(["Z", "a", "a", "b", "é"]);
    const byNamePaged = [
      ...(await listBlockVolumes(db, { userUuid: alice.uuid, sortKey: "name", sortDir: "asc", limit: 2 })).volumes,
      ...(await listBlockVolumes(db, { userUuid: alice.uuid, sortKey: "name", sortDir: "asc", marker: byName.volumes[1]!.id })).volumes,
    ];
    expect(byNamePaged.map((volume) => volume.id)).toEqual(byName.volumes.map((volume) => volume.id));
    expect((await listBlockVolumes(db, { userUuid: alice.uuid, name: "a" })).volumes).toHaveLength(2);
    await attach(db, alice.uuid, created[0]!.id);
    await attach(db, alice.uuid, created[1]!.id, "attaching");
    expect((await listBlockVolumes(db, { userUuid: alice.uuid, status: "in-use" })).volumes.map((volume) => volume.id)).toEqual([created[0]!.id]);
    expect((await listBlockVolumes(db, { userUuid: alice.uuid, status: "attaching" })).volumes.map((volume) => volume.id)).toEqual([created[1]!.id]);
    expect((await listBlockVolumes(db, { userUuid: alice.uuid, status: "available" })).volumes).toHaveLength(3);
    expect((await getBlockVolume(db, created[0]!.id))!.attachment).toMatchObject({ state: "attached", device: "/dev/vdb" });
    // A marker that is not one of the caller's volumes is not found.
    const bobs = (await listBlockVolumes(db, { userUuid: bob.uuid })).volumes[0]!;
    await rejectsWith(listBlockVolumes(db, { userUuid: alice.uuid, marker: bobs.id }), "ENOT_FOUND");
    await rejectsWith(listBlockVolumes(db, { userUuid: alice.uuid, limit: -1 }), "EINVALID");
    expect((await listBlockVolumes(db, { storedStatuses: [] })).volumes).toEqual([]);
    await db.close();
  });

  it("updates name, description, bootable; metadata merges, replaces, unsets, and is bounded", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const volume = await available(db, alice.uuid, { metadata: { a: "1" } });
    const updated = await updateBlockVolume(db, volume.id, { name: "new", description: null, bootable: true }, t0 + 5);
    expect(updated).toMatchObject({ name: "new", description: null, bootable: true, updatedAt: t0 + 5 });
    await rejectsWith(updateBlockVolume(db, randomUUID(), { name: "x" }), "ENOT_FOUND");
    expect(await changeBlockVolumeMetadata(db, volume.id, { set: { b: "2", a: "one" } })).toEqual({ a: "one", b: "2" });
    expect(await changeBlockVolumeMetadata(db, volume.id, { set: { c: "3" }, replace: true })).toEqual({ c: "3" });
    expect(await changeBlockVolumeMetadata(db, volume.id, { unset: ["c"] })).toEqual({});
    await rejectsWith(changeBlockVolumeMetadata(db, volume.id, { unset: ["c"] }), "ENOT_FOUND");
    await rejectsWith(changeBlockVolumeMetadata(db, randomUUID(), { set: { a: "1" } }), "ENOT_FOUND");
    const many = Object.fromEntries(Array.from({ length: volumeMetadataItemsMax }, (_, i) => [`k${i}`, "v"]));
    await changeBlockVolumeMetadata(db, volume.id, { set: many });
    await rejectsWith(changeBlockVolumeMetadata(db, volume.id, { set: { extra: "v" } }), "EINVALID");
    // The refused change left nothing behind (one transaction).
    expect(Object.keys(await getBlockVolumeMetadata(db, volume.id))).toHaveLength(volumeMetadataItemsMax);
    const other = await available(db, alice.uuid, { metadata: { x: "y" } });
    const byVolume = await getBlockVolumesMetadata(db, [volume.id, other.id]);
    expect(byVolume.get(other.id)).toEqual({ x: "y" });
    await db.close();
  });

  it("moves statuses only from the state it expects", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const volume = await newVolume(db, alice.uuid);
    expect(await setBlockVolumeStatus(db, volume.id, "available", "error")).toBeUndefined();
    expect((await setBlockVolumeStatus(db, volume.id, "creating", "available", t0, { sizeGib: 2 }))!).toMatchObject({ status: "available", sizeGib: 2 });
    expect(await setBlockVolumeStatus(db, randomUUID(), "creating", "available")).toBeUndefined();
    // A withdrawn create goes only while creating.
    const creating = await newVolume(db, alice.uuid, { metadata: { a: "1" } });
    expect(await withdrawBlockVolume(db, volume.id)).toBe(false);
    expect(await withdrawBlockVolume(db, creating.id)).toBe(true);
    expect(await getBlockVolume(db, creating.id)).toBeUndefined();
    await db.close();
  });

  it("deletes only an unattached volume without snapshots or clones in progress; a retried begin resumes", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const bob = await seedUser(db, "bob");
    const volume = await available(db, alice.uuid, { metadata: { a: "1" } });
    await rejectsWith(beginDeleteBlockVolume(db, volume.id, bob.uuid), "ENOT_FOUND");
    const creating = await newVolume(db, alice.uuid);
    await rejectsWith(beginDeleteBlockVolume(db, creating.id, alice.uuid), "ECONFLICT");

    const attached = await available(db, alice.uuid);
    await attach(db, alice.uuid, attached.id, "detaching");
    expect((await rejectsWith(beginDeleteBlockVolume(db, attached.id, alice.uuid), "ECONFLICT")).details).toEqual({ attachment: "detaching" });

    const { snapshot } = await createVolumeSnapshot(db, { id: randomUUID(), userUuid: alice.uuid, volumeId: volume.id, name: "s", description: null, engineName: `volsnap-${randomUUID()}`, force: false });
    expect((await rejectsWith(beginDeleteBlockVolume(db, volume.id, alice.uuid), "ECONFLICT")).message).toMatch(/dependent snapshots/);
    await setVolumeSnapshotStatus(db, snapshot.id, "creating", "available");
    expect((await beginDeleteVolumeSnapshot(db, snapshot.id, alice.uuid)).status).toBe("deleting");
    expect(await removeVolumeSnapshot(db, snapshot.id)).toBe(true);

    const clone = await newVolume(db, alice.uuid, { sourceVolid: volume.id });
    expect((await rejectsWith(beginDeleteBlockVolume(db, volume.id, alice.uuid), "ECONFLICT")).details).toEqual({ clone: clone.id });
    await setBlockVolumeStatus(db, clone.id, "creating", "available");

    const deleting = await beginDeleteBlockVolume(db, volume.id, alice.uuid, t0 + 9);
    expect(deleting).toMatchObject({ status: "deleting", updatedAt: t0 + 9 });
    expect(await beginDeleteBlockVolume(db, volume.id, alice.uuid)).toEqual(deleting);
    await rejectsWith(removeBlockVolume(db, clone.id), "ECONFLICT");
    expect(await removeBlockVolume(db, volume.id)).toBe(true);
    expect(await removeBlockVolume(db, volume.id)).toBe(false);
    expect(await getBlockVolume(db, volume.id)).toBeUndefined();
    expect(await getBlockVolumeMetadata(db, volume.id)).toEqual({});
    // error and error_deleting volumes may be deleted too.
    const failed = await newVolume(db, alice.uuid);
    await setBlockVolumeStatus(db, failed.id, "creating", "error");
    expect((await beginDeleteBlockVolume(db, failed.id, undefined)).status).toBe("deleting");
    await db.close();
  });

  it("extends only an available, unattached volume to a larger size", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const volume = await available(db, alice.uuid, { sizeGib: 2 });
    await rejectsWith(beginExtendBlockVolume(db, volume.id, alice.uuid, 2), "EINVALID");
    const attached = await available(db, alice.uuid);
    await attach(db, alice.uuid, attached.id);
    expect((await rejectsWith(beginExtendBlockVolume(db, attached.id, alice.uuid, 5), "ECONFLICT")).message).toMatch(/currently in 'in-use'/);
    const extending = await beginExtendBlockVolume(db, volume.id, alice.uuid, 5);
    expect(extending).toMatchObject({ status: "extending", sizeGib: 2 });
    await rejectsWith(beginExtendBlockVolume(db, volume.id, alice.uuid, 6), "ECONFLICT");
    expect(await setBlockVolumeStatus(db, volume.id, "extending", "available", t0, { sizeGib: 5 })).toMatchObject({ status: "available", sizeGib: 5 });
    await db.close();
  });

  it("creates from a snapshot or a volume only when the caller owns it and it is usable", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const bob = await seedUser(db, "bob");
    const source = await available(db, alice.uuid);
    await rejectsWith(newVolume(db, bob.uuid, { sourceVolid: source.id }), "ENOT_FOUND");
    await rejectsWith(newVolume(db, alice.uuid, { sourceVolid: randomUUID() }), "ENOT_FOUND");
    const creating = await newVolume(db, alice.uuid);
    await rejectsWith(newVolume(db, alice.uuid, { sourceVolid: creating.id }), "ECONFLICT");
    await attach(db, alice.uuid, source.id);
    // An attached (in-use) volume may be cloned: its snapshot comes from the NBD server.
    expect((await newVolume(db, alice.uuid, { sourceVolid: source.id })).sourceVolid).toBe(source.id);

    const other = await available(db, alice.uuid);
    const { snapshot } = await createVolumeSnapshot(db, { id: randomUUID(), userUuid: alice.uuid, volumeId: other.id, name: "", description: null, engineName: `volsnap-${randomUUID()}`, force: false });
    await rejectsWith(newVolume(db, alice.uuid, { snapshotId: snapshot.id }), "ECONFLICT");
    await setVolumeSnapshotStatus(db, snapshot.id, "creating", "available");
    await rejectsWith(newVolume(db, bob.uuid, { snapshotId: snapshot.id }), "ENOT_FOUND");
    const fromSnapshot = await newVolume(db, alice.uuid, { snapshotId: snapshot.id, sizeGib: 4 });
    expect(fromSnapshot).toMatchObject({ snapshotId: snapshot.id, sizeGib: 4, status: "creating" });
    // While that create runs, the snapshot cannot be deleted.
    expect((await rejectsWith(beginDeleteVolumeSnapshot(db, snapshot.id, alice.uuid), "ECONFLICT")).details).toEqual({ volume: fromSnapshot.id });
    await db.close();
  });

  it("snapshots: available volumes, attached ones with force; list, update, delete", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const bob = await seedUser(db, "bob");
    const volume = await available(db, alice.uuid, { sizeGib: 3 });
    const input = (overrides: Partial<Parameters<typeof createVolumeSnapshot>[1]> = {}) => {
      const id = randomUUID();
      return { id, userUuid: alice.uuid, volumeId: volume.id, name: "s", description: null, engineName: `volsnap-${id}`, force: false, ...overrides };
    };
    const first = (await createVolumeSnapshot(db, input({ name: "one" }), t0)).snapshot;
    expect(first).toMatchObject({ volumeId: volume.id, sizeGib: 3, status: "creating", name: "one" });
    await rejectsWith(createVolumeSnapshot(db, input({ userUuid: bob.uuid })), "ENOT_FOUND");
    const creating = await newVolume(db, alice.uuid);
    await rejectsWith(createVolumeSnapshot(db, input({ volumeId: creating.id })), "ECONFLICT");

    await attach(db, alice.uuid, volume.id);
    expect((await rejectsWith(createVolumeSnapshot(db, input()), "ECONFLICT")).message).toMatch(/in-use/);
    const forced = await createVolumeSnapshot(db, input({ force: true, name: "two" }), t0 + 1);
    expect(forced.attached).toBe(true);

    expect((await listVolumeSnapshots(db, { userUuid: alice.uuid })).snapshots.map((s) => s.name)).toEqual(["two", "one"]);
    const page = await listVolumeSnapshots(db, { userUuid: alice.uuid, limit: 1 });
    expect(page.snapshots.map((s) => s.name)).toEqual(["two"]);
    expect((await listVolumeSnapshots(db, { userUuid: alice.uuid, marker: page.next! })).snapshots.map((s) => s.name)).toEqual(["one"]);
    expect((await listVolumeSnapshots(db, { userUuid: bob.uuid })).snapshots).toEqual([]);
    expect((await listVolumeSnapshots(db, { userUuid: alice.uuid, name: "one", volumeId: volume.id })).snapshots).toHaveLength(1);

    expect(await updateVolumeSnapshot(db, first.id, { name: "uno", description: "d" }, t0 + 7)).toMatchObject({ name: "uno", description: "d", updatedAt: t0 + 7 });
    await rejectsWith(updateVolumeSnapshot(db, randomUUID(), { name: "x" }), "ENOT_FOUND");
    await rejectsWith(beginDeleteVolumeSnapshot(db, first.id, alice.uuid), "ECONFLICT");
    await setVolumeSnapshotStatus(db, first.id, "creating", "available");
    await rejectsWith(beginDeleteVolumeSnapshot(db, first.id, bob.uuid), "ENOT_FOUND");
    await beginDeleteVolumeSnapshot(db, first.id, alice.uuid);
    expect(await removeVolumeSnapshot(db, first.id)).toBe(true);
    expect(await getVolumeSnapshot(db, first.id)).toBeUndefined();
    await db.close();
  });

  it("a delete and a snapshot of one volume at once: exactly one decides first, the other sees it", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    for (let round = 0; round < 5; round++) {
      const volume = await available(db, alice.uuid);
      const id = randomUUID();
      const [deleted, snapped] = await Promise.allSettled([
        beginDeleteBlockVolume(db, volume.id, alice.uuid),
        createVolumeSnapshot(db, { id, userUuid: alice.uuid, volumeId: volume.id, name: "", description: null, engineName: `volsnap-${id}`, force: false }),
      ]);
      // Either the delete went first (the snapshot then sees `deleting`) or the snapshot did
      // (the delete then sees it): never both.
      expect([deleted.status, snapped.status].sort()).toEqual(["fulfilled", "rejected"]);
    }
    await db.close();
  });

  it("reads a volume's charge back from its commissions", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice", { "volume.disk": 10 * 2 ** 30 });
    const id = randomUUID();
    const create = await issueCommission(db, { clientKey: `${volumeCommissionPrefix(id)}create`, provisions: [{ userUuid: alice.uuid, resource: "volume.disk", quantity: 2 * 2 ** 30 }] });
    expect(await getVolumeCharges(db, id)).toEqual({ accepted: [], pendingSerials: [create.serial] });
    await acceptCommission(db, create.serial);
    const extend = await issueCommission(db, { clientKey: `${volumeCommissionPrefix(id)}extend:x`, provisions: [{ userUuid: alice.uuid, resource: "volume.disk", quantity: 2 ** 30 }] });
    expect(await getVolumeCharges(db, id)).toEqual({ accepted: [{ userUuid: alice.uuid, resource: "volume.disk", quantity: 2 * 2 ** 30 }], pendingSerials: [extend.serial] });
    expect(() => volumeCommissionPrefix("not-a-uuid")).toThrow();
    await db.close();
  });
});
