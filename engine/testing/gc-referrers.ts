/**
 * The interleavings of gc with the operations that make maps reference content blocks
 * (engine/mapper/gc.ts's header): each test pauses gc between its mark and its sweep
 * (`onMarked`), lets a referrer dedup onto a block that no map referenced at mark time,
 * and checks the block survives the sweep. Run on every backend: engine/mapper/gc.test.ts
 * (memory, file), engine/blocker/rados/gc-rados.test.ts.
 */
import { randomFillSync } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { blockHash, contentObjectName } from "../blocker/content.ts";
import { FileObjectStore } from "../blocker/file.ts";
import { MemoryObjectStore } from "../blocker/memory.ts";
import type { ObjectStore } from "../blocker/object-store.ts";
import { Engine } from "../engine.ts";
import { gcRunObject } from "../mapper/references.ts";

const blockSizeBytes = 4096;

export type StoreKind = "memory" | "file" | "rados";

/** `parts` as the async stream writeFile takes. */
export async function* stream(...parts: Buffer[]): AsyncGenerator<Buffer> {
  yield* parts;
}

/** A promise and the function that settles it: a gate a test opens when it wants. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open = (): void => undefined;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

/** The interleavings on one backend (rados: engine/blocker/rados/gc-rados.test.ts). */
export function gcReferrerSuite(storeKind: StoreKind, openRados?: () => Promise<ObjectStore>): void {
  const dirs: string[] = [];
  let store: ObjectStore;
  let engine: Engine;
  const data = Buffer.alloc(blockSizeBytes * 2);
  randomFillSync(data);
  const block0 = contentObjectName(blockHash("sha256", data.subarray(0, blockSizeBytes)));

  async function openStore(): Promise<ObjectStore> {
    if (storeKind === "memory") return new MemoryObjectStore();
    if (openRados !== undefined) return openRados();
    dirs.push(await mkdtemp(join(tmpdir(), "okeanos-gc-")));
    return FileObjectStore.open(dirs.at(-1) as string);
  }

  beforeEach(async () => {
    store = await openStore();
    engine = await Engine.init(store, { blockSizeBytes, hashAlgorithm: "sha256" });
    // Leave the blocks of `data` stored and referenced by no map: what a deleted file leaves.
    await engine.writeFile("old", stream(data));
    await engine.delete("old");
    expect(await store.stat(block0)).toBeDefined();
  });
  afterEach(async () => {
    await engine.close();
    await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  });

  /** Runs gc (grace 0: every unreferenced block is old enough), running `between` while it is paused after its mark. */
  async function gcAround(between: () => Promise<void>, lockWaitMs?: number) {
    const paused = gate();
    const resume = gate();
    const running = engine.gc({
      graceMs: 0,
      ...(lockWaitMs === undefined ? {} : { lockWaitMs }),
      onMarked: async () => {
        paused.open();
        await resume.opened;
      },
    });
    await paused.opened;
    try {
      await between();
    } finally {
      resume.open();
    }
    return running;
  }

  it("an upload that dedups onto an unreferenced block while gc is paused keeps it", async () => {
    const result = await gcAround(async () => {
      const written = await engine.writeFile("new", stream(data));
      expect(written.storedBlocks).toBe(0); // deduplicated onto the old blocks, none rewritten
    });
    expect(result.contentSweepSkipped).toBe(false);
    expect(await store.stat(block0)).toBeDefined();
    expect((await (await engine.openFile("new")).read(0, data.length)).equals(data)).toBe(true);
    expect(await store.stat(gcRunObject)).toBeUndefined();
    // Unreferenced again, the blocks go at the next gc.
    await engine.delete("new");
    expect((await engine.gc({ graceMs: 0 })).removedByKind["content-block"]).toBe(2);
  });

  it("createFile from a hashmap, and copyFile of it, while gc is paused keep the blocks", async () => {
    const hashes = [blockHash("sha256", data.subarray(0, blockSizeBytes)), blockHash("sha256", data.subarray(blockSizeBytes))];
    await gcAround(async () => {
      expect(await engine.createFile("from-hashes", data.length, hashes)).toMatchObject({ created: true });
      await engine.copyFile("from-hashes", "copy");
      await engine.delete("from-hashes");
    });
    expect((await (await engine.openFile("copy")).read(0, data.length)).equals(data)).toBe(true);
  });

  it("a hash that rewrites an existing snapshot onto the blocks while gc is paused keeps them", async () => {
    const volume = await engine.openVolume(await engine.createVolume("vol", data.length).then((header) => header.name));
    await volume.write(0, data);
    await volume.snapshot("snap");
    await volume.close();
    // gc marks "snap" naming private blocks; the hash then points it at the old content blocks in place.
    await gcAround(async () => {
      expect((await engine.hash("snap")).storedBlocks).toBe(0);
    });
    expect(await store.stat(block0)).toBeDefined();
    expect((await (await engine.openFile("snap")).read(0, data.length)).equals(data)).toBe(true);
  });

  it("an upload in progress keeps gc out of content blocks until it ends", async () => {
    const stall = gate();
    async function* source(): AsyncGenerator<Buffer> {
      yield data.subarray(0, blockSizeBytes * 2);
      await stall.opened;
    }
    const upload = engine.writeFile("slow", source());
    // Give it time to store (dedup) its blocks; it still holds its reference session.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const result = await engine.gc({ graceMs: 0, lockWaitMs: 100 });
    expect(result.contentSweepSkipped).toBe(true);
    expect(result.contentSweepSkippedReason).toMatch(/l\.refs/);
    stall.open();
    await upload;
    expect((await (await engine.openFile("slow")).read(0, data.length)).equals(data)).toBe(true);
  });

  it("a second gc while one runs takes over; the first stops sweeping content blocks", async () => {
    const other = Buffer.alloc(blockSizeBytes, 9);
    const first = await gcAround(async () => {
      const second = await engine.gc({ graceMs: 0 });
      expect(second.contentSweepSkipped).toBe(false);
      expect(second.removedByKind["content-block"]).toBe(2);
      // An unreferenced block for the first gc to find: it must leave it, its pins being gone.
      await engine.writeFile("other", stream(other));
      await engine.delete("other");
    });
    expect(first.contentSweepSkipped).toBe(true);
    expect(first.contentSweepSkippedReason).toMatch(/another gc/);
    expect(await store.stat(contentObjectName(blockHash("sha256", other)))).toBeDefined();
    expect(await store.stat(gcRunObject)).toBeUndefined();
  });
}
