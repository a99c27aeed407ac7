/**
 * What each version is charged (pithos_versions.charged_bytes, migration 0005) and what
 * replacing or deleting it releases, on SQLite and PostgreSQL: usage must come back exactly to
 * where it started whatever the versions were charged — a version frozen from a volume is
 * charged only its new blocks (plankton/freeze.ts), and releasing its size instead drifted
 * usage down, towards zero with data still stored.
 */
import { afterEach, expect, it } from "vitest";
import { createContainer, createUser, ensureResources, getCurrent, getQuota, renameObject, setLimit, standardResources, type PithosContainer } from "../../db/index.ts";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { MemoryObjectStore } from "../../engine/blocker/memory.ts";
import { Engine } from "../../engine/engine.ts";
import { diskspaceResource, releaseRetryMs, reserveDiskspace } from "./quota.ts";
import { chargeAfterResize, PithosService, type StoredVersion } from "./service.ts";

const blockSizeBytes = 4096;
const limitBytes = 10 * 1024 * 1024;

async function* bytes(data: Buffer): AsyncGenerator<Buffer> {
  yield data;
}

describeEachEngine("pithos: what each version is charged", (databases) => {
  let engine: Engine | undefined;
  afterEach(async () => {
    await engine?.close();
    engine = undefined;
  });

  async function setUp() {
    const db = await databases.open();
    await ensureResources(db, standardResources);
    engine = await Engine.init(new MemoryObjectStore(), { blockSizeBytes });
    const service = new PithosService({ engine, db });
    const user = await createUser(db, { name: "alice" });
    await setLimit(db, user.uuid, diskspaceResource, limitBytes);
    const auto = (await createContainer(db, user.uuid, "auto")).container;
    const none = (await createContainer(db, user.uuid, "none", { versioning: "none" })).container;
    const usage = async (): Promise<number> => {
      const quota = await getQuota(db, user.uuid, diskspaceResource);
      expect([quota.pendingIncrease, quota.pendingDecrease]).toEqual([0, 0]);
      return quota.usage;
    };
    const put = (container: PithosContainer, path: string, data: Buffer, extra: { deleteAt?: number } = {}): Promise<StoredVersion> =>
      service.putFromStream(container, path, bytes(data), { contentType: "application/octet-stream", ...extra }, { modifiedBy: user.uuid });
    let frozen = 0;
    /** As completeFreeze stores a frozen volume: a hashed map's copy, charged `chargeBytes`. */
    const putFrozen = async (container: PithosContainer, path: string, blocks: number, chargeBytes: number): Promise<StoredVersion> => {
      const source = `frozen-${++frozen}`;
      await engine!.writeFile(source, bytes(Buffer.alloc(blocks * blockSizeBytes, frozen)));
      const stored = await service.putFromMap(container, path, source, { contentType: "application/octet-stream" }, { modifiedBy: user.uuid, chargeBytes });
      await engine!.delete(source);
      return stored;
    };
    return { db, service, user, auto, none, usage, put, putFrozen };
  }

  it("a frozen version overwritten, then deleted: usage returns exactly to its starting value", async () => {
    const { service, user, auto, none, usage, put, putFrozen } = await setUp();
    await put(auto, "other", Buffer.alloc(5000, 1));
    const start = await usage();
    expect(start).toBe(5000);
    for (const container of [auto, none]) {
      const image = await putFrozen(container, "image", 3, 1000);
      expect(image.version).toMatchObject({ sizeBytes: 3 * blockSizeBytes, chargedBytes: 1000 });
      expect(await usage()).toBe(start + 1000);
      // An ordinary upload over it releases the 1000 it was charged, not its 12 KiB.
      const plain = await put(container, "image", Buffer.alloc(2000, 2));
      expect(plain.version.chargedBytes).toBe(2000);
      expect(await usage()).toBe(start + 2000);
      // A frozen version over an ordinary one, deleted at once.
      await putFrozen(container, "image", 2, 500);
      expect(await usage()).toBe(start + 500);
      expect(await service.delete(container, "image", user.uuid)).toMatchObject({ chargedBytes: 500 });
      expect(await usage()).toBe(start);
    }
  });

  it("ordinary puts are charged their size; a metadata-only change keeps the charge it replaces", async () => {
    const { db, service, user, auto, usage, put, putFrozen } = await setUp();
    expect((await put(auto, "a", Buffer.alloc(3000, 1))).version.chargedBytes).toBe(3000);
    expect((await put(auto, "a", Buffer.alloc(7000, 2))).version.chargedBytes).toBe(7000);
    expect(await usage()).toBe(7000);
    const image = await putFrozen(auto, "image", 4, 4096);
    expect(await usage()).toBe(7000 + 4096);
    // What object-write.ts postObject commits: the same map and size, new metadata.
    const { version } = image;
    const updated = await service.commit(auto, "image", { ...version, meta: { Color: "blue" } }, { modifiedBy: user.uuid });
    expect(updated.version).toMatchObject({ chargedBytes: 4096, meta: { Color: "blue" } });
    expect(await usage()).toBe(7000 + 4096);
    expect((await getCurrent(db, auto.id, "image"))?.version.chargedBytes).toBe(4096);
  });

  it("copies are charged their size (they survive the source's delete); a move keeps its charge", async () => {
    const { db, service, user, auto, usage, putFrozen } = await setUp();
    const image = await putFrozen(auto, "image", 3, 1000);
    const copy = await service.copy(image, auto, "copy", { contentType: "application/octet-stream" }, { modifiedBy: user.uuid });
    expect(copy.version.chargedBytes).toBe(3 * blockSizeBytes);
    expect(await usage()).toBe(1000 + 3 * blockSizeBytes);
    // A move renames in the database; the moved version's charge goes with it.
    const moved = await renameObject(db, auto.id, "image", auto.id, "moved", { modifiedBy: user.uuid });
    expect(moved.version.chargedBytes).toBe(1000);
    await service.delete(auto, "moved", user.uuid);
    expect(await usage()).toBe(3 * blockSizeBytes);
    await service.delete(auto, "copy", user.uuid);
    expect(await usage()).toBe(0);
  });

  it("history is free; an expired version is released by the write or delete that replaces it", async () => {
    const { service, user, auto, usage, put } = await setUp();
    for (let round = 1; round <= 3; round++) await put(auto, "v", Buffer.alloc(1000 * round, round));
    expect(await usage()).toBe(3000);
    await put(auto, "expired", Buffer.alloc(4000, 1), { deleteAt: 1 });
    expect(await usage()).toBe(7000);
    await put(auto, "expired", Buffer.alloc(500, 2), { deleteAt: 1 });
    expect(await usage()).toBe(3500);
    // Reads as absent, but is deleted and released all the same.
    expect(await service.delete(auto, "expired", user.uuid)).toBeUndefined();
    expect(await usage()).toBe(3000);
  });

  it("concurrent overwrites of one path leave usage equal to the current version's charge", async () => {
    const { db, auto, usage, put } = await setUp();
    await Promise.all([1, 2, 3, 4, 5, 6].map((n) => put(auto, "raced", Buffer.alloc(n * 1000, n))));
    const current = await getCurrent(db, auto.id, "raced");
    expect(await usage()).toBe(current!.version.chargedBytes);
  });

  it("a release blocked only by another writer's pending release waits for it instead of being skipped", async () => {
    const { db, user, usage, auto, put } = await setUp();
    await put(auto, "v", Buffer.alloc(4000, 1));
    // Two overwriters of that version each reserve its release (3000 and 2000 bytes smaller);
    // with both pending, the holding refuses the second (usage 4000 - 3000 - 2000 < 0).
    const loser = await reserveDiskspace(db, user.uuid, -3000, "test loser");
    const winner = reserveDiskspace(db, user.uuid, -2000, "test winner");
    await new Promise((resolve) => setTimeout(resolve, 5 * releaseRetryMs));
    // The first loses its race (its version write fails) and rejects: the second goes through.
    await loser.reject();
    await (await winner).accept();
    expect(await usage()).toBe(2000);
  });

  it("a release that usage itself does not cover (drift) is skipped, never failing the write", async () => {
    const { db, user, usage, auto, put } = await setUp();
    await put(auto, "v", Buffer.alloc(1000, 1));
    const skipped = await reserveDiskspace(db, user.uuid, -5000, "test drift");
    await skipped.accept();
    expect(await usage()).toBe(1000);
  });

  it("a partial update's charge follows the size change and keeps a frozen version's discount", () => {
    const frozen = { sizeBytes: 10 * blockSizeBytes, chargedBytes: blockSizeBytes };
    expect(chargeAfterResize(frozen, frozen.sizeBytes)).toBe(blockSizeBytes);
    expect(chargeAfterResize(frozen, frozen.sizeBytes + 100)).toBe(blockSizeBytes + 100);
    expect(chargeAfterResize(frozen, 5 * blockSizeBytes)).toBe(0);
    expect(chargeAfterResize(frozen, 0)).toBe(0);
    expect(chargeAfterResize({ sizeBytes: 300, chargedBytes: 300 }, 200)).toBe(200);
    expect(chargeAfterResize({ sizeBytes: 300, chargedBytes: 300 }, 900)).toBe(900);
  });
});
