/**
 * Freezing a volume into an image (freeze.ts), on SQLite and PostgreSQL: the image is visible
 * `queued` at once and `active` after; its file shares every unchanged block with the volume;
 * the only block objects created are those hashing stores for new content; a freeze that
 * crashes at any store write finishes when run again; failFreeze leaves nothing behind.
 *
 * Crashes are simulated by a store that fails the Nth mutating call once (the process does
 * not die, but nothing after the failure runs: what a rerun sees is what a crash leaves).
 */
import { expect, it } from "vitest";
import { getQuota } from "../../db/index.ts";
import { describeEachEngine } from "../../db/testing/databases.ts";
import type { ObjectStore } from "../../engine/blocker/object-store.ts";
import type { Engine } from "../../engine/engine.ts";
import { isEngineError } from "../../engine/errors.ts";
import { diskspaceResource } from "../pithos/quota.ts";
import { beginFreeze, completeFreeze, failFreeze, freezeSnapshotName, PlanktonService } from "./index.ts";
import { useImageHarness, type ImageUser } from "./testing/harness.ts";

const blockSizeBytes = 4096;
/** 8 blocks: 6 of data (distinct), 2 left zero (holes: never stored). */
const volumeBlocks = 8;
const dataBlocks = 6;

/** The store's calls that change something: where a crash can fall. */
const mutatingCalls = new Set(["write", "writeFull", "createExclusive", "copy", "remove"]);

/** Fails the `failAt`-th mutating call after arming, once; counts them meanwhile. */
const faults = { armed: false, calls: 0, failAt: 0, fired: false };

function injectFaults(store: ObjectStore): ObjectStore {
  return new Proxy(store, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== "function") return value;
      if (typeof property === "string" && mutatingCalls.has(property)) {
        return (...args: unknown[]) => {
          if (faults.armed && !faults.fired && ++faults.calls === faults.failAt) {
            faults.fired = true;
            return Promise.reject(new Error(`injected crash at ${property} ${String(args[0])}`));
          }
          return (value as (...args: unknown[]) => unknown).apply(target, args);
        };
      }
      return (value as (...args: unknown[]) => unknown).bind(target);
    },
  });
}

/** Block `index` of a volume seeded `seed`: distinct across blocks and seeds. */
function blockData(seed: number, index: number): Buffer {
  const block = Buffer.alloc(blockSizeBytes, (seed * 31 + index * 7) % 251);
  block.writeUInt32LE(seed, 0);
  block.writeUInt32LE(index, 4);
  return block;
}

describeEachEngine("freezing a volume into an image", (databases) => {
  const harness = useImageHarness(databases, { blockSizeBytes, wrapStore: injectFaults });

  const setUp = async () => {
    const alice = await harness().user("alice");
    const { served, db } = harness().pithos;
    const plankton = new PlanktonService({ pithos: served.service });
    return { alice, engine: served.engine, db, plankton };
  };

  const contentBlocks = async (engine: Engine): Promise<number> => {
    let count = 0;
    for await (const _ of engine.objects.list("b.")) count++;
    return count;
  };

  const makeVolume = async (engine: Engine, name: string, seed: number): Promise<Buffer> => {
    await engine.createVolume(name, volumeBlocks * blockSizeBytes);
    const content = Buffer.alloc(volumeBlocks * blockSizeBytes);
    for (let index = 0; index < dataBlocks; index++) blockData(seed, index).copy(content, index * blockSizeBytes);
    await writeVolume(engine, name, 0, content.subarray(0, dataBlocks * blockSizeBytes));
    return content;
  };

  const writeVolume = async (engine: Engine, name: string, offsetBytes: number, data: Buffer): Promise<void> => {
    const volume = await engine.openVolume(name);
    try {
      await volume.write(offsetBytes, data);
      await volume.flush();
    } finally {
      await volume.close();
    }
  };

  const mapExists = async (engine: Engine, name: string): Promise<boolean> =>
    engine.maps.lookup(name).then(
      () => true,
      (error: unknown) => {
        if (isEngineError(error, "ENOT_FOUND")) return false;
        throw error;
      },
    );

  const listedStatus = async (user: ImageUser, id: string): Promise<unknown> => {
    const listing = await user.expectJson<{ images: Array<Record<string, unknown>> }>("GET", "/v2/images", 200);
    return listing.images.find((image) => image["id"] === id)?.["status"];
  };

  const usageBytes = async (db: Awaited<ReturnType<typeof setUp>>["db"], uuid: string): Promise<number> => (await getQuota(db, uuid, diskspaceResource)).usage;

  it("shows the image queued at once, active after, sharing every unchanged block; only hashing creates blocks", async () => {
    const { alice, engine, db, plankton } = await setUp();
    const content = await makeVolume(engine, "vol-a", 1);
    const blocksBefore = await contentBlocks(engine);
    const usageBefore = await usageBytes(db, alice.uuid);

    const { imageId } = await beginFreeze(plankton, { owner: alice.uuid, name: "snap-a", properties: { image_type: "snapshot" } });
    expect(await listedStatus(alice, imageId)).toBe("queued");
    expect(await contentBlocks(engine)).toBe(blocksBefore);

    const progress: Array<[number, number]> = [];
    const snapshots: string[] = [];
    const result = await completeFreeze(plankton, engine, {
      imageId,
      owner: alice.uuid,
      volume: "vol-a",
      snapshot: async (name) => {
        snapshots.push(name);
        // Mid-freeze the image is `saving`, and still listed.
        expect(await listedStatus(alice, imageId)).toBe("saving");
        await engine.snapshot("vol-a", name);
      },
      onProgress: (done, total) => progress.push([done, total]),
    });
    expect(snapshots).toEqual([freezeSnapshotName(imageId)]);
    expect(progress.at(-1)).toEqual([volumeBlocks, volumeBlocks]);
    expect(result).toMatchObject({ totalBlocks: volumeBlocks, storedBlocks: dataBlocks, resumed: false });
    expect(await contentBlocks(engine)).toBe(blocksBefore + dataBlocks);
    expect(await mapExists(engine, freezeSnapshotName(imageId))).toBe(false);

    const shown = await alice.expectJson("GET", `/v2/images/${imageId}`, 200);
    expect(shown).toMatchObject({ status: "active", size: content.length, virtual_size: content.length, disk_format: "raw", container_format: "bare", image_type: "snapshot" });
    const download = await alice.image("GET", `/v2/images/${imageId}/file`);
    expect(download.status).toBe(200);
    expect(download.body.equals(content)).toBe(true);
    // Charged for the blocks hashing stored, not the image's size.
    expect((await usageBytes(db, alice.uuid)) - usageBefore).toBe(dataBlocks * blockSizeBytes);

    // The volume changes one block; a second freeze stores that block alone, and its hashmap
    // differs from the first image's exactly there.
    expect((await engine.info("vol-a")).privateBlocks).toBe(0);
    await writeVolume(engine, "vol-a", 2 * blockSizeBytes, blockData(99, 2));
    expect((await engine.info("vol-a")).privateBlocks).toBe(1);
    const second = await beginFreeze(plankton, { owner: alice.uuid, name: "snap-a2" });
    const again = await completeFreeze(plankton, engine, { imageId: second.imageId, owner: alice.uuid, volume: "vol-a", snapshot: async (name) => void (await engine.snapshot("vol-a", name)) });
    expect(again.storedBlocks).toBe(1);
    expect(await contentBlocks(engine)).toBe(blocksBefore + dataBlocks + 1);
    const first = await engine.fileHashmap(result.image.file.version.mapName);
    const changed = await engine.fileHashmap(again.image.file.version.mapName);
    const differing = first.hashes.flatMap((hash, index) => (hash.equals(changed.hashes[index] as Buffer) ? [] : [index]));
    expect(differing).toEqual([2]);

    // Run again, it is done: no snapshot, nothing stored.
    const rerun = await completeFreeze(plankton, engine, { imageId, owner: alice.uuid, volume: "vol-a", snapshot: () => Promise.reject(new Error("not again")) });
    expect(rerun).toMatchObject({ storedBlocks: 0, resumed: true });
    expect(rerun.image.file.version.serial).toBe(result.image.file.version.serial);
  });

  it("finishes the job when rerun after a crash at any store write", async () => {
    const { alice, engine, db, plankton } = await setUp();
    // Each round crashes one write later, until a run meets no crash.
    for (let failAt = 1; ; failAt++) {
      const volume = `vol-crash-${failAt}`;
      const content = await makeVolume(engine, volume, 1000 + failAt);
      const blocksBefore = await contentBlocks(engine);
      const usageBefore = await usageBytes(db, alice.uuid);
      const { imageId } = await beginFreeze(plankton, { owner: alice.uuid, name: `crash-${failAt}` });
      let snapshotsTaken = 0;
      const options = {
        imageId,
        owner: alice.uuid,
        volume,
        snapshot: async (name: string) => {
          await engine.snapshot(volume, name);
          snapshotsTaken++;
        },
      };
      Object.assign(faults, { armed: true, calls: 0, failAt, fired: false });
      let crashed: unknown;
      try {
        await completeFreeze(plankton, engine, options);
      } catch (error) {
        crashed = error;
      } finally {
        faults.armed = false;
      }
      if (!faults.fired) {
        expect(crashed).toBeUndefined();
        expect(failAt).toBeGreaterThan(10); // the loop did visit the steps
        break;
      }
      // A failed cleanup of the replaced empty map is survived (gc's); any other failure stops the run.
      if (crashed !== undefined) expect(String(crashed)).toMatch(/injected crash/);
      expect(await listedStatus(alice, imageId)).toMatch(/^(saving|active)$/);

      const finished = await completeFreeze(plankton, engine, options);
      expect(finished.image.image.status, `crash at write ${failAt}`).toBe("active");
      // A snapshot that was taken is never taken again (a crash inside one may leave it whole).
      expect(snapshotsTaken, `crash at write ${failAt}`).toBeLessThanOrEqual(1);
      expect(await mapExists(engine, freezeSnapshotName(imageId))).toBe(false);
      const download = await alice.image("GET", `/v2/images/${imageId}/file`);
      expect(download.body.equals(content), `crash at write ${failAt}`).toBe(true);
      // Blocks: the new content, once, whichever run stored it.
      expect(await contentBlocks(engine)).toBe(blocksBefore + dataBlocks);
      // Charged at most the new blocks (a resumed hash counts only its own run's).
      const charged = (await usageBytes(db, alice.uuid)) - usageBefore;
      expect(charged).toBeGreaterThanOrEqual(0);
      expect(charged).toBeLessThanOrEqual(dataBlocks * blockSizeBytes);
    }
  });

  it("failFreeze deletes the image, its file and its snapshot; an active image stays", async () => {
    const { alice, engine, db, plankton } = await setUp();
    await makeVolume(engine, "vol-f", 2);
    const blocksBefore = await contentBlocks(engine);
    const usageBefore = await usageBytes(db, alice.uuid);
    const { imageId } = await beginFreeze(plankton, { owner: alice.uuid, name: "doomed" });
    const snapshotName = freezeSnapshotName(imageId);
    await expect(
      completeFreeze(plankton, engine, {
        imageId,
        owner: alice.uuid,
        volume: "vol-f",
        snapshot: async (name) => {
          await engine.snapshot("vol-f", name);
          throw new Error("the hypervisor went away");
        },
      }),
    ).rejects.toThrow("the hypervisor went away");
    expect(await listedStatus(alice, imageId)).toBe("saving");
    expect(await mapExists(engine, snapshotName)).toBe(true);
    // A Glance upload cannot take over an image a freeze holds.
    expect((await alice.image("PUT", `/v2/images/${imageId}/file`, { body: Buffer.alloc(10), headers: { "content-type": "application/octet-stream" } })).status).toBe(409);

    await failFreeze(plankton, imageId);
    expect(await listedStatus(alice, imageId)).toBeUndefined();
    expect((await alice.image("GET", `/v2/images/${imageId}`)).status).toBe(404);
    expect((await alice.objectRequest("HEAD", `/images/${imageId}`)).status).toBe(404);
    expect(await mapExists(engine, snapshotName)).toBe(false);
    expect(await contentBlocks(engine)).toBe(blocksBefore);
    expect(await usageBytes(db, alice.uuid)).toBe(usageBefore);
    await failFreeze(plankton, imageId); // again: nothing left, no error

    const kept = await beginFreeze(plankton, { owner: alice.uuid, name: "kept" });
    await completeFreeze(plankton, engine, { imageId: kept.imageId, owner: alice.uuid, volume: "vol-f", snapshot: async (name) => void (await engine.snapshot("vol-f", name)) });
    await failFreeze(plankton, kept.imageId);
    expect(await listedStatus(alice, kept.imageId)).toBe("active");
  });
});
