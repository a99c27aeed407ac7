/**
 * `okeanos gc` with and without a metadata database, as an operator runs it: the real CLI as a
 * child process over a file store and a SQLite database a Pithos service wrote to first.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createContainer, createUser, ensureResources, migrateToLatest, openDatabase, standardResources } from "../../db/index.ts";
import { FileObjectStore } from "../../engine/blocker/file.ts";
import { Engine } from "../../engine/engine.ts";
import { newFileMapName, PithosService } from "../../gateways/pithos/service.ts";
import { exitCodes } from "../output.ts";
import { cliFor, okJson, type CliResult } from "../testing/run-cli.ts";

const blockSizeBytes = 4096;

async function* bytes(data: Buffer): AsyncGenerator<Buffer> {
  yield data;
}

describe("okeanos gc --database", () => {
  let dir: string;
  let okeanos: (...args: string[]) => Promise<CliResult>;
  let database: string;
  let fileMap: string;
  let orphan: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-gc-cli-"));
    const storeDir = join(dir, "store");
    database = `sqlite:${join(dir, "okeanos.db")}`;
    okeanos = cliFor(storeDir, { env: { OKEANOS_DATABASE: undefined } });
    const engine = await Engine.init(await FileObjectStore.open(storeDir), { blockSizeBytes });
    const db = await openDatabase(database);
    try {
      await migrateToLatest(db);
      await ensureResources(db, standardResources);
      const service = new PithosService({ engine, db });
      const user = await createUser(db, { name: "alice" });
      const container = (await createContainer(db, user.uuid, "c")).container;
      const stored = await service.putFromStream(container, "kept", bytes(Buffer.alloc(2 * blockSizeBytes, 1)), { contentType: "text/plain" }, { modifiedBy: user.uuid });
      fileMap = stored.version.mapName;
      // A crash between the engine write and the version record: two blocks nothing else names.
      orphan = newFileMapName();
      await engine.writeFile(orphan, bytes(Buffer.concat([Buffer.alloc(blockSizeBytes, 2), Buffer.alloc(blockSizeBytes, 3)])));
    } finally {
      await db.close();
      await engine.close();
    }
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const names = async () => (await okJson<Array<{ name: string }>>(okeanos("volume", "list", "--json"))).map((entry) => entry.name).sort();

  it("without a database touches no file map", async () => {
    const result = await okJson<Record<string, unknown>>(okeanos("gc", "--grace", "0", "--json"));
    expect(result).not.toHaveProperty("files");
    expect(await names()).toEqual([fileMap, orphan].sort());
  });

  it("refuses a database that names none of the store's files", async () => {
    const wrong = await okeanos("gc", "--grace", "0", "--database", `sqlite:${join(dir, "other.db")}`);
    expect(wrong.code).toBe(exitCodes.usage);
    expect(wrong.stderr).toMatch(/names none of the store's 2 file maps.*--force deletes all 2/);
    expect(await names()).toEqual([fileMap, orphan].sort());
  });

  it("with one, deletes the orphan map (after the grace) and frees its blocks in the same run", async () => {
    const young = await okJson<{ files: Record<string, number> }>(okeanos("gc", "--database", database, "--json"));
    expect(young.files).toMatchObject({ fileMaps: 2, referencedMaps: 1, keptRecentMaps: 1, removedMaps: 0 });
    const dry = await okJson<{ files: Record<string, number> }>(okeanos("gc", "--grace", "0", "--dry-run", "--database", database, "--json"));
    expect(dry.files).toMatchObject({ removedMaps: 1, dryRun: true });
    expect(await names()).toEqual([fileMap, orphan].sort());

    const text = await okeanos("gc", "--grace", "0", "--database", database);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^Deleted 1 orphan file map \(2 file maps, 1 named by versions, 0 younger than grace\)\nFreed \d+ objects/);
    expect(text.stdout).toMatch(/^content-block +2$/m);
    expect(await names()).toEqual([fileMap]);
    const again = await okJson<{ files: Record<string, number>; removedObjects: number }>(okeanos("gc", "--grace", "0", "--database", database, "--json"));
    expect(again.files).toMatchObject({ fileMaps: 1, removedMaps: 0 });
    expect(again.removedObjects).toBe(0);
  });
});

describe("okeanos gc while a volume is open for writing", () => {
  it("leaves content blocks alone and says why", async () => {
    const dir = await mkdtemp(join(tmpdir(), "okeanos-gc-busy-"));
    try {
      const storeDir = join(dir, "store");
      const okeanos = cliFor(storeDir, { env: { OKEANOS_DATABASE: undefined } });
      const engine = await Engine.init(await FileObjectStore.open(storeDir), { blockSizeBytes });
      try {
        await engine.createVolume("busy", 4 * blockSizeBytes);
        const volume = await engine.openVolume("busy");
        try {
          await volume.write(0, Buffer.alloc(blockSizeBytes, 7));
          await volume.flush();
          const result = await okeanos("gc", "--grace", "0");
          expect(result.code).toBe(0);
          expect(result.stdout).toMatch(/^Content blocks were not swept \(1 map\(s\) locked by a writer or hasher\); run gc again later\.$/m);
        } finally {
          await volume.close();
        }
      } finally {
        await engine.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
