import { randomUUID } from "node:crypto";
import { expect, it } from "vitest";
import type { MetadataDatabase } from "../connect.ts";
import { describeEachEngine } from "../testing/databases.ts";
import { rejectsWith, seedUser } from "../testing/fixtures.ts";
import { findCommission } from "./commissions.ts";
import { getQuota } from "./quotas.ts";
import { setAccountQuota } from "./pithos-accounts.ts";
import { createContainer, getContainerById, updateContainer } from "./pithos-containers.ts";
import {
  deleteObject,
  expireObjects,
  getCurrent,
  getObjectByUuid,
  getCurrentIncludingExpired,
  getVersion,
  listVersions,
  mapNamesInUse,
  purgeContainerHistory,
  purgeHistory,
  putVersion,
  renameObject,
  type NewPithosVersion,
} from "./pithos-objects.ts";
import { setPublic, setSharing } from "./pithos-sharing.ts";

const t0 = 1_700_000_000_000;

function data(mapName: string, sizeBytes: number, extra: Partial<NewPithosVersion> = {}): NewPithosVersion {
  return { mapName, sizeBytes, contentHash: `hash-${mapName}`, etag: `etag-${mapName}`, contentType: "text/plain", ...extra };
}

async function setUp(db: MetadataDatabase, versioning: "auto" | "none" = "auto") {
  const alice = randomUUID();
  const { container } = await createContainer(db, alice, "c", { versioning }, t0);
  return { alice, container };
}

/** The container's counters agree with its current versions. */
async function expectCounters(db: MetadataDatabase, containerId: number): Promise<void> {
  const rows = await db.kysely
    .selectFrom("pithos_versions as v")
    .innerJoin("pithos_objects as o", "o.id", "v.object_id")
    .select("v.size_bytes")
    .where("o.container_id", "=", containerId)
    .where("v.state", "=", "current")
    .execute();
  const container = await getContainerById(db, containerId);
  expect({ objectCount: container!.objectCount, bytesUsed: container!.bytesUsed }).toEqual({
    objectCount: rows.length,
    bytesUsed: rows.reduce((sum, row) => sum + row.size_bytes, 0),
  });
}

describeEachEngine("pithos objects", (databases) => {
  it("puts a first version: a new object with a uuid, no previous", async () => {
    const db = await databases.open();
    const { alice, container } = await setUp(db);
    const put = await putVersion(
      db,
      container.id,
      "dir/é.txt",
      data("m1", 5, { contentEncoding: "gzip", contentDisposition: "inline", meta: { k: "v" }, deleteAt: t0 + 1e9 }),
      { modifiedBy: alice },
      t0 + 1,
    );
    expect(put).toEqual({
      previous: null,
      unreferencedMaps: [],
      object: { id: expect.any(Number), containerId: container.id, path: "dir/é.txt", uuid: expect.stringMatching(/^[0-9a-f-]{36}$/), publicToken: null, sharing: null },
      version: {
        serial: expect.any(Number),
        objectId: put.object.id,
        state: "current",
        mapName: "m1",
        sizeBytes: 5,
        chargedBytes: 5,
        contentHash: "hash-m1",
        etag: "etag-m1",
        contentType: "text/plain",
        contentEncoding: "gzip",
        contentDisposition: "inline",
        manifest: null,
        sloManifest: null,
        meta: { k: "v" },
        deleteAt: t0 + 1e9,
        modifiedAt: t0 + 1,
        modifiedBy: alice,
        endedAt: null,
      },
    });
    expect(await getCurrent(db, container.id, "dir/é.txt", t0 + 2)).toEqual({ object: put.object, version: put.version });
    expect(await getCurrent(db, container.id, "dir", t0 + 2)).toBeUndefined();
    await expectCounters(db, container.id);
  });

  it("keeps history under versioning auto: same uuid, increasing serials, old versions readable", async () => {
    const db = await databases.open();
    const { alice, container } = await setUp(db);
    const first = await putVersion(db, container.id, "x", data("m1", 10), { modifiedBy: alice }, t0 + 1);
    const second = await putVersion(db, container.id, "x", data("m2", 20), { modifiedBy: alice }, t0 + 2);
    expect(second.object.uuid).toBe(first.object.uuid);
    expect(second.version.serial).toBeGreaterThan(first.version.serial);
    expect(second.previous).toEqual(first.version);
    expect(second.unreferencedMaps).toEqual([]);
    expect((await getVersion(db, container.id, "x", first.version.serial))!.version).toMatchObject({ state: "history", mapName: "m1", endedAt: t0 + 2 });
    expect(await getVersion(db, container.id, "x", 999_999)).toBeUndefined();
    expect(await listVersions(db, container.id, "x")).toEqual([
      { serial: first.version.serial, modifiedAt: t0 + 1, state: "history" },
      { serial: second.version.serial, modifiedAt: t0 + 2, state: "current" },
    ]);
    expect(await getContainerById(db, container.id)).toMatchObject({ objectCount: 1, bytesUsed: 20, modifiedAt: t0 + 2 });
    await expectCounters(db, container.id);
  });

  it("drops the previous version under versioning none, returning its map unless still used", async () => {
    const db = await databases.open();
    const { alice, container } = await setUp(db, "none");
    const first = await putVersion(db, container.id, "x", data("m1", 10), { modifiedBy: alice }, t0 + 1);
    // Metadata only: a new version on the same map; the map stays in use.
    const meta = await putVersion(db, container.id, "x", data("m1", 10, { meta: { a: "b" } }), { modifiedBy: alice }, t0 + 2);
    expect(meta.unreferencedMaps).toEqual([]);
    expect(meta.previous!.serial).toBe(first.version.serial);
    expect(await getVersion(db, container.id, "x", first.version.serial)).toBeUndefined();
    const data2 = await putVersion(db, container.id, "x", data("m2", 3), { modifiedBy: alice }, t0 + 3);
    expect(data2.unreferencedMaps).toEqual(["m1"]);
    expect(await listVersions(db, container.id, "x")).toEqual([{ serial: data2.version.serial, modifiedAt: t0 + 3, state: "current" }]);
    expect(data2.object.uuid).toBe(first.object.uuid);
    await expectCounters(db, container.id);
  });

  it("counts map references across objects: a map shared with a moved object stays", async () => {
    const db = await databases.open();
    const { alice, container } = await setUp(db, "auto");
    const { container: flat } = await createContainer(db, alice, "flat", { versioning: "none" });
    await putVersion(db, container.id, "a", data("shared", 4), { modifiedBy: alice }, t0 + 1);
    // Move: the destination's version keeps map "shared"; the source keeps a deleted version on it.
    const moved = await renameObject(db, container.id, "a", flat.id, "b", { modifiedBy: alice }, t0 + 2);
    expect(moved.unreferencedMaps).toEqual([]);
    expect(await purgeHistory(db, container.id, "a")).toEqual([]); // "b" still uses the map
    expect(await getVersion(db, container.id, "a", moved.source.serial)).toBeUndefined();
    const replaced = await putVersion(db, flat.id, "b", data("other", 1), { modifiedBy: alice }, t0 + 3);
    expect(replaced.unreferencedMaps).toEqual(["shared"]);
  });

  it("checks If-None-Match: * and the expected current serial", async () => {
    const db = await databases.open();
    const { alice, container } = await setUp(db);
    const first = await putVersion(db, container.id, "x", data("m1", 1), { modifiedBy: alice, ifNoneMatchStar: true }, t0 + 1);
    await rejectsWith(putVersion(db, container.id, "x", data("m2", 1), { modifiedBy: alice, ifNoneMatchStar: true }), "EPRECONDITION");
    await rejectsWith(putVersion(db, container.id, "x", data("m2", 1), { modifiedBy: alice, expectCurrentSerial: first.version.serial + 100 }), "EPRECONDITION");
    await rejectsWith(putVersion(db, container.id, "x", data("m2", 1), { modifiedBy: alice, expectCurrentSerial: null }), "EPRECONDITION");
    await rejectsWith(putVersion(db, container.id, "y", data("m2", 1), { modifiedBy: alice, expectCurrentSerial: 1 }), "EPRECONDITION");
    const second = await putVersion(db, container.id, "x", data("m2", 1), { modifiedBy: alice, expectCurrentSerial: first.version.serial }, t0 + 2);
    expect(second.previous!.serial).toBe(first.version.serial);
    await putVersion(db, container.id, "y", data("m3", 1), { modifiedBy: alice, expectCurrentSerial: null }, t0 + 3);
    expect((await listVersions(db, container.id, "x")).length).toBe(2);
    await expectCounters(db, container.id);
  });

  it("refuses bad input and unknown containers", async () => {
    const db = await databases.open();
    const { alice, container } = await setUp(db);
    const ok = { modifiedBy: alice };
    await rejectsWith(putVersion(db, 999_999, "x", data("m", 1), ok), "ENOT_FOUND");
    await rejectsWith(putVersion(db, container.id, "", data("m", 1), ok), "EINVALID");
    await rejectsWith(putVersion(db, container.id, "é".repeat(513), data("m", 1), ok), "EINVALID"); // 1026 bytes
    await rejectsWith(putVersion(db, container.id, "a\u0000b", data("m", 1), ok), "EINVALID");
    await rejectsWith(putVersion(db, container.id, "x", data("m", -1), ok), "EINVALID");
    await rejectsWith(putVersion(db, container.id, "x", data("", 1), ok), "EINVALID");
    await rejectsWith(putVersion(db, container.id, "x", data("m", 1), { modifiedBy: "someone" }), "EINVALID");
    await rejectsWith(putVersion(db, container.id, "x", data("m", 1, { meta: { k: "v".repeat(257) } }), ok), "EINVALID");
    await putVersion(db, container.id, "é".repeat(512), data("m", 1), ok); // 1024 bytes
  });

  it("enforces container and account quotas on growth only", async () => {
    const db = await databases.open();
    const { alice, container } = await setUp(db);
    await updateContainer(db, container.id, { quotaBytes: 100 });
    await putVersion(db, container.id, "a", data("m1", 60), { modifiedBy: alice });
    const refused = await rejectsWith(putVersion(db, container.id, "b", data("m2", 41), { modifiedBy: alice }), "EQUOTA_EXCEEDED");
    expect(refused.details).toMatchObject({ quotaBytes: 100, bytesUsed: 60, sizeBytes: 41 });
    await putVersion(db, container.id, "a", data("m3", 100), { modifiedBy: alice }); // replaces: +40
    await updateContainer(db, container.id, { quotaBytes: 10 });
    await putVersion(db, container.id, "a", data("m4", 50), { modifiedBy: alice }); // shrinking is fine over quota
    await updateContainer(db, container.id, { quotaBytes: null });
    const { container: other } = await createContainer(db, alice, "other");
    await setAccountQuota(db, alice, 80);
    await rejectsWith(putVersion(db, other.id, "b", data("m5", 31), { modifiedBy: alice }), "EQUOTA_EXCEEDED");
    await putVersion(db, other.id, "b", data("m5", 30), { modifiedBy: alice });
    await expectCounters(db, container.id);
    await expectCounters(db, other.id);
  });

  it("deletes: auto keeps the version as deleted, none removes it; a new write is a new object", async () => {
    const db = await databases.open();
    const { alice, container } = await setUp(db, "auto");
    const bob = randomUUID();
    const first = await putVersion(db, container.id, "x", data("m1", 7), { modifiedBy: alice }, t0 + 1);
    await setSharing(db, first.object.id, { read: ["*"], write: [] });
    await setPublic(db, first.object.id, true);
    const deleted = await deleteObject(db, container.id, "x", { modifiedBy: bob }, t0 + 2);
    expect(deleted).toEqual({ deleted: first.version, unreferencedMaps: [] });
    expect(await getCurrent(db, container.id, "x")).toBeUndefined();
    expect((await getVersion(db, container.id, "x", first.version.serial))!.version).toMatchObject({
      state: "deleted",
      modifiedBy: bob,
      endedAt: t0 + 2,
    });
    expect(await deleteObject(db, container.id, "x")).toEqual({ deleted: undefined, unreferencedMaps: [] });
    expect(await deleteObject(db, container.id, "never")).toEqual({ deleted: undefined, unreferencedMaps: [] });
    const again = await putVersion(db, container.id, "x", data("m2", 1), { modifiedBy: alice }, t0 + 3);
    expect(again.previous).toBeNull();
    expect(again.object).toMatchObject({ id: first.object.id, sharing: null, publicToken: null });
    expect(again.object.uuid).not.toBe(first.object.uuid);
    await expectCounters(db, container.id);

    const { container: flat } = await createContainer(db, alice, "flat", { versioning: "none" });
    await putVersion(db, flat.id, "y", data("m3", 2), { modifiedBy: alice });
    expect((await deleteObject(db, flat.id, "y")).unreferencedMaps).toEqual(["m3"]);
    expect(await listVersions(db, flat.id, "y")).toEqual([]);
    await expectCounters(db, flat.id);
  });

  it("treats a version past its delete_at as absent, and expires it", async () => {
    const db = await databases.open();
    const { alice, container } = await setUp(db, "none");
    await putVersion(db, container.id, "x", data("m1", 3, { deleteAt: t0 + 100 }), { modifiedBy: alice }, t0);
    await putVersion(db, container.id, "y", data("m2", 4, { deleteAt: t0 + 200 }), { modifiedBy: alice }, t0);
    expect(await getCurrent(db, container.id, "x", t0 + 99)).toBeDefined();
    expect(await getCurrent(db, container.id, "x", t0 + 100)).toBeUndefined();
    // Expired counts as absent for If-None-Match: *, and is not reported as previous.
    const put = await putVersion(db, container.id, "x", data("m3", 5), { modifiedBy: alice, ifNoneMatchStar: true }, t0 + 150);
    expect(put).toMatchObject({ previous: null, unreferencedMaps: ["m1"] });
    expect(await deleteObject(db, container.id, "y", {}, t0 + 300)).toEqual({ deleted: undefined, unreferencedMaps: ["m2"] });
    await putVersion(db, container.id, "z", data("m4", 6, { deleteAt: t0 + 400 }), { modifiedBy: alice }, t0);
    expect(await expireObjects(db, t0 + 399)).toEqual({ expired: 0, unreferencedMaps: [] });
    expect(await expireObjects(db, t0 + 400)).toEqual({ expired: 1, unreferencedMaps: ["m4"] });
    expect(await listVersions(db, container.id, "z")).toEqual([]);
    await expectCounters(db, container.id);
  });

  it("purges history up to a time, keeping the current version", async () => {
    const db = await databases.open();
    const { alice, container } = await setUp(db);
    for (let i = 1; i <= 4; i++) await putVersion(db, container.id, "x", data(`m${i}`, i), { modifiedBy: alice }, t0 + i);
    expect((await purgeHistory(db, container.id, "x", t0 + 2)).sort()).toEqual(["m1", "m2"]);
    expect((await listVersions(db, container.id, "x")).map((v) => v.modifiedAt)).toEqual([t0 + 3, t0 + 4]);
    expect(await purgeHistory(db, container.id, "x")).toEqual(["m3"]);
    expect((await getCurrent(db, container.id, "x"))!.version.mapName).toBe("m4");
    await rejectsWith(purgeHistory(db, container.id, "nothing"), "ENOT_FOUND");
    // Deleted, then purged: the object is forgotten.
    await deleteObject(db, container.id, "x", {}, t0 + 5);
    expect(await purgeHistory(db, container.id, "x")).toEqual(["m4"]);
    await rejectsWith(purgeHistory(db, container.id, "x"), "ENOT_FOUND");
  });

  it("purges a whole container's history", async () => {
    const db = await databases.open();
    const { alice, container } = await setUp(db);
    await putVersion(db, container.id, "a", data("a1", 1), { modifiedBy: alice }, t0 + 1);
    await putVersion(db, container.id, "a", data("a2", 1), { modifiedBy: alice }, t0 + 2);
    await putVersion(db, container.id, "b", data("b1", 1), { modifiedBy: alice }, t0 + 3);
    await deleteObject(db, container.id, "b", {}, t0 + 4);
    expect((await purgeContainerHistory(db, container.id)).sort()).toEqual(["a1", "b1"]);
    expect(await listVersions(db, container.id, "a")).toHaveLength(1);
    await rejectsWith(purgeHistory(db, container.id, "b"), "ENOT_FOUND");
  });

  it("renames keeping the uuid and the map; the source is deleted", async () => {
    const db = await databases.open();
    const { alice, container } = await setUp(db);
    const source = await putVersion(db, container.id, "src", data("m1", 9, { meta: { a: "1" } }), { modifiedBy: alice }, t0 + 1);
    await putVersion(db, container.id, "dst", data("old", 2), { modifiedBy: alice }, t0 + 1);
    const moved = await renameObject(
      db,
      container.id,
      "src",
      container.id,
      "dst",
      { modifiedBy: alice, fields: { contentType: "image/png" } },
      t0 + 2,
    );
    expect(moved.object.uuid).toBe(source.object.uuid);
    expect(moved.version).toMatchObject({ mapName: "m1", sizeBytes: 9, contentType: "image/png", meta: { a: "1" }, modifiedAt: t0 + 2 });
    expect(moved.previous).toMatchObject({ mapName: "old" });
    expect(moved.source).toEqual(source.version);
    expect(await getCurrent(db, container.id, "src")).toBeUndefined();
    expect((await getCurrent(db, container.id, "dst"))!.object.uuid).toBe(source.object.uuid);
    expect(await getObjectByUuid(db, source.object.uuid)).toMatchObject({
      account: alice,
      containerId: container.id,
      containerName: "c",
      path: "dst",
      version: { serial: moved.version.serial },
    });
    expect(await getObjectByUuid(db, randomUUID())).toBeUndefined();
    await rejectsWith(renameObject(db, container.id, "src", container.id, "x", { modifiedBy: alice }), "ENOT_FOUND");
    await rejectsWith(renameObject(db, container.id, "dst", container.id, "dst", { modifiedBy: alice }), "EINVALID");
    await putVersion(db, container.id, "taken", data("t", 1), { modifiedBy: alice }, t0 + 3);
    await rejectsWith(renameObject(db, container.id, "dst", container.id, "taken", { modifiedBy: alice, ifNoneMatchStar: true }), "EPRECONDITION");
    expect((await getCurrent(db, container.id, "dst"))!.version.serial).toBe(moved.version.serial); // rolled back
    await deleteObject(db, container.id, "taken", {}, t0 + 4);
    await expectCounters(db, container.id);
    expect(await getContainerById(db, container.id)).toMatchObject({ objectCount: 1, bytesUsed: 9 });
  });

  it("records what each version was charged: its size by default, never more; a move keeps it", async () => {
    const db = await databases.open();
    const { alice, container } = await setUp(db);
    expect((await putVersion(db, container.id, "plain", data("m1", 10), { modifiedBy: alice }, t0)).version.chargedBytes).toBe(10);
    const frozen = await putVersion(db, container.id, "frozen", data("m2", 100, { chargedBytes: 7 }), { modifiedBy: alice }, t0);
    expect(frozen.version.chargedBytes).toBe(7);
    await rejectsWith(putVersion(db, container.id, "x", data("m3", 100, { chargedBytes: 101 }), { modifiedBy: alice }, t0), "EINVALID");
    await rejectsWith(putVersion(db, container.id, "x", data("m3", 100, { chargedBytes: -1 }), { modifiedBy: alice }, t0), "EINVALID");
    const moved = await renameObject(db, container.id, "frozen", container.id, "moved", { modifiedBy: alice }, t0 + 1);
    expect(moved.version).toMatchObject({ mapName: "m2", sizeBytes: 100, chargedBytes: 7 });
  });

  it("writes and deletes only over the version the caller charged against (replacesSerial, expectCurrentSerial)", async () => {
    const db = await databases.open();
    const { alice, container } = await setUp(db);
    const first = await putVersion(db, container.id, "p", data("m1", 1, { deleteAt: t0 + 5 }), { modifiedBy: alice, replacesSerial: null }, t0);
    await rejectsWith(putVersion(db, container.id, "p", data("m2", 1), { modifiedBy: alice, replacesSerial: null }, t0 + 1), "EPRECONDITION");
    // Expired, it reads as absent but is still the row a write replaces.
    expect(await getCurrent(db, container.id, "p", t0 + 10)).toBeUndefined();
    expect((await getCurrentIncludingExpired(db, container.id, "p"))?.version.serial).toBe(first.version.serial);
    await rejectsWith(putVersion(db, container.id, "p", data("m2", 1), { modifiedBy: alice, replacesSerial: null }, t0 + 10), "EPRECONDITION");
    const second = await putVersion(db, container.id, "p", data("m2", 1), { modifiedBy: alice, replacesSerial: first.version.serial }, t0 + 10);
    await rejectsWith(deleteObject(db, container.id, "p", { modifiedBy: alice, expectCurrentSerial: first.version.serial }, t0 + 11), "EPRECONDITION");
    const deleted = await deleteObject(db, container.id, "p", { modifiedBy: alice, expectCurrentSerial: second.version.serial }, t0 + 11);
    expect(deleted.deleted?.serial).toBe(second.version.serial);
    await rejectsWith(deleteObject(db, container.id, "p", { expectCurrentSerial: second.version.serial }, t0 + 12), "EPRECONDITION");
  });

  it("says which map names any version still uses, in any state, across batches", async () => {
    const db = await databases.open();
    const { alice, container } = await setUp(db);
    await putVersion(db, container.id, "a", data("m-history", 1), { modifiedBy: alice }, t0);
    await putVersion(db, container.id, "a", data("m-current", 1), { modifiedBy: alice }, t0 + 1);
    await putVersion(db, container.id, "b", data("m-deleted", 1), { modifiedBy: alice }, t0);
    await deleteObject(db, container.id, "b", {}, t0 + 1);
    const strangers = Array.from({ length: 1200 }, (_, index) => `m-none-${index}`);
    const used = await mapNamesInUse(db, [...strangers.slice(0, 700), "m-history", "m-current", ...strangers.slice(700), "m-deleted"]);
    expect([...used].sort()).toEqual(["m-current", "m-deleted", "m-history"]);
    expect(await mapNamesInUse(db, [])).toEqual(new Set());
  });

  it("has the schema itself allow one current version per object", async () => {
    const db = await databases.open();
    const { alice, container } = await setUp(db);
    const { version } = await putVersion(db, container.id, "x", data("m1", 1), { modifiedBy: alice }, t0);
    const row = {
      object_id: version.objectId,
      map_name: "m2",
      size_bytes: 1,
      charged_bytes: 1,
      content_hash: "h",
      etag: "e",
      content_type: "text/plain",
      content_encoding: null,
      content_disposition: null,
      manifest: null,
      slo_manifest: null,
      meta: "{}",
      delete_at: null,
      modified_at: t0,
      modified_by: alice,
    };
    await expect(db.kysely.insertInto("pithos_versions").values({ ...row, state: "current", ended_at: null }).execute()).rejects.toThrow();
    await expect(db.kysely.insertInto("pithos_versions").values({ ...row, state: "history", ended_at: null }).execute()).rejects.toThrow();
    // A version is never charged more than its size, nor less than nothing.
    await expect(db.kysely.insertInto("pithos_versions").values({ ...row, charged_bytes: 2, state: "history", ended_at: t0 }).execute()).rejects.toThrow();
    await expect(db.kysely.insertInto("pithos_versions").values({ ...row, charged_bytes: -1, state: "history", ended_at: t0 }).execute()).rejects.toThrow();
    await db.kysely.insertInto("pithos_versions").values({ ...row, state: "history", ended_at: t0 }).execute();
  });

  it("stamps versions in order even when a node's clock is behind", async () => {
    const db = await databases.open();
    const { alice, container } = await setUp(db);
    await putVersion(db, container.id, "x", data("m1", 1), { modifiedBy: alice }, t0 + 100);
    const late = await putVersion(db, container.id, "x", data("m2", 1), { modifiedBy: alice }, t0 + 50);
    expect(late.version.modifiedAt).toBe(t0 + 100);
    expect(late.previous!.modifiedAt).toBe(t0 + 100);
  });

  it("commits a version and its quota charge together, or neither", async () => {
    const db = await databases.open();
    const owner = await seedUser(db, "owner", { "volume.disk": 100 });
    const { container } = await createContainer(db, owner.uuid, "c", {}, t0);
    const charge = (clientKey: string, quantity: number) => ({ clientKey, provisions: [{ userUuid: owner.uuid, resource: "volume.disk", quantity }] });

    await putVersion(db, container.id, "a", data("m1", 60), { modifiedBy: owner.uuid, charge: charge("k1", 60) }, t0);
    expect(await findCommission(db, "k1")).toMatchObject({ state: "accepted", resolvedAt: t0 });
    expect(await getQuota(db, owner.uuid, "volume.disk")).toMatchObject({ usage: 60, pendingIncrease: 0 });

    // Over the limit: no version, no commission, usage unchanged.
    await rejectsWith(putVersion(db, container.id, "b", data("m2", 50), { modifiedBy: owner.uuid, charge: charge("k2", 50) }, t0 + 1), "EQUOTA_EXCEEDED");
    expect(await getCurrent(db, container.id, "b", t0 + 1)).toBeUndefined();
    expect(await findCommission(db, "k2")).toBeUndefined();

    // The version fails (a precondition): its charge is rolled back with it.
    await rejectsWith(
      putVersion(db, container.id, "a", data("m3", 30), { modifiedBy: owner.uuid, ifNoneMatchStar: true, charge: charge("k3", 30) }, t0 + 2),
      "EPRECONDITION",
    );
    expect(await findCommission(db, "k3")).toBeUndefined();
    expect(await getQuota(db, owner.uuid, "volume.disk")).toMatchObject({ usage: 60, pendingIncrease: 0 });
    expect((await getCurrent(db, container.id, "a", t0 + 2))!.version.mapName).toBe("m1");
    await expectCounters(db, container.id);
  });
});
