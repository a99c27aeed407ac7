/**
 * The TypeScript API the CLI and compute use: registerFileAsImage (no data moved) and
 * resolveImage (id or name → the map to clone), on SQLite and PostgreSQL.
 */
import { randomUUID } from "node:crypto";
import { expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { patternBytes } from "../pithos/testing/http.ts";
import { isPlanktonError, registerFileAsImage, resolveImage, type PlanktonErrorCode } from "./index.ts";
import { useImageHarness } from "./testing/harness.ts";

async function rejectsWithCode(promise: Promise<unknown>, code: PlanktonErrorCode): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(isPlanktonError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
}

describeEachEngine("Plankton's TypeScript API", (databases) => {
  const harness = useImageHarness(databases, { blockSizeBytes: 4096 });

  it("registers a file as an image without writing to the store, and resolves it by id and by name", async () => {
    const alice = await harness().user("alice");
    const bob = await harness().user("bob");
    const { served, db } = harness().pithos;
    const data = patternBytes(4096 * 2 + 5, 11);
    await alice.container("snapshots");
    await alice.put("/snapshots/vol-1", data);
    const objectsBefore: string[] = [];
    for await (const name of served.engine.objects.list("")) objectsBefore.push(name);

    const registered = await registerFileAsImage(served.service, db, {
      account: alice.uuid,
      container: "snapshots",
      path: "vol-1",
      name: "frozen",
      properties: { volume_id: "vol-1" },
    });
    expect(registered.image).toMatchObject({ name: "frozen", status: "active", diskFormat: "raw", containerFormat: "bare", owner: alice.uuid, createdByUpload: false, properties: { volume_id: "vol-1" } });
    const objectsAfter: string[] = [];
    for await (const name of served.engine.objects.list("")) objectsAfter.push(name);
    expect(objectsAfter.sort()).toEqual(objectsBefore.sort());

    const byId = await resolveImage(db, registered.image.uuid, alice.uuid);
    const byName = await resolveImage(db, "frozen", alice.uuid);
    expect(byName).toEqual(byId);
    expect(byId.sizeBytes).toBe(data.length);
    expect(byId.mapName).toBe(registered.file.version.mapName);
    const reader = await served.engine.openFile(byId.mapName);
    expect((await reader.read(0, data.length)).equals(data)).toBe(true);

    // Private: bob cannot resolve it; public: he can, by id or name.
    await rejectsWithCode(resolveImage(db, registered.image.uuid, bob.uuid), "ENOT_FOUND");
    await rejectsWithCode(resolveImage(db, "frozen", bob.uuid), "ENOT_FOUND");
    await registerFileAsImage(served.service, db, { account: alice.uuid, container: "snapshots", path: "vol-1", name: "frozen", isPublic: true, replaceExisting: true });
    expect((await resolveImage(db, "frozen", bob.uuid)).mapName).toBe(byId.mapName);
    expect((await alice.objectRequest("HEAD", "/snapshots/vol-1")).header("x-object-sharing")).toBe("read=*");
  });

  it("refuses what cannot be resolved or registered", async () => {
    const alice = await harness().user("alice");
    const { served, db } = harness().pithos;
    await alice.container("c");
    await alice.put("/c/one", patternBytes(10));
    await alice.put("/c/two", patternBytes(20));
    await registerFileAsImage(served.service, db, { account: alice.uuid, container: "c", path: "one", name: "twin" });
    await registerFileAsImage(served.service, db, { account: alice.uuid, container: "c", path: "two", name: "twin" });
    await rejectsWithCode(resolveImage(db, "twin", alice.uuid), "ECONFLICT");
    await rejectsWithCode(resolveImage(db, randomUUID(), alice.uuid), "ENOT_FOUND");
    await rejectsWithCode(resolveImage(db, "no such image", alice.uuid), "ENOT_FOUND");
    // A queued image (no data yet) is not something to clone.
    const queued = await alice.expectJson("POST", "/v2/images", 201, { json: { name: "queued", disk_format: "raw", container_format: "bare" } });
    await rejectsWithCode(resolveImage(db, queued["id"] as string, alice.uuid), "ECONFLICT");

    await rejectsWithCode(registerFileAsImage(served.service, db, { account: alice.uuid, container: "c", path: "one", name: "again" }), "ECONFLICT");
    await rejectsWithCode(registerFileAsImage(served.service, db, { account: alice.uuid, container: "c", path: "missing", name: "x" }), "ENOT_FOUND");
    await rejectsWithCode(registerFileAsImage(served.service, db, { account: alice.uuid, container: "nope", path: "one", name: "x" }), "ENOT_FOUND");
    await rejectsWithCode(registerFileAsImage(served.service, db, { account: "not-a-uuid", container: "c", path: "one", name: "x" }), "ENOT_FOUND");
    await alice.put("/c/manifest", "", { "x-object-manifest": "c/o" });
    await rejectsWithCode(registerFileAsImage(served.service, db, { account: alice.uuid, container: "c", path: "manifest", name: "x" }), "EBAD_REQUEST");
  });
});
