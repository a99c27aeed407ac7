import { randomUUID } from "node:crypto";
import { expect, it } from "vitest";
import type { MetadataDatabase } from "../connect.ts";
import { describeEachEngine } from "../testing/databases.ts";
import { rejectsWith } from "../testing/fixtures.ts";
import { setAccountGroups } from "./pithos-accounts.ts";
import { createContainer, getContainerById } from "./pithos-containers.ts";
import { deleteObject, getCurrent, putVersion, renameObject } from "./pithos-objects.ts";
import { setSharing } from "./pithos-sharing.ts";
import { createImageWithFile, deleteImage, getImageRecord, registerImage, updateImage } from "./plankton.ts";
import { getImage, listImages, type ImageListOptions } from "./plankton-listing.ts";

const t0 = 1_700_000_000_000;

interface World {
  db: MetadataDatabase;
  alice: string;
  bob: string;
  carol: string;
  containerId: number;
}

async function world(db: MetadataDatabase): Promise<World> {
  const [alice, bob, carol] = [randomUUID(), randomUUID(), randomUUID()];
  const { container } = await createContainer(db, alice, "disks", {}, t0);
  return { db, alice, bob, carol, containerId: container.id };
}

/** A live file in alice's container; its object uuid and id. */
async function file(w: World, path: string, sizeBytes = 100, nowMs = t0): Promise<{ uuid: string; objectId: number }> {
  const { object } = await putVersion(
    w.db,
    w.containerId,
    path,
    { mapName: `map-${path}-${nowMs}`, sizeBytes, contentHash: "h".repeat(64), etag: "e".repeat(32), contentType: "application/octet-stream" },
    { modifiedBy: w.alice },
    nowMs,
  );
  return { uuid: object.uuid, objectId: object.id };
}

async function names(w: World, viewer: string, options: ImageListOptions = {}): Promise<string[]> {
  const page = await listImages(w.db, viewer, options, t0 + 10_000);
  return page.images.map(({ image }) => image.name ?? "");
}

describeEachEngine("plankton images", (databases) => {
  it("registers an existing file without touching it, and reads it back joined with the file", async () => {
    const w = await world(await databases.open());
    const { uuid } = await file(w, "debian.raw", 4096);
    const before = await getCurrent(w.db, w.containerId, "debian.raw");
    const { image, file: located } = await registerImage(
      w.db,
      { uuid, owner: w.alice, name: "Debian", diskFormat: "diskdump", containerFormat: "bare", properties: { OSFAMILY: "linux" }, tags: ["a", "a", "b"] },
      t0 + 1,
    );
    expect(image).toEqual({
      uuid,
      name: "Debian",
      diskFormat: "diskdump",
      containerFormat: "bare",
      status: "active",
      minDiskGb: 0,
      minRamMb: 0,
      protected: false,
      osHidden: false,
      checksum: null,
      createdAt: t0 + 1,
      updatedAt: t0 + 1,
      properties: { OSFAMILY: "linux" },
      tags: ["a", "b"],
      owner: w.alice,
      createdByUpload: false,
    });
    expect(located).toMatchObject({ account: w.alice, containerName: "disks", path: "debian.raw", version: { sizeBytes: 4096, serial: before!.version.serial } });
    // The file has no new version: registration is metadata only.
    expect((await getCurrent(w.db, w.containerId, "debian.raw"))!.version).toEqual(before!.version);
    expect(await getImage(w.db, uuid)).toEqual({ image, file: located });
    await rejectsWith(registerImage(w.db, { uuid, owner: w.alice, name: "again" }), "EEXISTS");
    await rejectsWith(registerImage(w.db, { uuid: randomUUID(), owner: w.alice, name: "none" }), "ENOT_FOUND");
    await rejectsWith(registerImage(w.db, { uuid: randomUUID(), owner: w.alice, name: "x".repeat(256) }), "EINVALID");
    await rejectsWith(registerImage(w.db, { uuid, owner: w.alice, properties: { k: 1 as unknown as string } }), "EINVALID");
  });

  it("follows the file: a rename keeps the image, a delete ends it", async () => {
    const w = await world(await databases.open());
    const { uuid } = await file(w, "a.raw");
    await registerImage(w.db, { uuid, owner: w.alice, name: "img" });
    await renameObject(w.db, w.containerId, "a.raw", w.containerId, "b.raw", { modifiedBy: w.alice }, t0 + 1);
    expect((await getImage(w.db, uuid))!.file.path).toBe("b.raw");
    await deleteObject(w.db, w.containerId, "b.raw", { modifiedBy: w.alice }, t0 + 2);
    expect(await getImage(w.db, uuid)).toBeUndefined();
    expect(await listImages(w.db, w.alice)).toEqual({ images: [] });
    // The registration is still there (an orphan, invisible) until someone deletes it.
    expect((await getImageRecord(w.db, uuid))!.name).toBe("img");
    expect((await deleteImage(w.db, uuid)).uuid).toBe(uuid);
    await rejectsWith(deleteImage(w.db, uuid), "ENOT_FOUND");
  });

  it("shows an image to its owner, to everyone when `*` reads it, to members and groups it names", async () => {
    const w = await world(await databases.open());
    const dave = randomUUID();
    const own = await file(w, "private");
    const pub = await file(w, "public");
    const toBob = await file(w, "bob");
    const toTeam = await file(w, "team");
    const writers = await file(w, "writers");
    for (const [f, name] of [[own, "private"], [pub, "public"], [toBob, "bob"], [toTeam, "team"], [writers, "writers"]] as const) {
      await registerImage(w.db, { uuid: f.uuid, owner: w.alice, name }, t0);
    }
    await setSharing(w.db, pub.objectId, { read: ["*"], write: [] });
    await setSharing(w.db, toBob.objectId, { read: [w.bob], write: [] });
    await setAccountGroups(w.db, w.alice, { team: [w.carol] });
    await setSharing(w.db, toTeam.objectId, { read: [`${w.alice}:team`], write: [] });
    await setSharing(w.db, writers.objectId, { read: [], write: [dave] });

    const sorted = { sortKey: "name", sortDir: "asc" } as const;
    expect(await names(w, w.alice, sorted)).toEqual(["bob", "private", "public", "team", "writers"]);
    expect(await names(w, w.bob, sorted)).toEqual(["bob", "public"]);
    expect(await names(w, w.carol, sorted)).toEqual(["public", "team"]);
    expect(await names(w, dave, sorted)).toEqual(["public", "writers"]);
    expect(await names(w, w.alice, { ...sorted, visibility: "public" })).toEqual(["public"]);
    expect(await names(w, w.alice, { ...sorted, visibility: "private" })).toEqual(["private"]);
    expect(await names(w, w.alice, { ...sorted, visibility: "shared" })).toEqual(["bob", "team", "writers"]);
    expect(await names(w, w.bob, { ...sorted, visibility: "shared" })).toEqual(["bob"]);
    expect(await names(w, w.bob, { ...sorted, visibility: "private" })).toEqual([]);
    expect(await names(w, w.alice, { visibility: "community" })).toEqual([]);

    expect(await getImage(w.db, own.uuid, { viewer: w.bob })).toBeUndefined();
    expect((await getImage(w.db, own.uuid, { viewer: w.alice }))!.image.name).toBe("private");
    expect((await getImage(w.db, toTeam.uuid, { viewer: w.carol }))!.file.object.sharing).toEqual({ read: [`${w.alice}:team`], write: [] });
    // Images of alice that bob sees (Plankton v1 shared-images).
    expect(await names(w, w.bob, { ...sorted, owner: w.alice })).toEqual(["bob", "public"]);
  });

  it("filters by name, status, formats, size, tags and os_hidden", async () => {
    const w = await world(await databases.open());
    const specs = [
      { name: "one", sizeBytes: 10, status: "active", diskFormat: "raw", tags: ["x"] },
      { name: "two", sizeBytes: 20, status: "queued", diskFormat: "qcow2", tags: ["x", "y"] },
      { name: "three", sizeBytes: 30, status: "active", diskFormat: "raw", tags: ['a","y'], osHidden: true },
    ] as const;
    for (const spec of specs) {
      const { uuid } = await file(w, spec.name, spec.sizeBytes);
      await registerImage(w.db, { uuid, owner: w.alice, name: spec.name, status: spec.status, diskFormat: spec.diskFormat, tags: [...spec.tags], osHidden: "osHidden" in spec });
    }
    const sorted = { sortKey: "size", sortDir: "asc" } as const;
    expect(await names(w, w.alice, sorted)).toEqual(["one", "two", "three"]);
    expect(await names(w, w.alice, { ...sorted, name: "two" })).toEqual(["two"]);
    expect(await names(w, w.alice, { ...sorted, status: "active" })).toEqual(["one", "three"]);
    expect(await names(w, w.alice, { ...sorted, diskFormat: "qcow2" })).toEqual(["two"]);
    expect(await names(w, w.alice, { ...sorted, sizeMinBytes: 15, sizeMaxBytes: 30 })).toEqual(["two", "three"]);
    expect(await names(w, w.alice, { ...sorted, tags: ["x"] })).toEqual(["one", "two"]);
    expect(await names(w, w.alice, { ...sorted, tags: ["x", "y"] })).toEqual(["two"]);
    // `"y"` occurs inside the JSON text of ['a","y'] but is not one of its tags.
    expect(await names(w, w.alice, { ...sorted, tags: ["y"] })).toEqual(["two"]);
    expect(await names(w, w.alice, { ...sorted, osHidden: false })).toEqual(["one", "two"]);
    expect(await names(w, w.alice, { ...sorted, osHidden: true })).toEqual(["three"]);
    await rejectsWith(listImages(w.db, w.alice, { sortKey: "nope" as "name" }), "EINVALID");
    await rejectsWith(listImages(w.db, w.alice, { visibility: "everyone" as "all" }), "EINVALID");
  });

  it("pages by marker in both directions, ties broken by id, and refuses a marker the user cannot see", async () => {
    const w = await world(await databases.open());
    const created: Array<{ name: string; uuid: string }> = [];
    for (let i = 0; i < 7; i++) {
      const name = `img-${i % 3}`; // repeated names: ties on the sort key
      const { uuid } = await file(w, `f${i}`);
      await registerImage(w.db, { uuid, owner: w.alice, name }, t0 + (i % 2));
      created.push({ name, uuid });
    }
    for (const sortKey of ["name", "created_at", "id", "size"] as const) {
      for (const sortDir of ["asc", "desc"] as const) {
        const all = (await listImages(w.db, w.alice, { sortKey, sortDir, limit: 100 })).images.map(({ image }) => image.uuid);
        expect(all).toHaveLength(7);
        const paged: string[] = [];
        let marker: string | undefined;
        for (;;) {
          const page = await listImages(w.db, w.alice, { sortKey, sortDir, limit: 3, ...(marker !== undefined && { marker }) });
          paged.push(...page.images.map(({ image }) => image.uuid));
          if (page.nextMarker === undefined) break;
          expect(page.nextMarker).toBe(paged.at(-1));
          marker = page.nextMarker;
        }
        expect(paged, `${sortKey} ${sortDir}`).toEqual(all);
      }
    }
    const byName = (await listImages(w.db, w.alice, { sortKey: "name", sortDir: "asc", limit: 100 })).images.map(({ image }) => image.name);
    expect(byName).toEqual([...byName].sort());
    await rejectsWith(listImages(w.db, w.bob, { marker: created[0]!.uuid }), "ENOT_FOUND");
    expect((await listImages(w.db, w.alice)).images).toHaveLength(7); // default limit 25, newest first
  });

  it("creates an empty file named by the image id and its image in one step", async () => {
    const w = await world(await databases.open());
    const { container } = await createContainer(w.db, w.alice, "images", { versioning: "none" });
    const file = { mapName: "pithos.empty1", contentHash: "z".repeat(64), etag: "d41d8cd98f00b204e9800998ecf8427e", contentType: "application/octet-stream", modifiedBy: w.alice };
    const { created } = await createImageWithFile(w.db, container.id, file, { owner: w.alice, name: "cirros", diskFormat: "raw" }, t0);
    expect(created.image).toMatchObject({ name: "cirros", status: "queued", createdByUpload: true, owner: w.alice });
    expect(created.file).toMatchObject({ containerName: "images", path: created.image.uuid, object: { uuid: created.image.uuid }, version: { sizeBytes: 0 } });
    expect((await getContainerById(w.db, container.id))!.objectCount).toBe(1);

    const chosen = randomUUID();
    const second = await createImageWithFile(w.db, container.id, { ...file, mapName: "pithos.empty2" }, { uuid: chosen, owner: w.alice, name: "chosen" });
    expect(second.created.image.uuid).toBe(chosen);
    await rejectsWith(createImageWithFile(w.db, container.id, { ...file, mapName: "pithos.empty3" }, { uuid: chosen, owner: w.alice }), "EEXISTS");
    await rejectsWith(createImageWithFile(w.db, container.id, { ...file, mapName: "pithos.empty4" }, { uuid: created.image.uuid, owner: w.alice }), "EEXISTS");
    // Nothing of the refused ones was recorded.
    expect((await getContainerById(w.db, container.id))!.objectCount).toBe(2);
  });

  it("updates fields under the row lock, with a status precondition, and refuses to delete a protected image", async () => {
    const w = await world(await databases.open());
    const { uuid } = await file(w, "f");
    await registerImage(w.db, { uuid, owner: w.alice, name: "n", status: "queued", properties: { a: "1" } }, t0);
    const saving = await updateImage(w.db, uuid, { status: "saving" }, { expectStatus: ["queued"] }, t0 + 5);
    expect(saving).toMatchObject({ status: "saving", updatedAt: t0 + 5 });
    await rejectsWith(updateImage(w.db, uuid, { status: "saving" }, { expectStatus: ["queued"] }), "EPRECONDITION");
    const patched = await updateImage(w.db, uuid, (current) => ({ properties: { ...current.properties, b: "2" }, protected: true, checksum: "0".repeat(32) }), {}, t0 + 1);
    // A clock behind the last update does not move updated_at back.
    expect(patched).toMatchObject({ properties: { a: "1", b: "2" }, protected: true, checksum: "0".repeat(32), updatedAt: t0 + 5 });
    await rejectsWith(updateImage(w.db, uuid, { checksum: "XYZ" }), "EINVALID");
    await rejectsWith(updateImage(w.db, randomUUID(), { name: "x" }), "ENOT_FOUND");
    await rejectsWith(deleteImage(w.db, uuid), "ECONFLICT");
    expect((await deleteImage(w.db, uuid, { evenIfProtected: true })).uuid).toBe(uuid);
    expect(await getImage(w.db, uuid)).toBeUndefined();
  });
});
