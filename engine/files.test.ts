import { createHash, randomFillSync } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { blockHash, contentObjectName, merkleRoot, zeroBlockHash } from "./blocker/content.ts";
import { FileObjectStore } from "./blocker/file.ts";
import { MemoryObjectStore } from "./blocker/memory.ts";
import type { LockHolder, LockMode, ObjectLock, ObjectStat, ObjectStore, ReplaceOptions } from "./blocker/object-store.ts";
import { Engine } from "./engine.ts";
import { isEngineError, type EngineErrorCode } from "./errors.ts";
import { fileReadAheadBlocks, fileWriteBlocksInFlight } from "./files.ts";
import { ExportRegistry } from "./nbd/exports.ts";

const blockSizeBytes = 4096;

/** Delegates to `next`, counting block reads and optionally slowing block creation. */
class CountingStore implements ObjectStore {
  readonly next: ObjectStore;
  blockReads = 0;
  createDelayMs = 0;
  blocksCreated = 0;

  constructor(next: ObjectStore) {
    this.next = next;
  }
  get capabilities() {
    return this.next.capabilities;
  }
  get uri() {
    return this.next.uri;
  }
  read(name: string, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    if (name.startsWith("b.")) this.blockReads++;
    return this.next.read(name, offsetBytes, lengthBytes);
  }
  readInto(name: string, offsetBytes: number, target: Buffer): Promise<void> {
    if (name.startsWith("b.")) this.blockReads++;
    return this.next.readInto(name, offsetBytes, target);
  }
  write(name: string, offsetBytes: number, data: Uint8Array): Promise<void> {
    return this.next.write(name, offsetBytes, data);
  }
  writeFull(name: string, data: Uint8Array, offsetBytes?: number, options?: ReplaceOptions): Promise<void> {
    return this.next.writeFull(name, data, offsetBytes, options);
  }
  async createExclusive(name: string, data: Uint8Array): Promise<boolean> {
    if (name.startsWith("b.") && this.createDelayMs > 0) await sleep(this.createDelayMs);
    const created = await this.next.createExclusive(name, data);
    if (name.startsWith("b.")) this.blocksCreated++;
    return created;
  }
  copy(source: string, target: string, options?: ReplaceOptions): Promise<void> {
    return this.next.copy(source, target, options);
  }
  stat(name: string): Promise<ObjectStat | undefined> {
    return this.next.stat(name);
  }
  remove(name: string): Promise<boolean> {
    return this.next.remove(name);
  }
  list(prefix: string): AsyncIterable<string> {
    return this.next.list(prefix);
  }
  barrier(): Promise<void> {
    return this.next.barrier();
  }
  lock(name: string, owner: string, leaseMs: number, mode?: LockMode): Promise<ObjectLock> {
    return this.next.lock(name, owner, leaseMs, mode);
  }
  lockHolder(name: string): Promise<LockHolder | undefined> {
    return this.next.lockHolder(name);
  }
  close(): Promise<void> {
    return this.next.close();
  }
}

async function rejectsWith(promise: Promise<unknown>, code: EngineErrorCode): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(isEngineError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
}

async function objectCount(objects: ObjectStore, prefix: string): Promise<number> {
  let count = 0;
  for await (const _name of objects.list(prefix)) count++;
  return count;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** `data` in chunks cycling through `sizes`. */
async function* chunked(data: Buffer, sizes: readonly number[]): AsyncGenerator<Uint8Array> {
  let turn = 0;
  for (let offset = 0; offset < data.length; turn++) {
    const size = sizes[turn % sizes.length] as number;
    yield data.subarray(offset, offset + size);
    offset += size;
  }
}

function random(lengthBytes: number): Buffer {
  return randomFillSync(Buffer.alloc(lengthBytes));
}

/** Blocks of `data` by the store's block size (the last may be short). */
function blocksOf(data: Buffer, size = blockSizeBytes): Buffer[] {
  const blocks: Buffer[] = [];
  for (let offset = 0; offset < data.length; offset += size) blocks.push(data.subarray(offset, offset + size));
  return blocks;
}

type StoreKind = "memory" | "file";

describe.each<StoreKind>(["memory", "file"])("files on the %s store", (storeKind) => {
  const dirs: string[] = [];
  let store: CountingStore;
  let engine: Engine;

  async function newEngine(size = blockSizeBytes): Promise<Engine> {
    let backend: ObjectStore = new MemoryObjectStore();
    if (storeKind === "file") {
      dirs.push(await mkdtemp(join(tmpdir(), "okeanos-files-")));
      backend = await FileObjectStore.open(dirs.at(-1) as string);
    }
    store = new CountingStore(backend);
    return Engine.init(store, { blockSizeBytes: size, hashAlgorithm: "sha256" });
  }

  beforeEach(async () => {
    engine = await newEngine();
  });
  afterEach(async () => {
    await engine.close();
    await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  });

  const zero = zeroBlockHash("sha256");

  it("createFile names nothing while blocks are missing, and lists them once each in order", async () => {
    const [a, b] = [random(blockSizeBytes), random(blockSizeBytes)];
    const [hashA, hashB] = [blockHash("sha256", a), blockHash("sha256", b)];
    await engine.storeBlock(Buffer.from(a));
    const hashes = [hashB, zero, hashA, hashB, zero];
    const before = await objectCount(store, "");
    const result = await engine.createFile("f", 4 * blockSizeBytes + 10, hashes);
    expect(result).toEqual({ created: false, missing: [hashB] });
    expect(await objectCount(store, "")).toBe(before);
    await rejectsWith(engine.openFile("f"), "ENOT_FOUND");
    expect(await engine.missingBlocks(hashes)).toEqual([hashB]);

    await engine.storeBlock(Buffer.from(b));
    const created = await engine.createFile("f", 4 * blockSizeBytes + 10, hashes);
    expect(created.created).toBe(true);
    if (!created.created) return;
    expect(created.header).toMatchObject({ kind: "file", frozen: true, sizeBytes: 4 * blockSizeBytes + 10 });
    expect(created.header.contentHash).toBe(merkleRoot("sha256", hashes).toString("hex"));
    const reader = await engine.openFile("f");
    const expected = Buffer.concat([b, Buffer.alloc(blockSizeBytes), a, b, Buffer.alloc(10)]);
    expect((await reader.read(0, reader.sizeBytes)).equals(expected)).toBe(true);
    const info = await engine.info("f");
    expect(info).toMatchObject({ zeroBlocks: 2, contentBlocks: 3, privateBlocks: 0 });
  });

  it("createFile checks the hashmap: one 32-byte hash per block, a free valid name", async () => {
    const stored = await engine.storeBlock(random(100));
    await rejectsWith(engine.createFile("f", blockSizeBytes + 1, [stored.hash]), "EINVALID");
    await rejectsWith(engine.createFile("f", blockSizeBytes, [stored.hash, stored.hash]), "EINVALID");
    await rejectsWith(engine.createFile("f", 100, [stored.hash.subarray(0, 31)]), "EINVALID");
    await rejectsWith(engine.createFile("f", -1, []), "EINVALID");
    await rejectsWith(engine.createFile("-bad", 100, [stored.hash]), "EINVALID");
    expect((await engine.createFile("f", 100, [stored.hash])).created).toBe(true);
    await rejectsWith(engine.createFile("f", 100, [stored.hash]), "EEXISTS");
  });

  it("creates an empty file from [] and from Pithos's [H(\"\")]", async () => {
    for (const [name, hashes] of [["empty1", []], ["empty2", [zero]]] as const) {
      const result = await engine.createFile(name, 0, hashes);
      expect(result.created).toBe(true);
      const hashmap = await engine.fileHashmap(name);
      expect(hashmap).toEqual({ sizeBytes: 0, blockSizeBytes, algorithm: "sha256", hashes: [], contentHash: zero.toString("hex") });
      const reader = await engine.openFile(name);
      expect(reader.sizeBytes).toBe(0);
      expect((await reader.read(0, 0)).length).toBe(0);
      expect((await collect(reader.stream(0, 0))).length).toBe(0);
    }
    await rejectsWith(engine.createFile("empty3", 0, [zero, zero]), "EINVALID");
    const written = await engine.writeFile("empty4", chunked(Buffer.alloc(0), [1]), { computeMd5: true });
    expect(written).toMatchObject({ sizeBytes: 0, hashes: [], storedBlocks: 0, md5Hex: createHash("md5").digest("hex") });
  });

  it("fileHashmap round-trips zero blocks and a short last block", async () => {
    const data = Buffer.concat([random(blockSizeBytes), Buffer.alloc(blockSizeBytes), random(blockSizeBytes - 5), Buffer.alloc(5), random(123)]);
    const written = await engine.writeFile("f", chunked(data, [1000]));
    const expectedHashes = blocksOf(data).map((block) => blockHash("sha256", block));
    expect(expectedHashes[1]!.equals(zero)).toBe(true);
    const hashmap = await engine.fileHashmap("f");
    expect(hashmap.sizeBytes).toBe(data.length);
    expect(hashmap.hashes.map((hash) => hash.toString("hex"))).toEqual(expectedHashes.map((hash) => hash.toString("hex")));
    expect(written.hashes).toEqual(hashmap.hashes);
    expect(hashmap.contentHash).toBe(merkleRoot("sha256", expectedHashes).toString("hex"));
    const again = await engine.createFile("g", hashmap.sizeBytes, hashmap.hashes);
    expect(again.created && again.header.contentHash).toBe(hashmap.contentHash);
    expect((await (await engine.openFile("g")).read(0, data.length)).equals(data)).toBe(true);
  });

  it("fileHashmap and copyFile take hashed snapshots, and refuse volumes and unhashed snapshots", async () => {
    const data = random(3 * blockSizeBytes);
    await engine.createVolume("vol", data.length);
    const volume = await engine.openVolume("vol");
    await volume.write(0, data);
    await volume.snapshot("snap");
    await volume.close();
    await rejectsWith(engine.fileHashmap("vol"), "ENOT_FROZEN");
    await rejectsWith(engine.openFile("vol"), "ENOT_FROZEN");
    await rejectsWith(engine.fileHashmap("snap"), "EINVALID");
    await rejectsWith(engine.copyFile("snap", "copy"), "EINVALID");
    // Any frozen map reads, hashed or not.
    expect((await (await engine.openFile("snap")).read(0, data.length)).equals(data)).toBe(true);
    const hashed = await engine.hash("snap");
    const hashmap = await engine.fileHashmap("snap");
    expect(hashmap.contentHash).toBe(hashed.header.contentHash);
    expect(hashmap.hashes).toEqual(blocksOf(data).map((block) => blockHash("sha256", block)));
    const copy = await engine.copyFile("snap", "copy");
    expect(copy).toMatchObject({ kind: "file", frozen: true, contentHash: hashed.header.contentHash, parentMapId: hashed.header.mapId });
  });

  it("copyFile creates no block objects and reads the same bytes", async () => {
    const data = random(5 * blockSizeBytes + 77);
    await engine.writeFile("f", chunked(data, [4096]));
    const blocksBefore = await objectCount(store, "b.");
    const copy = await engine.copyFile("f", "f2");
    expect(await objectCount(store, "b.")).toBe(blocksBefore);
    expect(copy.contentHash).toBe((await engine.fileHashmap("f")).contentHash);
    expect((await (await engine.openFile("f2")).read(0, data.length)).equals(data)).toBe(true);
    await rejectsWith(engine.copyFile("f", "f2"), "EEXISTS");
    await rejectsWith(engine.copyFile("nope", "f3"), "ENOT_FOUND");
  });

  it("writeFile of odd chunk sizes reads back byte for byte, with the right hashes and MD5 (blocks hashed on threads)", async () => {
    // 128 KiB blocks: above inlineHashMaxBytes, so the pool's threads hash them.
    await engine.close();
    const bigBlockBytes = 128 * 1024;
    engine = await newEngine(bigBlockBytes);
    const data = random(2 * 1024 * 1024 + 4321);
    data.fill(0, bigBlockBytes, 2 * bigBlockBytes); // one zero block
    const seen: number[] = [];
    const written = await engine.writeFile("f", chunked(data, [1, 7, 1024 * 1024, 1, 7, 65_537]), {
      computeMd5: true,
      onBlock: ({ index }) => seen.push(index),
    });
    expect(written.sizeBytes).toBe(data.length);
    expect(written.md5Hex).toBe(createHash("md5").update(data).digest("hex"));
    const expectedHashes = blocksOf(data, bigBlockBytes).map((block) => blockHash("sha256", block));
    expect(written.hashes).toEqual(expectedHashes);
    expect(written.storedBlocks).toBe(expectedHashes.length - 1);
    expect(seen.sort((x, y) => x - y)).toEqual(expectedHashes.map((_, index) => index));
    expect(written.header).toMatchObject({ kind: "file", frozen: true, contentHash: merkleRoot("sha256", expectedHashes).toString("hex") });
    const reader = await engine.openFile("f");
    expect((await reader.read(0, data.length)).equals(data)).toBe(true);
    expect((await collect(reader.stream(0, data.length))).equals(data)).toBe(true);
    expect((await engine.writeFile("g", chunked(data, [4096]))).md5Hex).toBeUndefined();
  });

  it("writeFile's MD5 equals a one-shot MD5 and its block hashes blockHash's, for random data in random chunks and any size hint (property)", async () => {
    // 64 KiB blocks: not below inlineHashMaxBytes, so every block but a short last one goes to a thread.
    await engine.close();
    const bigBlockBytes = 64 * 1024;
    engine = await newEngine(bigBlockBytes);
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 5 * bigBlockBytes + 10 }),
        fc.array(fc.integer({ min: 1, max: 3 * bigBlockBytes }), { minLength: 1, maxLength: 6 }),
        // Content-Length as a hint: right, too small, too large, or none.
        fc.option(fc.integer({ min: 0, max: 2 * bigBlockBytes })),
        async (sizeBytes, chunkSizes, expectedBytes) => {
        const data = random(sizeBytes);
        if (sizeBytes > bigBlockBytes) data.fill(0, bigBlockBytes - 100, bigBlockBytes); // a block with a NUL tail
        const hint = expectedBytes === null ? {} : { expectedBytes: expectedBytes % 3 === 0 ? sizeBytes : expectedBytes };
        const written = await engine.writeFile(`p${run++}`, chunked(data, chunkSizes), { computeMd5: true, ...hint });
        expect(written.md5Hex).toBe(createHash("md5").update(data).digest("hex"));
        expect(written.hashes).toEqual(blocksOf(data, bigBlockBytes).map((block) => blockHash("sha256", block)));
        expect((await (await engine.openFile(`p${run - 1}`)).read(0, sizeBytes)).equals(data)).toBe(true);
      }),
      { numRuns: storeKind === "memory" ? 40 : 15 },
    );
  });

  it("writeFile deduplicates: the same data twice stores no new block", async () => {
    const data = random(6 * blockSizeBytes + 1);
    const first = await engine.writeFile("a", chunked(data, [5000]));
    expect(first.storedBlocks).toBe(7);
    const blocks = await objectCount(store, "b.");
    const second = await engine.writeFile("b", chunked(data, [3]));
    expect(second.storedBlocks).toBe(0);
    expect(await objectCount(store, "b.")).toBe(blocks);
    expect(second.header.contentHash).toBe(first.header.contentHash);
  });

  it("writeFile enforces maxBytes, a taken name and an abort, and names nothing", async () => {
    const data = random(3 * blockSizeBytes);
    await rejectsWith(engine.writeFile("f", chunked(data, [1000]), { maxBytes: data.length - 1 }), "EINVALID");
    expect(await engine.maps.exists("f")).toBe(false);
    await engine.writeFile("f", chunked(data, [1000]), { maxBytes: data.length });
    await rejectsWith(engine.writeFile("f", chunked(data, [1000])), "EEXISTS");

    const controller = new AbortController();
    async function* abortingSource(): AsyncGenerator<Uint8Array> {
      yield data.subarray(0, blockSizeBytes * 2);
      controller.abort(new Error("client went away"));
      yield data.subarray(blockSizeBytes * 2);
    }
    await expect(engine.writeFile("g", abortingSource(), { signal: controller.signal })).rejects.toThrow("client went away");
    expect(await engine.maps.exists("g")).toBe(false);
  });

  it("writeFile pulls no further ahead of the store than its blocks in flight", async () => {
    store.createDelayMs = 5;
    const data = random(20 * blockSizeBytes);
    let pulledBytes = 0;
    let worstAheadBlocks = 0;
    async function* source(): AsyncGenerator<Uint8Array> {
      for (const block of blocksOf(data)) {
        pulledBytes += block.length;
        worstAheadBlocks = Math.max(worstAheadBlocks, pulledBytes / blockSizeBytes - store.blocksCreated);
        yield block;
      }
    }
    await engine.writeFile("f", source());
    // In flight, plus the block being pulled.
    expect(worstAheadBlocks).toBeLessThanOrEqual(fileWriteBlocksInFlight + 1);
    expect(worstAheadBlocks).toBeGreaterThan(1); // it does overlap
  });

  it("stream() and read() of arbitrary ranges equal the slice (property)", async () => {
    let files = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 6 * blockSizeBytes + 100 }),
        fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        async (sizeBytes, ranges, withZeroBlock) => {
          const data = random(sizeBytes);
          if (withZeroBlock && sizeBytes > 2 * blockSizeBytes) data.fill(0, blockSizeBytes, 2 * blockSizeBytes);
          const name = `p${files++}`;
          await engine.writeFile(name, chunked(data, [777, 4096, 1]));
          const reader = await engine.openFile(name);
          for (const [x, y] of ranges) {
            const start = sizeBytes === 0 ? 0 : x % (sizeBytes + 1);
            const end = start + (sizeBytes === 0 ? 0 : y % (sizeBytes - start + 1));
            expect((await collect(reader.stream(start, end))).equals(data.subarray(start, end))).toBe(true);
            expect((await reader.read(start, end - start)).equals(data.subarray(start, end))).toBe(true);
          }
        },
      ),
      { numRuns: storeKind === "memory" ? 60 : 25 },
    );
  });

  it("refuses ranges past the end or negative", async () => {
    await engine.writeFile("f", chunked(random(5000), [5000]));
    const reader = await engine.openFile("f");
    await rejectsWith(reader.read(4000, 1001), "ERANGE_PAST_END");
    await rejectsWith(reader.read(-1, 10), "EINVALID");
    expect(() => reader.stream(0, 5001)).toThrow(expect.objectContaining({ code: "ERANGE_PAST_END" }));
    expect(() => reader.stream(10, 5)).toThrow(expect.objectContaining({ code: "EINVALID" }));
  });

  it("a slow consumer holds the stream to its read-ahead, and destroy() stops it", async () => {
    const blocks = 40;
    const data = random(blocks * blockSizeBytes);
    await engine.writeFile("f", chunked(data, [blockSizeBytes]));
    const reader = await engine.openFile("f");
    store.blockReads = 0;
    const stream = reader.stream(0, data.length);
    let consumed = 0;
    let worstAhead = 0;
    for await (const chunk of stream) {
      consumed++;
      expect((chunk as Buffer).length).toBe(blockSizeBytes);
      await sleep(2);
      worstAhead = Math.max(worstAhead, store.blockReads - consumed);
      if (consumed === 10) break; // destroys the stream
    }
    // Reads in flight, plus the one piece the stream itself may hold.
    expect(worstAhead).toBeLessThanOrEqual(fileReadAheadBlocks + 1);
    const readsAtDestroy = store.blockReads;
    await sleep(30);
    expect(store.blockReads).toBe(readsAtDestroy);
    expect(store.blockReads).toBeLessThan(blocks);
  });

  it("reads zero blocks without touching the store, and reports a missing block as ECORRUPT", async () => {
    const data = Buffer.concat([Buffer.alloc(2 * blockSizeBytes), random(blockSizeBytes)]);
    const written = await engine.writeFile("f", chunked(data, [blockSizeBytes]));
    const reader = await engine.openFile("f");
    store.blockReads = 0;
    expect((await reader.read(0, 2 * blockSizeBytes)).equals(Buffer.alloc(2 * blockSizeBytes))).toBe(true);
    expect(store.blockReads).toBe(0);
    await store.remove(contentObjectName(written.hashes[2]!));
    await rejectsWith(reader.read(2 * blockSizeBytes, 10), "ECORRUPT");
    const stream = reader.stream(0, data.length);
    await expect(collect(stream)).rejects.toSatisfy((error) => isEngineError(error, "ECORRUPT"));
  });

  it("a file is a frozen map like a snapshot: listed, counted, served read-only over NBD, deletable", async () => {
    const data = random(2 * blockSizeBytes);
    await engine.writeFile("f", chunked(data, [blockSizeBytes]));
    expect((await engine.list()).map((entry) => [entry.name, entry.kind])).toEqual([["f", "file"]]);
    expect((await engine.stats()).files).toBe(1);
    const exports = new ExportRegistry(engine, { names: "all" });
    expect(await exports.describe("f")).toMatchObject({ kind: "file", readOnly: true, sizeBytes: data.length });
    const lease = await exports.acquire("f");
    expect(lease.volume.readOnly).toBe(true);
    expect((await lease.volume.read(0, data.length)).equals(data)).toBe(true);
    await lease.release();
    await exports.close();
    await rejectsWith(engine.snapshot("f", "s"), "EREAD_ONLY");
    await engine.clone("f", "vol");
    expect((await engine.info("vol")).header.kind).toBe("volume");
    await engine.delete("f");
    await rejectsWith(engine.openFile("f"), "ENOT_FOUND");
  });

  it("storeBlock refuses more than a block and stores zero blocks as nothing", async () => {
    await rejectsWith(engine.storeBlock(Buffer.alloc(blockSizeBytes + 1)), "EINVALID");
    expect(await engine.storeBlock(Buffer.alloc(blockSizeBytes))).toEqual({ hash: zero, zero: true, created: false });
    const data = random(10);
    const first = await engine.storeBlock(Buffer.from(data));
    expect(first).toEqual({ hash: blockHash("sha256", data), zero: false, created: true });
    expect((await engine.storeBlock(Buffer.concat([data, Buffer.alloc(50)]))).created).toBe(false); // same block, padded
  });
});
