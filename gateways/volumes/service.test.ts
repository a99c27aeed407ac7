import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createBlockVolume, createVolumeSnapshot, getBlockVolume, getQuota, getVolumeCharges, issueCommission, type MetadataDatabase } from "../../db/index.ts";
import { describeEachEngine } from "../../db/testing/databases.ts";
import type { Engine } from "../../engine/engine.ts";
import { EngineError } from "../../engine/errors.ts";
import { isVolumeError, VolumeError } from "./errors.ts";
import { createKey } from "./quota.ts";
import { reconcileVolumes } from "./reconcile.ts";
import { engineNames } from "./service.ts";
import { blockSizeBytes, gib, imageData, volumeWorld, type VolumeWorld } from "./testing/world.ts";

async function rejectsWithCode(promise: Promise<unknown>, code: VolumeError["code"]): Promise<VolumeError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(isVolumeError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  return error as VolumeError;
}

async function diskUsage(world: VolumeWorld, userUuid = world.alice.uuid): Promise<{ usage: number; pending: number }> {
  const quota = await getQuota(world.db, userUuid, "volume.disk");
  return { usage: quota.usage, pending: quota.pendingIncrease };
}

/** Block objects (content-addressed and private) in the store. */
async function blockObjects(engine: Engine): Promise<number> {
  const { byKind } = await engine.stats();
  return (byKind["content-block"]?.objects ?? 0) + (byKind["private-block"]?.objects ?? 0);
}

async function readVolume(engine: Engine, name: string, lengthBytes: number): Promise<Buffer> {
  const volume = await engine.openVolume(name);
  try {
    return Buffer.from(await volume.read(0, lengthBytes));
  } finally {
    await volume.close();
  }
}

async function writeVolume(engine: Engine, name: string, data: Buffer): Promise<void> {
  const volume = await engine.openVolume(name);
  try {
    await volume.write(0, data);
    await volume.flush();
  } finally {
    await volume.close();
  }
}

/** An engine whose `method` fails; everything else is the real one. */
function failing(engine: Engine, method: "clone" | "createVolume" | "delete" | "resize" | "snapshot"): Engine {
  const broken = Object.create(engine) as Engine;
  Object.defineProperty(broken, method, { value: async () => Promise.reject(new EngineError("EIO", `injected ${method} failure`)) });
  return broken;
}

/** What compute/ writes when it attaches a volume (db/queries/compute-attachments.ts). */
async function attach(db: MetadataDatabase, userUuid: string, volumeId: string): Promise<void> {
  const serverId = randomUUID();
  const now = Date.now();
  await db.kysely
    .insertInto("compute_servers")
    .values({
      id: serverId, user_uuid: userUuid, name: "vm", flavor_id: "1", vcpus: 1, ram_mib: 512, disk_gib: 1, image_id: null, root_volume: `server-${serverId}`,
      key_name: null, public_key: null, user_data: null, boot_properties: "{}", vm_state: "active", task_state: null, power_state: 1, progress: 100, fault: null,
      created_at: now, updated_at: now, launched_at: now, terminated_at: null, deleted_at: null,
    })
    .execute();
  await db.kysely.insertInto("compute_volume_attachments").values({ id: randomUUID(), server_id: serverId, volume_id: volumeId, device: "/dev/vdb", state: "attached", created_at: now, updated_at: now }).execute();
}

describeEachEngine("VolumeService", (databases) => {
  describe("create", () => {
    it("an empty volume: an engine volume of the size, available, charged; getOwned hides others'", async () => {
      const world = await volumeWorld(databases);
      const volume = await world.volumes.createVolume(world.alice.uuid, { sizeGib: 2, name: "data", metadata: { a: "1" } });
      expect(volume).toMatchObject({ name: "data", sizeGib: 2, status: "available", bootable: false, metadata: { a: "1" }, engineName: `volume-${volume.id}` });
      expect((await world.engine.info(volume.engineName)).header.sizeBytes).toBe(2 * gib);
      expect(await diskUsage(world)).toEqual({ usage: 2 * gib, pending: 0 });
      expect(await world.volumes.getOwned(world.alice.uuid, volume.id)).toEqual({
        id: volume.id, userUuid: world.alice.uuid, name: "data", sizeGib: 2, status: "available", engineName: volume.engineName, bootable: false,
      });
      expect((await rejectsWithCode(world.volumes.getOwned(world.bob.uuid, volume.id), "ENOT_FOUND")).message).toBe(`Volume ${volume.id} could not be found.`);
      await rejectsWithCode(world.volumes.getOwned(world.alice.uuid, randomUUID()), "ENOT_FOUND");
      await rejectsWithCode(world.volumes.createVolume(world.alice.uuid, {}), "EBAD_REQUEST");
      await rejectsWithCode(world.volumes.createVolume(world.alice.uuid, { sizeGib: 1, imageRef: world.imageId, snapshotId: randomUUID() }), "EBAD_REQUEST");
    });

    it("from an image: a clone of its map, bootable, the image's bytes, no block stored anew", async () => {
      const world = await volumeWorld(databases);
      const before = await blockObjects(world.engine);
      const volume = await world.volumes.createVolume(world.alice.uuid, { sizeGib: 1, imageRef: world.imageId });
      expect(volume).toMatchObject({ bootable: true, imageId: world.imageId, status: "available" });
      expect(volume.imageMetadata).toMatchObject({ image_id: world.imageId, image_name: "cirros", disk_format: "raw", os_distro: "cirros" });
      expect(await blockObjects(world.engine)).toBe(before);
      expect((await readVolume(world.engine, volume.engineName, imageData.length + blockSizeBytes)).equals(Buffer.concat([imageData, Buffer.alloc(blockSizeBytes)]))).toBe(true);
      // By name too; bob does not see alice's private image.
      expect((await world.volumes.createVolume(world.alice.uuid, { sizeGib: 1, imageRef: "cirros" })).imageId).toBe(world.imageId);
      expect((await rejectsWithCode(world.volumes.createVolume(world.bob.uuid, { sizeGib: 1, imageRef: world.imageId }), "EBAD_REQUEST")).message).toMatch(/Invalid image identifier/);
    });

    it("from a snapshot and from a volume: clones, sized at least as the source, no block copied", async () => {
      const world = await volumeWorld(databases);
      const source = await world.volumes.createVolume(world.alice.uuid, { sizeGib: 2 });
      const data = Buffer.alloc(2 * blockSizeBytes, "written-by-a-guest-");
      await writeVolume(world.engine, source.engineName, data);
      const snapshot = await world.volumes.createSnapshot(world.alice.uuid, { volumeId: source.id, name: "s1" });
      expect(snapshot).toMatchObject({ status: "available", sizeGib: 2, name: "s1", engineName: `volsnap-${snapshot.id}` });
      const before = await blockObjects(world.engine);
      const fromSnapshot = await world.volumes.createVolume(world.alice.uuid, { snapshotId: snapshot.id, name: "v2" });
      expect(fromSnapshot).toMatchObject({ sizeGib: 2, snapshotId: snapshot.id, status: "available", bootable: false });
      const fromVolume = await world.volumes.createVolume(world.alice.uuid, { sourceVolid: source.id, sizeGib: 3 });
      expect(fromVolume).toMatchObject({ sizeGib: 3, sourceVolid: source.id, status: "available" });
      expect(await blockObjects(world.engine)).toBe(before);
      for (const volume of [fromSnapshot, fromVolume]) expect((await readVolume(world.engine, volume.engineName, data.length)).equals(data)).toBe(true);
      // The transient snapshot a volume clone is made from is gone.
      expect(await world.engine.maps.exists(engineNames.cloneSource(fromVolume.id))).toBe(false);
      expect((await rejectsWithCode(world.volumes.createVolume(world.alice.uuid, { snapshotId: snapshot.id, sizeGib: 1 }), "EBAD_REQUEST")).message).toMatch(/cannot be smaller than the snapshot size 2GB/);
      expect((await rejectsWithCode(world.volumes.createVolume(world.bob.uuid, { snapshotId: snapshot.id }), "ENOT_FOUND")).message).toMatch(/Snapshot/);
      expect(await diskUsage(world)).toEqual({ usage: 7 * gib, pending: 0 });
    });

    it("over quota: Cinder's 413 message, no volume left, nothing charged", async () => {
      const world = await volumeWorld(databases);
      await world.setDiskLimitGib(3);
      await world.volumes.createVolume(world.alice.uuid, { sizeGib: 2 });
      const error = await rejectsWithCode(world.volumes.createVolume(world.alice.uuid, { sizeGib: 2, name: "big" }), "EQUOTA");
      expect(error.message).toBe("VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed gigabytes quota. Requested 2G, quota is 3G and 2G has been consumed.");
      expect((await world.volumes.listVolumes(world.alice.uuid, {})).volumes.map((volume) => volume.name)).toEqual([""]);
      expect(await diskUsage(world)).toEqual({ usage: 2 * gib, pending: 0 });
    });

    it("a failed engine clone: the volume is `error`, its reservation rejected, nothing left in the store", async () => {
      const world = await volumeWorld(databases);
      const broken = world.service({ engine: failing(world.engine, "clone") });
      const error = await broken.createVolume(world.alice.uuid, { sizeGib: 1, imageRef: world.imageId }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(EngineError);
      const [volume] = (await world.volumes.listVolumes(world.alice.uuid, {})).volumes;
      expect(volume).toMatchObject({ status: "error", bootable: true });
      expect(await world.engine.maps.exists(volume!.engineName)).toBe(false);
      expect(await diskUsage(world)).toEqual({ usage: 0, pending: 0 });
      // An errored volume is deleted like any other.
      await world.volumes.deleteVolume(world.alice.uuid, volume!.id);
      expect((await world.volumes.listVolumes(world.alice.uuid, {})).volumes).toEqual([]);
    });
  });

  describe("delete, extend, snapshots", () => {
    it("delete removes the engine volume and gives the quota back; refused with snapshots unless cascaded", async () => {
      const world = await volumeWorld(databases);
      const volume = await world.volumes.createVolume(world.alice.uuid, { sizeGib: 2 });
      const snapshot = await world.volumes.createSnapshot(world.alice.uuid, { volumeId: volume.id });
      expect((await rejectsWithCode(world.volumes.deleteVolume(world.alice.uuid, volume.id), "EINVALID_STATE")).message).toMatch(/dependent snapshots/);
      await rejectsWithCode(world.volumes.deleteVolume(world.bob.uuid, volume.id), "ENOT_FOUND");
      await world.volumes.deleteVolume(world.alice.uuid, volume.id, { cascade: true });
      expect(await world.engine.maps.exists(volume.engineName)).toBe(false);
      expect(await world.engine.maps.exists(snapshot.engineName)).toBe(false);
      expect(await diskUsage(world)).toEqual({ usage: 0, pending: 0 });
      await rejectsWithCode(world.volumes.getVolume(world.alice.uuid, volume.id), "ENOT_FOUND");
      expect(await getVolumeCharges(world.db, volume.id)).toEqual({ accepted: [], pendingSerials: [] });
    });

    it("an attached volume: not deleted, not extended; snapshotted only with force, through the NBD server", async () => {
      const calls: string[] = [];
      const world = await volumeWorld(databases);
      const volumes = world.service({
        nbd: {
          snapshot: async (volume, snapshotName) => {
            calls.push(`${volume} → ${snapshotName}`);
            await world.engine.snapshot(volume, snapshotName);
          },
        },
      });
      const volume = await volumes.createVolume(world.alice.uuid, { sizeGib: 1 });
      await attach(world.db, world.alice.uuid, volume.id);
      expect((await volumes.getOwned(world.alice.uuid, volume.id)).status).toBe("in-use");
      expect((await volumes.getVolume(world.alice.uuid, volume.id)).attachment).toMatchObject({ state: "attached", device: "/dev/vdb" });
      await rejectsWithCode(volumes.deleteVolume(world.alice.uuid, volume.id), "EINVALID_STATE");
      expect((await rejectsWithCode(volumes.extendVolume(world.alice.uuid, volume.id, 2), "EINVALID_STATE")).message).toMatch(/in-use/);
      expect(await diskUsage(world)).toEqual({ usage: gib, pending: 0 });
      await rejectsWithCode(volumes.createSnapshot(world.alice.uuid, { volumeId: volume.id }), "EINVALID_STATE");
      const snapshot = await volumes.createSnapshot(world.alice.uuid, { volumeId: volume.id, force: true });
      expect(snapshot.status).toBe("available");
      expect(calls).toEqual([`${volume.engineName} → ${snapshot.engineName}`]);
    });

    it("extend grows the engine volume and charges the difference; over quota it stays as it was", async () => {
      const world = await volumeWorld(databases);
      await world.setDiskLimitGib(4);
      const volume = await world.volumes.createVolume(world.alice.uuid, { sizeGib: 1 });
      await world.volumes.extendVolume(world.alice.uuid, volume.id, 3);
      expect((await world.volumes.getOwned(world.alice.uuid, volume.id)).sizeGib).toBe(3);
      expect((await world.engine.info(volume.engineName)).header.sizeBytes).toBe(3 * gib);
      expect(await diskUsage(world)).toEqual({ usage: 3 * gib, pending: 0 });
      await rejectsWithCode(world.volumes.extendVolume(world.alice.uuid, volume.id, 5), "EQUOTA");
      await rejectsWithCode(world.volumes.extendVolume(world.alice.uuid, volume.id, 3), "EBAD_REQUEST");
      expect(await world.volumes.getOwned(world.alice.uuid, volume.id)).toMatchObject({ sizeGib: 3, status: "available" });
      // A failed resize: error_extending, the reservation rejected.
      const broken = world.service({ engine: failing(world.engine, "resize") });
      await expect(broken.extendVolume(world.alice.uuid, volume.id, 4)).rejects.toThrow(/injected resize/);
      expect((await world.volumes.getOwned(world.alice.uuid, volume.id)).status).toBe("error_extending");
      expect(await diskUsage(world)).toEqual({ usage: 3 * gib, pending: 0 });
      await world.volumes.deleteVolume(world.alice.uuid, volume.id);
      expect(await diskUsage(world)).toEqual({ usage: 0, pending: 0 });
    });

    it("snapshot delete removes its map; update renames it; a failed snapshot is `error`", async () => {
      const world = await volumeWorld(databases);
      const volume = await world.volumes.createVolume(world.alice.uuid, { sizeGib: 1 });
      const snapshot = await world.volumes.createSnapshot(world.alice.uuid, { volumeId: volume.id, name: "a" });
      expect((await world.volumes.updateSnapshot(world.alice.uuid, snapshot.id, { name: "b", description: "d" })).name).toBe("b");
      await rejectsWithCode(world.volumes.updateSnapshot(world.bob.uuid, snapshot.id, { name: "c" }), "ENOT_FOUND");
      await world.volumes.deleteSnapshot(world.alice.uuid, snapshot.id);
      expect(await world.engine.maps.exists(snapshot.engineName)).toBe(false);
      await rejectsWithCode(world.volumes.getSnapshot(world.alice.uuid, snapshot.id), "ENOT_FOUND");
      const broken = world.service({ engine: failing(world.engine, "snapshot") });
      await expect(broken.createSnapshot(world.alice.uuid, { volumeId: volume.id })).rejects.toThrow(/injected snapshot/);
      expect((await world.volumes.listSnapshots(world.alice.uuid, {})).snapshots.map((s) => s.status)).toEqual(["error"]);
    });

    it("limits: the volume.disk quota in GiB and the counts", async () => {
      const world = await volumeWorld(databases);
      await world.setDiskLimitGib(10);
      const volume = await world.volumes.createVolume(world.alice.uuid, { sizeGib: 2 });
      await world.volumes.createSnapshot(world.alice.uuid, { volumeId: volume.id });
      expect(await world.volumes.limits(world.alice.uuid)).toMatchObject({ maxTotalVolumeGigabytes: 10, totalGigabytesUsed: 2, totalVolumesUsed: 1, totalSnapshotsUsed: 1, maxTotalVolumes: -1 });
    });
  });

  describe("crash safety", () => {
    /** A volume row as a crash leaves it: `creating` with its reservation (or not yet). */
    async function crashedCreate(world: VolumeWorld, source: { imageId?: string } = {}, reserve = true): Promise<string> {
      const id = randomUUID();
      await createBlockVolume(world.db, {
        id, userUuid: world.alice.uuid, name: "crashed", description: null, sizeGib: 1, engineName: engineNames.volume(id), bootable: source.imageId !== undefined,
        imageId: source.imageId ?? null, snapshotId: null, sourceVolid: null, metadata: {},
      });
      if (reserve) await issueCommission(world.db, { clientKey: createKey(id), provisions: [{ userUuid: world.alice.uuid, resource: "volume.disk", quantity: gib }] });
      return id;
    }

    it("reconcile finishes creates (with or without their engine volume or reservation), deletes, extends and snapshots", async () => {
      const world = await volumeWorld(databases);
      // creating, nothing made yet: the clone is made now.
      const fresh = await crashedCreate(world, { imageId: world.imageId });
      // creating, engine volume made before the crash: kept, not made twice.
      const made = await crashedCreate(world);
      await world.engine.createVolume(engineNames.volume(made), gib);
      // creating, the crash came before the reservation.
      const unreserved = await crashedCreate(world, {}, false);
      // deleting, engine volume still there.
      const doomed = await world.volumes.createVolume(world.alice.uuid, { sizeGib: 1 });
      await world.db.kysely.updateTable("volumes").set({ status: "deleting" }).where("id", "=", doomed.id).execute();
      // extending, the engine resize done, not recorded.
      const grown = await world.volumes.createVolume(world.alice.uuid, { sizeGib: 1 });
      await issueCommission(world.db, { clientKey: `volume:${grown.id}:extend:x`, provisions: [{ userUuid: world.alice.uuid, resource: "volume.disk", quantity: gib }] });
      await world.db.kysely.updateTable("volumes").set({ status: "extending" }).where("id", "=", grown.id).execute();
      await world.engine.resize(grown.engineName, 2 * gib);
      // extending, the resize never happened.
      const stuck = await world.volumes.createVolume(world.alice.uuid, { sizeGib: 1 });
      await issueCommission(world.db, { clientKey: `volume:${stuck.id}:extend:y`, provisions: [{ userUuid: world.alice.uuid, resource: "volume.disk", quantity: 3 * gib }] });
      await world.db.kysely.updateTable("volumes").set({ status: "extending" }).where("id", "=", stuck.id).execute();
      // a snapshot left creating.
      const snapshotId = randomUUID();
      const snapSource = await world.volumes.createVolume(world.alice.uuid, { sizeGib: 1 });
      await createVolumeSnapshot(world.db, { id: snapshotId, userUuid: world.alice.uuid, volumeId: snapSource.id, name: "", description: null, engineName: engineNames.snapshot(snapshotId), force: false });

      const restarted = world.service();
      const report = await reconcileVolumes(restarted);
      expect(report.repaired).toEqual({
        [fresh]: "creating → available",
        [made]: "creating → available",
        [unreserved]: "creating → available",
        [doomed.id]: "deleting → deleted",
        [grown.id]: "extending → available at 2 GiB",
        [stuck.id]: "extending → available, not grown",
        [snapshotId]: "creating → available",
      });
      expect((await restarted.getVolume(world.alice.uuid, fresh)).bootable).toBe(true);
      expect((await readVolume(world.engine, engineNames.volume(fresh), imageData.length)).equals(imageData)).toBe(true);
      expect(await world.engine.maps.exists(doomed.engineName)).toBe(false);
      expect(await getBlockVolume(world.db, doomed.id)).toBeUndefined();
      expect((await restarted.getOwned(world.alice.uuid, grown.id)).sizeGib).toBe(2);
      expect((await restarted.getOwned(world.alice.uuid, stuck.id)).sizeGib).toBe(1);
      expect(await world.engine.maps.exists(engineNames.snapshot(snapshotId))).toBe(true);
      // fresh, made, unreserved: 1 each; grown: 2; stuck: 1; snapSource: 1 (7) — and nothing pending.
      expect(await diskUsage(world)).toEqual({ usage: 7 * gib, pending: 0 });
      expect((await reconcileVolumes(restarted)).repaired).toEqual({});
    });

    it("a create whose reservation no longer fits at reconcile ends in error, holding nothing", async () => {
      const world = await volumeWorld(databases);
      const id = await crashedCreate(world, {}, false);
      await world.setDiskLimitGib(0);
      const report = await reconcileVolumes(world.service());
      expect(report.repaired[id]).toMatch(/^failed: VolumeSizeExceedsAvailableQuota/);
      expect((await world.volumes.getOwned(world.alice.uuid, id)).status).toBe("error");
      expect(await diskUsage(world)).toEqual({ usage: 0, pending: 0 });
    });
  });
});
