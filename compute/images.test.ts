/**
 * Nova's image proxy (images.ts) over a real Plankton on a file store, on SQLite and
 * PostgreSQL: visibility exactly as Plankton's (owner, public, members), changes by the owner
 * only, Glance's statuses as Nova's, the filters Glance does not apply, paging, metadata.
 */
import { Readable } from "node:stream";
import { expect, it } from "vitest";
import { createUser, getObjectByUuid, updateImage } from "../db/index.ts";
import { describeEachEngine } from "../db/testing/databases.ts";
import { withMember, withVisibility } from "../gateways/plankton/sharing.ts";
import { isComputeError, type ComputeErrorCode } from "./errors.ts";
import type { ComputeCaller } from "./model.ts";
import { computeWorld, type ComputeWorld } from "./testing/world.ts";

async function rejects(promise: Promise<unknown>, code: ComputeErrorCode): Promise<Error> {
  const error = await promise.then(
    () => new Error("resolved"),
    (caught: unknown) => caught as Error,
  );
  expect(isComputeError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  return error;
}

/** The world plus bob, who owns a private, a public and a shared-with-alice image. */
async function worldWithBob(databases: Parameters<typeof computeWorld>[0]) {
  const w = await computeWorld(databases);
  const bob = await createUser(w.db, { name: `bob-${Math.random().toString(36).slice(2)}` });
  const bobCaller: ComputeCaller = { userUuid: bob.uuid, isAdmin: false };
  const upload = async (name: string, properties: Record<string, string> = {}) => {
    const created = await w.plankton.create(bob.uuid, { name, diskFormat: "raw", containerFormat: "bare", properties });
    await w.plankton.upload(bob.uuid, created.image.uuid, Readable.from([Buffer.alloc(4096, 1)]), 4096);
    return w.plankton.refresh(created.image.uuid);
  };
  const privateImage = await upload("bob-private");
  const publicImage = await upload("bob-public");
  await w.plankton.share(publicImage, withVisibility(null, "public"));
  const sharedImage = await upload("bob-shared");
  await w.plankton.share(sharedImage, withMember(null, w.alice.uuid));
  return { ...w, bob, bobCaller, privateId: privateImage.image.uuid, publicId: publicImage.image.uuid, sharedId: sharedImage.image.uuid };
}

/** The image's file (its object uuid is the image id), while it is live. */
function fileOf(w: ComputeWorld, imageId: string) {
  return getObjectByUuid(w.db, imageId);
}

describeEachEngine("compute images (a view of Plankton)", (databases) => {
  it("sees own, public and shared images, and nothing else: 404 Image not found.", async () => {
    const w = await worldWithBob(databases);
    const compute = w.service({ worker: false });
    const listed = await compute.listImages(w.caller, {});
    expect(listed.map((image) => image.name).sort()).toEqual(["bob-public", "bob-shared", "cirros"]);
    // Admins see as Plankton lets them: no more than their own user.
    expect((await compute.listImages({ ...w.caller, isAdmin: true }, {})).length).toBe(3);
    expect((await compute.listImages(w.bobCaller, {})).map((image) => image.name).sort()).toEqual(["bob-private", "bob-public", "bob-shared"]);

    const cirros = await compute.getImage(w.caller, w.imageId);
    expect(cirros).toMatchObject({ id: w.imageId, name: "cirros", status: "ACTIVE", progress: 100, sizeBytes: 16 * 4096, metadata: {}, serverId: null, owner: w.alice.uuid });
    expect((await compute.getImage(w.caller, w.sharedId)).owner).toBe(w.bob.uuid);
    expect((await rejects(compute.getImage(w.caller, w.privateId), "ENOT_FOUND")).message).toBe("Image not found.");
    await rejects(compute.getImage(w.caller, "not-a-uuid"), "ENOT_FOUND");
    await rejects(compute.getImage(w.caller, "00000000-0000-4000-8000-000000000000"), "ENOT_FOUND");
  });

  it("maps Glance's statuses and shows the server of a snapshot", async () => {
    const w = await computeWorld(databases);
    const compute = w.service({ worker: false });
    const serverId = "5e7e0000-0000-4000-8000-000000000001";
    const { image } = await w.plankton.create(w.alice.uuid, { name: "snap", diskFormat: "raw", containerFormat: "bare", properties: { instance_uuid: serverId, image_type: "snapshot" } });
    expect(await compute.getImage(w.caller, image.uuid)).toMatchObject({ status: "SAVING", progress: 25, sizeBytes: null, serverId });
    await updateImage(w.db, image.uuid, { status: "saving" });
    expect(await compute.getImage(w.caller, image.uuid)).toMatchObject({ status: "SAVING", progress: 50 });
    await updateImage(w.db, image.uuid, { status: "killed" });
    expect(await compute.getImage(w.caller, image.uuid)).toMatchObject({ status: "ERROR", progress: 0 });

    expect((await compute.listImages(w.caller, { serverId })).map((found) => found.id)).toEqual([image.uuid]);
    expect((await compute.listImages(w.caller, { type: "snapshot" })).map((found) => found.id)).toEqual([image.uuid]);
    expect((await compute.listImages(w.caller, { status: "active" })).map((found) => found.id)).toEqual([w.imageId]);
    expect((await compute.listImages(w.caller, { name: "cirros" })).map((found) => found.id)).toEqual([w.imageId]);
    await rejects(compute.listImages(w.caller, { status: "shiny" }), "EBAD_REQUEST");
  });

  it("filters by minRam, minDisk and changes-since, and pages past images the filters drop", async () => {
    const w = await computeWorld(databases);
    const compute = w.service({ worker: false });
    const ids: string[] = [];
    for (let index = 0; index < 5; index++) {
      const { image } = await w.plankton.create(w.alice.uuid, { name: `i${index}`, minRamMb: index % 2 === 0 ? 1024 : 0, minDiskGb: index });
      ids.push(image.uuid);
    }
    const big = await compute.listImages(w.caller, { minRamMiB: 512 });
    expect(big.map((image) => image.name).sort()).toEqual(["i0", "i2", "i4"]);
    expect((await compute.listImages(w.caller, { minDiskGiB: 3 })).map((image) => image.name).sort()).toEqual(["i3", "i4"]);
    expect(await compute.listImages(w.caller, { changesSince: Date.now() + 60_000 })).toEqual([]);

    const all = await compute.listImages(w.caller, {});
    expect(all).toHaveLength(6);
    const first = await compute.listImages(w.caller, { limit: 2 });
    expect(first.map((image) => image.id)).toEqual(all.slice(0, 2).map((image) => image.id));
    const rest = await compute.listImages(w.caller, { limit: 10, marker: first[1]!.id });
    expect(rest.map((image) => image.id)).toEqual(all.slice(2).map((image) => image.id));
    const filteredPage = await compute.listImages(w.caller, { minRamMiB: 512, limit: 2 });
    expect(filteredPage).toHaveLength(2);
    await rejects(compute.listImages(w.caller, { marker: "nosuch" }), "EBAD_REQUEST");
    await rejects(compute.listImages(w.caller, { marker: "00000000-0000-4000-8000-000000000000" }), "EBAD_REQUEST");
  });

  it("changes metadata for the owner only: merge, replace, delete a key; 403 for members", async () => {
    const w = await worldWithBob(databases);
    const compute = w.service({ worker: false });
    expect(await compute.setImageMetadata(w.caller, w.imageId, { os_distro: "cirros" }, false)).toEqual({ os_distro: "cirros" });
    expect(await compute.setImageMetadata(w.caller, w.imageId, { os_version: "0.6" }, false)).toEqual({ os_distro: "cirros", os_version: "0.6" });
    expect((await compute.getImage(w.caller, w.imageId)).metadata).toEqual({ os_distro: "cirros", os_version: "0.6" });
    expect(await compute.setImageMetadata(w.caller, w.imageId, { role: "web" }, true)).toEqual({ role: "web" });
    await compute.deleteImageMetadata(w.caller, w.imageId, "role");
    expect((await compute.getImage(w.caller, w.imageId)).metadata).toEqual({});
    expect((await rejects(compute.deleteImageMetadata(w.caller, w.imageId, "role"), "ENOT_FOUND")).message).toBe("Invalid metadata key");

    await rejects(compute.setImageMetadata(w.caller, w.imageId, { status: "active" }, false), "EFORBIDDEN");
    await rejects(compute.setImageMetadata(w.caller, w.sharedId, { a: "b" }, false), "EFORBIDDEN");
    await rejects(compute.setImageMetadata(w.caller, w.publicId, { a: "b" }, true), "EFORBIDDEN");
    await rejects(compute.deleteImageMetadata(w.caller, w.sharedId, "a"), "EFORBIDDEN");
    await rejects(compute.setImageMetadata(w.caller, w.privateId, { a: "b" }, false), "ENOT_FOUND");
    const many = Object.fromEntries(Array.from({ length: 129 }, (_, index) => [`k${index}`, "v"]));
    expect((await rejects(compute.setImageMetadata(w.bobCaller, w.privateId, many, true), "EFORBIDDEN")).message).toBe("Image metadata limit exceeded");
    expect((await compute.getImage(w.bobCaller, w.privateId)).metadata).toEqual({});
  });

  it("deletes for the owner only, the file with it; protected images stay", async () => {
    const w = await worldWithBob(databases);
    const compute = w.service({ worker: false });
    expect((await rejects(compute.deleteImage(w.caller, w.publicId), "EFORBIDDEN")).message).toBe("You are not allowed to delete the image.");
    await rejects(compute.deleteImage(w.caller, w.privateId), "ENOT_FOUND");
    expect(await fileOf(w, w.publicId)).toBeDefined();
    await compute.deleteImage(w.bobCaller, w.publicId);
    await rejects(compute.getImage(w.bobCaller, w.publicId), "ENOT_FOUND");
    expect(await fileOf(w, w.publicId)).toBeUndefined();
    expect((await compute.listImages(w.caller, {})).map((image) => image.name).sort()).toEqual(["bob-shared", "cirros"]);

    await updateImage(w.db, w.privateId, { protected: true });
    await rejects(compute.deleteImage(w.bobCaller, w.privateId), "EFORBIDDEN");
    expect((await compute.getImage(w.bobCaller, w.privateId)).name).toBe("bob-private");
  });
});
