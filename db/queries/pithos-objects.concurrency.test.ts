/**
 * Pithos+ writes under real concurrency: on PostgreSQL the parallel calls run on separate
 * pooled connections, so they exercise the container row locks and the map reference check's
 * FOR UPDATE; on SQLite they are serialised in-process.
 */
import { randomUUID } from "node:crypto";
import { expect, it } from "vitest";
import { describeEachEngine } from "../testing/databases.ts";
import { createContainer, getContainerById, updateContainer } from "./pithos-containers.ts";
import { deleteObject, getCurrent, listVersions, purgeHistory, putVersion, renameObject, type NewPithosVersion } from "./pithos-objects.ts";

/** More connections than parallel calls, so every call really runs at once on PostgreSQL. */
const poolSizeMax = 24;

function data(mapName: string, sizeBytes: number): NewPithosVersion {
  return { mapName, sizeBytes, contentHash: "h", etag: "e", contentType: "text/plain" };
}

describeEachEngine("pithos objects under concurrency", (databases) => {
  it("keeps one current version per object and exact counters", async () => {
    const db = await databases.open({ poolSizeMax });
    const alice = randomUUID();
    const { container } = await createContainer(db, alice, "c");
    const writes = Array.from({ length: 40 }, (_, i) =>
      i % 4 === 3
        ? deleteObject(db, container.id, `p${i % 3}`)
        : putVersion(db, container.id, `p${i % 3}`, data(`m${i}`, i + 1), { modifiedBy: alice }),
    );
    const results = await Promise.allSettled(writes);
    expect(results.filter((result) => result.status === "rejected")).toEqual([]);
    let objects = 0;
    let bytes = 0;
    for (const path of ["p0", "p1", "p2"]) {
      const versions = await listVersions(db, container.id, path);
      expect(versions.filter((version) => version.state === "current").length).toBeLessThanOrEqual(1);
      const current = await getCurrent(db, container.id, path);
      if (current !== undefined) {
        objects++;
        bytes += current.version.sizeBytes;
      }
    }
    expect(await getContainerById(db, container.id)).toMatchObject({ objectCount: objects, bytesUsed: bytes });
  });

  it("frees a map shared by two containers exactly once when both let go at once", async () => {
    const db = await databases.open({ poolSizeMax });
    const alice = randomUUID();
    const { container: source } = await createContainer(db, alice, "source");
    const { container: dest } = await createContainer(db, alice, "dest", { versioning: "none" });
    for (let round = 0; round < 40; round++) {
      const map = `shared-${round}`;
      await putVersion(db, source.id, `o${round}`, data(map, 1), { modifiedBy: alice });
      // Source keeps a deleted version on the map; dest's current version uses it too.
      await renameObject(db, source.id, `o${round}`, dest.id, `o${round}`, { modifiedBy: alice });
      const [purged, replaced] = await Promise.all([
        purgeHistory(db, source.id, `o${round}`),
        putVersion(db, dest.id, `o${round}`, data(`other-${round}`, 1), { modifiedBy: alice }),
      ]);
      const freed = [...purged, ...replaced.unreferencedMaps].filter((name) => name === map);
      expect(freed, `round ${round}`).toEqual([map]);
    }
  });

  it("never lets concurrent writes past a container quota", async () => {
    const db = await databases.open({ poolSizeMax });
    const alice = randomUUID();
    const { container } = await createContainer(db, alice, "c", { quotaBytes: 100 });
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => putVersion(db, container.id, `f${i}`, data(`m${i}`, 10), { modifiedBy: alice })),
    );
    expect(results.filter((result) => result.status === "fulfilled").length).toBe(10);
    expect(await getContainerById(db, container.id)).toMatchObject({ objectCount: 10, bytesUsed: 100 });
    await updateContainer(db, container.id, { quotaBytes: null });
  });
});
