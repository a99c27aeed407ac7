import { spawn } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MemoryObjectStore } from "./blocker/memory.ts";
import { FileObjectStore } from "./blocker/file.ts";
import type { ObjectStore } from "./blocker/object-store.ts";
import { Engine } from "./engine.ts";
import { isEngineError, type EngineErrorCode } from "./errors.ts";
import { mapHeaderObject, storeHeaderObject } from "./mapper/headers.ts";

const blockSizeBytes = 4096;

async function rejectsWith(promise: Promise<unknown>, code: EngineErrorCode): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(isEngineError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  return error as Error;
}

/** Every object name and its bytes: "changes nothing" means this is equal before and after. */
async function storeContents(objects: ObjectStore): Promise<Map<string, string>> {
  const contents = new Map<string, string>();
  for await (const name of objects.list("")) {
    const stat = await objects.stat(name);
    contents.set(name, (await objects.read(name, 0, stat!.sizeBytes)).toString("hex"));
  }
  return contents;
}

describe("engine operations", () => {
  let engine: Engine;
  beforeEach(async () => {
    engine = await Engine.init(new MemoryObjectStore(), { blockSizeBytes });
  });
  afterEach(async () => {
    await engine.close();
  });

  it("copy-on-write keeps snapshots and clones independent", async () => {
    await engine.createVolume("base", 3 * blockSizeBytes);
    const base = await engine.openVolume("base");
    await base.write(0, Buffer.alloc(3 * blockSizeBytes, 1));
    await base.snapshot("s1");
    await base.write(10, Buffer.from("after"));
    await engine.clone("s1", "child");
    const child = await engine.openVolume("child");
    await child.write(blockSizeBytes, Buffer.from("child"));
    const s1 = await engine.openVolume("s1");
    expect((await s1.read(0, 3 * blockSizeBytes)).equals(Buffer.alloc(3 * blockSizeBytes, 1))).toBe(true);
    expect((await base.read(10, 5)).toString()).toBe("after");
    expect((await child.read(10, 5)).equals(Buffer.alloc(5, 1))).toBe(true);
    expect((await child.read(blockSizeBytes, 5)).toString()).toBe("child");
    expect((await base.read(blockSizeBytes, 5)).equals(Buffer.alloc(5, 1))).toBe(true);
    await Promise.all([base.close(), child.close(), s1.close()]);
  });

  it("snapshot and clone copy no data", async () => {
    await engine.createVolume("v", 8 * blockSizeBytes);
    const volume = await engine.openVolume("v");
    await volume.write(0, Buffer.alloc(8 * blockSizeBytes, 7));
    await volume.flush();
    const blocksBefore = (await engine.stats()).byKind["private-block"]?.objects;
    await volume.snapshot("s");
    await engine.clone("s", "c");
    const after = await engine.stats();
    expect(after.byKind["private-block"]?.objects).toBe(blocksBefore);
    expect(after.byKind["content-block"]).toBeUndefined();
    await volume.close();
  });

  it("block status reports zero and allocated runs from the map", async () => {
    await engine.createVolume("v", 4 * blockSizeBytes);
    const volume = await engine.openVolume("v");
    await volume.write(blockSizeBytes + 5, Buffer.from("x"));
    expect(volume.blockStatus(0, 4 * blockSizeBytes)).toEqual([
      { offsetBytes: 0, lengthBytes: blockSizeBytes, zero: true, allocated: false },
      { offsetBytes: blockSizeBytes, lengthBytes: blockSizeBytes, zero: false, allocated: true },
      { offsetBytes: 2 * blockSizeBytes, lengthBytes: 2 * blockSizeBytes, zero: true, allocated: false },
    ]);
    await volume.trim(blockSizeBytes, blockSizeBytes);
    expect(volume.blockStatus(0, 4 * blockSizeBytes)).toHaveLength(1);
    await volume.close();
  });

  it("concurrent writes to one block all land (copy-up serialised per block)", async () => {
    await engine.createVolume("v", 2 * blockSizeBytes);
    const volume = await engine.openVolume("v");
    await Promise.all(Array.from({ length: 64 }, (_, i) => volume.write(i * 64, Buffer.alloc(64, i + 1))));
    const data = await volume.read(0, 64 * 64);
    for (let i = 0; i < 64; i++) expect(data[i * 64]).toBe(i + 1);
    await volume.close();
  });

  it("diff lists the blocks changed since a snapshot, also after the snapshot is hashed", async () => {
    await engine.createVolume("v", 10 * blockSizeBytes);
    const volume = await engine.openVolume("v");
    await volume.write(0, Buffer.alloc(10 * blockSizeBytes, 3));
    await volume.snapshot("s");
    await volume.write(2 * blockSizeBytes, Buffer.from("a"));
    await volume.write(3 * blockSizeBytes + 7, Buffer.from("b"));
    await volume.write(7 * blockSizeBytes, Buffer.from("c"));
    await volume.flush();
    const expected = [
      { offsetBytes: 2 * blockSizeBytes, lengthBytes: 2 * blockSizeBytes },
      { offsetBytes: 7 * blockSizeBytes, lengthBytes: blockSizeBytes },
    ];
    expect((await engine.diff("s", "v")).ranges).toEqual(expected);
    await engine.hash("s");
    expect((await engine.diff("s", "v")).ranges).toEqual(expected);
    await volume.close();
  });

  it("hashing a snapshot repoints its idle source volume, so gc frees the private copies", async () => {
    await engine.createVolume("v", 4 * blockSizeBytes);
    const volume = await engine.openVolume("v");
    for (let i = 0; i < 4; i++) await volume.write(i * blockSizeBytes, Buffer.alloc(blockSizeBytes, i + 1));
    await volume.snapshot("s");
    await volume.write(0, Buffer.from("changed since"));
    await volume.close();
    const result = await engine.hash("s");
    expect(result.repointedBlocks).toBe(3);
    const info = await engine.info("v");
    expect([info.contentBlocks, info.privateBlocks]).toEqual([3, 1]);
    // Three repointed copies, and block 0's pre-snapshot copy, which only the snapshot named.
    const freed = await engine.gc({ graceMs: 0 });
    expect(freed.removedByKind["private-block"]).toBe(4);
    const reopened = await engine.openVolume("v", { readOnly: true });
    const data = await reopened.read(0, 4 * blockSizeBytes);
    expect(data.subarray(0, 13).toString()).toBe("changed since");
    for (let i = 1; i < 4; i++) expect(data.subarray(i * blockSizeBytes, (i + 1) * blockSizeBytes).equals(Buffer.alloc(blockSizeBytes, i + 1))).toBe(true);
    expect((await engine.diff("s", "v")).ranges).toEqual([{ offsetBytes: 0, lengthBytes: blockSizeBytes }]);
  });

  it("a served (locked) source volume is left alone by hash", async () => {
    await engine.createVolume("v", 2 * blockSizeBytes);
    const volume = await engine.openVolume("v");
    await volume.write(0, Buffer.alloc(2 * blockSizeBytes, 5));
    await volume.snapshot("s");
    expect((await engine.hash("s")).repointedBlocks).toBe(0);
    await volume.close();
    expect((await engine.info("v")).privateBlocks).toBe(2);
  });

  it("hash is resumable: an interrupted hash continues where it stopped", async () => {
    await engine.createVolume("v", 200 * blockSizeBytes);
    const volume = await engine.openVolume("v");
    for (let i = 0; i < 200; i++) await volume.write(i * blockSizeBytes, Buffer.alloc(blockSizeBytes, (i % 50) + 1));
    await volume.snapshot("s");
    await volume.close();
    // Interrupt after the first checkpoint by failing a write of the map entries.
    const objects = engine.objects as MemoryObjectStore;
    const write = objects.write.bind(objects);
    let entryWrites = 0;
    objects.write = async (name, offset, data) => {
      if (name.startsWith("e.") && ++entryWrites === 2) throw new Error("injected failure");
      return write(name, offset, data);
    };
    await expect(engine.hash("s")).rejects.toThrow("injected failure");
    objects.write = write;
    const progress: number[] = [];
    const result = await engine.hash("s", (p) => progress.push(p.doneBlocks));
    expect(progress[0]).toBeGreaterThanOrEqual(64);
    expect(result.doneBlocks).toBe(200);
    expect((await engine.info("s")).privateBlocks).toBe(0);
    expect((await engine.stats()).byKind["content-block"]?.objects).toBe(50);
    expect(result.header.contentHash).toMatch(/^[0-9a-f]{64}$/);
  });

  it("gc frees the blocks of deleted maps and keeps what live maps reference", async () => {
    await engine.createVolume("v", 4 * blockSizeBytes);
    const volume = await engine.openVolume("v");
    await volume.write(0, Buffer.alloc(4 * blockSizeBytes, 9));
    await volume.snapshot("s");
    await volume.write(0, Buffer.alloc(blockSizeBytes, 8));
    await volume.close();
    const dry = await engine.gc({ graceMs: 0, dryRun: true });
    expect(dry.removedObjects).toBe(0);
    await engine.delete("s");
    const planned = await engine.gc({ graceMs: 0, dryRun: true });
    expect(planned.removedByKind["private-block"]).toBe(1);
    const done = await engine.gc({ graceMs: 0 });
    expect(done.removedByKind["private-block"]).toBe(1);
    expect(done.removedBytes).toBeGreaterThanOrEqual(blockSizeBytes);
    const reopened = await engine.openVolume("v", { readOnly: true });
    const data = await reopened.read(0, 4 * blockSizeBytes);
    expect(data.subarray(0, blockSizeBytes).equals(Buffer.alloc(blockSizeBytes, 8))).toBe(true);
    expect(data.subarray(blockSizeBytes).equals(Buffer.alloc(3 * blockSizeBytes, 9))).toBe(true);
  });

  it("gc keeps recent garbage within the grace period", async () => {
    await engine.createVolume("v", blockSizeBytes);
    const volume = await engine.openVolume("v");
    await volume.write(0, Buffer.alloc(blockSizeBytes, 1));
    await volume.close();
    await engine.delete("v");
    const result = await engine.gc({ graceMs: 60_000 });
    expect(result.removedObjects).toBe(0);
    expect(result.keptRecentObjects).toBeGreaterThan(0);
  });
});

describe("bad input gets a clear error and changes nothing", () => {
  let engine: Engine;
  let before: Map<string, string>;
  beforeEach(async () => {
    engine = await Engine.init(new MemoryObjectStore(), { blockSizeBytes });
    await engine.createVolume("v", 2 * blockSizeBytes);
    const volume = await engine.openVolume("v");
    await volume.write(0, Buffer.from("data"));
    await volume.snapshot("s");
    await volume.close();
    before = await storeContents(engine.objects);
  });
  afterEach(async () => {
    expect(await storeContents(engine.objects)).toEqual(before);
    await engine.close();
  });

  it("unknown names", async () => {
    await rejectsWith(engine.openVolume("nope"), "ENOT_FOUND");
    await rejectsWith(engine.snapshot("nope", "x"), "ENOT_FOUND");
    await rejectsWith(engine.clone("nope", "x"), "ENOT_FOUND");
    await rejectsWith(engine.delete("nope"), "ENOT_FOUND");
    await rejectsWith(engine.diff("v", "nope"), "ENOT_FOUND");
    await rejectsWith(engine.hash("nope"), "ENOT_FOUND");
  });

  it("invalid names and sizes", async () => {
    await rejectsWith(engine.createVolume("../etc", blockSizeBytes), "EINVALID");
    await rejectsWith(engine.createVolume("a/b", blockSizeBytes), "EINVALID");
    await rejectsWith(engine.createVolume("x".repeat(200), blockSizeBytes), "EINVALID");
    await rejectsWith(engine.createVolume("ok", -1), "EINVALID");
    await rejectsWith(engine.createVolume("ok", 0.5), "EINVALID");
    await rejectsWith(engine.createVolume("v", blockSizeBytes), "EEXISTS");
    await rejectsWith(engine.createVolume("huge", 2 ** 24 * blockSizeBytes + 1), "EINVALID");
  });

  it("resize that shrinks", async () => {
    const error = await rejectsWith(engine.resize("v", blockSizeBytes), "EINVALID");
    expect(error.message).toMatch(/shrink/);
  });

  it("clone of a writable volume, hash of a writable volume, snapshot of a snapshot", async () => {
    await rejectsWith(engine.clone("v", "c"), "ENOT_FROZEN");
    await rejectsWith(engine.hash("v"), "ENOT_FROZEN");
    await rejectsWith(engine.snapshot("s", "s2"), "EREAD_ONLY");
    await rejectsWith(engine.clone("s", "c", { sizeBytes: blockSizeBytes }), "EINVALID");
  });

  it("writing past the end, and writing a snapshot", async () => {
    const volume = await engine.openVolume("v");
    await rejectsWith(volume.write(2 * blockSizeBytes - 1, Buffer.from("xy")), "ERANGE_PAST_END");
    await rejectsWith(volume.read(2 * blockSizeBytes, 1), "ERANGE_PAST_END");
    await rejectsWith(volume.writeZeroes(0, 3 * blockSizeBytes), "ERANGE_PAST_END");
    await rejectsWith(volume.write(-1, Buffer.from("x")), "EINVALID");
    await volume.close();
    const snapshot = await engine.openVolume("s");
    await rejectsWith(snapshot.write(0, Buffer.from("x")), "EREAD_ONLY");
    await snapshot.close();
  });

  it("a second writer in the same process", async () => {
    const volume = await engine.openVolume("v");
    await rejectsWith(engine.openVolume("v"), "EVOLUME_LOCKED");
    await rejectsWith(engine.delete("v"), "EVOLUME_LOCKED");
    await volume.close();
  });
});

describe("damaged metadata", () => {
  async function damaged(damage: (objects: MemoryObjectStore, mapId: string) => Promise<void>) {
    const objects = new MemoryObjectStore();
    const engine = await Engine.init(objects, { blockSizeBytes });
    const header = await engine.createVolume("v", blockSizeBytes);
    await damage(objects, header.mapId);
    return { objects, mapId: header.mapId };
  }

  it("a truncated or bit-flipped map header is ECORRUPT", async () => {
    for (const damage of [
      async (objects: MemoryObjectStore, mapId: string) => {
        const data = await objects.read(mapHeaderObject(mapId), 0, 30);
        await objects.writeFull(mapHeaderObject(mapId), data);
      },
      async (objects: MemoryObjectStore, mapId: string) => {
        const stat = await objects.stat(mapHeaderObject(mapId));
        const data = await objects.read(mapHeaderObject(mapId), 0, stat!.sizeBytes);
        data[data.length - 3] = (data[data.length - 3] as number) ^ 0x40;
        await objects.writeFull(mapHeaderObject(mapId), data);
      },
    ]) {
      const { objects } = await damaged(damage);
      const contents = await storeContents(objects);
      const engine = await Engine.open(objects);
      const error = await rejectsWith(engine.openVolume("v"), "ECORRUPT");
      expect(error.message).toMatch(/map header/);
      await rejectsWith(engine.snapshot("v", "s"), "ECORRUPT");
      expect(await storeContents(objects)).toEqual(contents);
    }
  });

  it("a missing, truncated or foreign store header", async () => {
    const empty = new MemoryObjectStore();
    await rejectsWith(Engine.open(empty), "ENO_STORE");
    const { objects } = await damaged(async (store) => {
      const data = await store.read(storeHeaderObject, 0, 10);
      await store.writeFull(storeHeaderObject, data);
    });
    await rejectsWith(Engine.open(objects), "ECORRUPT");
    await objects.writeFull(storeHeaderObject, Buffer.from("not a store header at all, just text"));
    await rejectsWith(Engine.open(objects), "ECORRUPT");
    await rejectsWith(Engine.init(objects), "EEXISTS");
  });
});

describe("locks across processes (file backend)", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-lock-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("a volume open in another live process is refused, naming the holder; free again when it dies", async () => {
    const engine = await Engine.init(await FileObjectStore.open(dir), { blockSizeBytes });
    await engine.createVolume("v", blockSizeBytes);
    const holder = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `const { FileObjectStore } = await import(${JSON.stringify(join(import.meta.dirname, "blocker/file.ts"))});
         const { Engine } = await import(${JSON.stringify(join(import.meta.dirname, "engine.ts"))});
         const engine = await Engine.open(await FileObjectStore.open(${JSON.stringify(dir)}));
         await engine.openVolume("v", { owner: "test-holder" });
         console.log("locked");
         setInterval(() => {}, 1000);`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const exited = new Promise((resolve) => holder.on("exit", resolve));
    try {
      for await (const line of createInterface({ input: holder.stdout })) if (line === "locked") break;
      const error = await rejectsWith(engine.openVolume("v"), "EVOLUME_LOCKED");
      expect(error.message).toContain("test-holder");
      expect(error.message).toContain(`pid ${holder.pid}`);
      expect((await engine.info("v")).lockHolder?.pid).toBe(holder.pid);
    } finally {
      holder.kill("SIGKILL");
      await exited;
    }
    const volume = await engine.openVolume("v");
    await volume.close();
    await engine.close();
  });
});

describe("dedup", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-dedup-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("the same 1 GiB written as two volumes and hashed is stored once", async () => {
    const blockBytes = 4 * 1024 * 1024;
    const blocks = 256;
    const distinct = 96;
    const engine = await Engine.init(await FileObjectStore.open(dir));
    const contents = Array.from({ length: distinct }, () => {
      const block = randomFillSync(Buffer.alloc(blockBytes));
      // Stored blocks drop trailing NULs (the Pithos+ rule): a non-zero last byte keeps sizes exact.
      block[blockBytes - 1] = 0xff;
      return block;
    });
    // Block i holds content i % distinct, except every 16th block, which is all zeros.
    const blockAt = (i: number) => (i % 16 === 15 ? undefined : contents[i % distinct]);
    const distinctNonZero = new Set(Array.from({ length: blocks }, (_, i) => blockAt(i)).filter((b) => b !== undefined)).size;
    for (const name of ["a", "b"]) {
      await engine.createVolume(name, blocks * blockBytes);
      const volume = await engine.openVolume(name);
      for (let i = 0; i < blocks; i++) {
        const block = blockAt(i);
        if (block !== undefined) await volume.write(i * blockBytes, block);
      }
      await volume.snapshot(`${name}-snap`);
      await volume.close();
      await engine.hash(`${name}-snap`);
    }
    const stats = await engine.stats();
    expect(stats.byKind["content-block"]?.objects).toBe(distinctNonZero);
    expect(stats.byKind["content-block"]?.bytes).toBe(distinctNonZero * blockBytes);
    // The volumes still name their private blocks; once they are gone, only shared blocks remain.
    await engine.delete("a");
    await engine.delete("b");
    await engine.gc({ graceMs: 0 });
    const after = await engine.stats();
    expect(after.byKind["private-block"]).toBeUndefined();
    expect(after.storedBlockBytes).toBe(distinctNonZero * blockBytes);
    expect(after.logicalBytes).toBe(2 * (blocks - blocks / 16) * blockBytes);
    expect(after.dedupRatio).toBeCloseTo((2 * (blocks - blocks / 16)) / distinctNonZero);
    const snapshot = await engine.openVolume("b-snap");
    expect((await snapshot.read(17 * blockBytes, blockBytes)).equals(contents[17]!)).toBe(true);
    expect((await snapshot.read(15 * blockBytes, blockBytes)).equals(Buffer.alloc(blockBytes))).toBe(true);
    await engine.close();
  });
});
