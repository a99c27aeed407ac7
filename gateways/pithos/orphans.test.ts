/**
 * The orphan sweep (orphans.ts) on SQLite and PostgreSQL: `pithos.*` maps no version names
 * and older than the grace are deleted — exactly those: current, history and deleted versions'
 * maps, young maps (a write in flight) and other maps stay — and the engine gc after it frees
 * their blocks but none a live map shares.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, expect, it } from "vitest";
import { createContainer, createUser, ensureResources, listVersions, getVersion, standardResources } from "../../db/index.ts";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { MemoryObjectStore } from "../../engine/blocker/memory.ts";
import { Engine } from "../../engine/engine.ts";
import { OrphanSweepRefused, sweepOrphanMaps } from "./orphans.ts";
import { newFileMapName, PithosService } from "./service.ts";

const blockSizeBytes = 4096;

async function* bytes(data: Buffer): AsyncGenerator<Buffer> {
  yield data;
}

/** `blocks` blocks, each distinct from every other call's. */
let seed = 0;
function distinct(blocks: number): Buffer {
  const data = Buffer.alloc(blocks * blockSizeBytes, 7);
  for (let index = 0; index < blocks; index++) data.writeUInt32LE(++seed, index * blockSizeBytes);
  return data;
}

describeEachEngine("pithos: sweeping orphan file maps", (databases) => {
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
    const container = (await createContainer(db, user.uuid, "c")).container;
    const put = (path: string, data: Buffer) =>
      service.putFromStream(container, path, bytes(data), { contentType: "application/octet-stream" }, { modifiedBy: user.uuid });
    return { db, service, user, container, put };
  }

  it("deletes exactly the old unnamed maps; gc then frees their unshared blocks", async () => {
    const { db, service, user, container, put } = await setUp();
    const live = await put("current", distinct(2));
    await put("versioned", distinct(1));
    await put("versioned", distinct(1)); // the first is history now
    await put("deleted", distinct(1));
    await service.delete(container, "deleted", user.uuid); // a `deleted` version, its map kept
    await engine!.createVolume("vm1", 4 * blockSizeBytes); // not a file map: never the sweep's
    // What a crash between writing a map and recording its version leaves: one map of new
    // blocks, one sharing every block of a live version.
    const unique = newFileMapName();
    const uniqueData = distinct(3);
    const uniqueHashes = (await engine!.writeFile(unique, bytes(uniqueData))).hashes;
    const shared = newFileMapName();
    await engine!.copyFile(live.version.mapName, shared);
    await sleep(5);
    const markMs = Date.now();
    await sleep(5);
    // An upload in flight: its map is named, its version not recorded yet.
    const fresh = newFileMapName();
    await engine!.writeFile(fresh, bytes(distinct(1)));

    const versionMaps = new Set<string>();
    for (const path of ["current", "versioned", "deleted"]) {
      for (const { serial } of await listVersions(db, container.id, path)) versionMaps.add((await getVersion(db, container.id, path, serial))!.version.mapName);
    }
    expect(versionMaps.size).toBe(4);
    const sweep = { olderThanMs: 60_000, nowMs: markMs + 60_000 };

    const dry = await sweepOrphanMaps(service, { ...sweep, dryRun: true });
    expect(dry).toEqual({ fileMaps: 7, referencedMaps: 4, keptRecentMaps: 1, removedMaps: 2, lockedMaps: 0, olderThanMs: 60_000, dryRun: true });
    expect((await engine!.list()).length).toBe(8);

    const swept = await sweepOrphanMaps(service, sweep);
    expect(swept).toMatchObject({ fileMaps: 7, referencedMaps: 4, keptRecentMaps: 1, removedMaps: 2, dryRun: false });
    const left = (await engine!.list()).map((entry) => entry.name).sort();
    expect(left).toEqual([...versionMaps, fresh, "vm1"].sort());
    expect(await sweepOrphanMaps(service, sweep)).toMatchObject({ removedMaps: 0, keptRecentMaps: 1 });

    // The engine's gc now frees the unique map's blocks; the shared ones are the live file's.
    const gc = await engine!.gc({ graceMs: 0 });
    expect(gc.contentSweepSkipped).toBe(false);
    expect(gc.removedByKind["content-block"]).toBe(3);
    expect(await engine!.missingBlocks(uniqueHashes)).toHaveLength(3);
    const reader = await engine!.openFile(live.version.mapName);
    expect((await reader.read(0, live.version.sizeBytes)).length).toBe(live.version.sizeBytes);
    expect(await engine!.missingBlocks((await engine!.fileHashmap(live.version.mapName)).hashes)).toEqual([]);
  });

  it("keeps everything younger than the default hour", async () => {
    const { service, put } = await setUp();
    await put("a", distinct(1));
    await engine!.writeFile(newFileMapName(), bytes(distinct(1)));
    expect(await sweepOrphanMaps(service)).toMatchObject({ fileMaps: 2, referencedMaps: 1, keptRecentMaps: 1, removedMaps: 0, olderThanMs: 60 * 60 * 1000 });
  });

  it("refuses a database that names none of the store's file maps unless forced", async () => {
    const { service, put } = await setUp();
    await put("a", distinct(1));
    await engine!.writeFile(newFileMapName(), bytes(distinct(1)));
    const stranger = new PithosService({ engine: engine!, db: await databases.open() });
    const later = { nowMs: Date.now() + 2 * 60 * 60 * 1000 };
    await expect(sweepOrphanMaps(stranger, later)).rejects.toThrow(OrphanSweepRefused);
    expect(await sweepOrphanMaps(stranger, { ...later, force: true, dryRun: true })).toMatchObject({ removedMaps: 2 });
    expect(await sweepOrphanMaps(service, later)).toMatchObject({ referencedMaps: 1, removedMaps: 1 });
  });
});
