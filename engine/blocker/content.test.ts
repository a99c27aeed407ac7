import { createHash } from "node:crypto";
import { blake3 } from "@napi-rs/blake-hash";
import { describe, expect, it } from "vitest";
import { isEngineError } from "../errors.ts";
import { CachedObjectStore } from "./cache.ts";
import { describeObjectStoreConformance } from "./conformance.ts";
import {
  blockHash,
  contentObjectName,
  hashAlgorithms,
  isAllZero,
  merkleRoot,
  putBlock,
  readBlock,
  strippedLength,
  zeroBlockHash,
  type HashAlgorithm,
} from "./content.ts";
import { MemoryObjectStore } from "./memory.ts";

/** Independent reference hashes, not going through content.ts. */
const reference: Record<HashAlgorithm, (data: Buffer) => Buffer> = {
  sha256: (data) => createHash("sha256").update(data).digest(),
  blake3: (data) => blake3(data),
};

const emptyHashHex: Record<HashAlgorithm, string> = {
  sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  blake3: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
};

const mebibyte = 1024 * 1024;

describe.each(hashAlgorithms)("blockHash (%s)", (algorithm) => {
  const h = reference[algorithm];

  it("of the empty and of any all-zero block is H(\"\")", () => {
    expect(blockHash(algorithm, Buffer.alloc(0)).toString("hex")).toBe(emptyHashHex[algorithm]);
    expect(blockHash(algorithm, Buffer.alloc(4 * mebibyte)).toString("hex")).toBe(emptyHashHex[algorithm]);
    expect(zeroBlockHash(algorithm).toString("hex")).toBe(emptyHashHex[algorithm]);
    // content.ts holds these as constants (so as not to load BLAKE3 at start-up): the reference agrees.
    expect(zeroBlockHash(algorithm)).toEqual(h(Buffer.alloc(0)));
  });

  it("ignores trailing NUL bytes only", () => {
    const abc = blockHash(algorithm, Buffer.from("abc"));
    expect(abc).toEqual(h(Buffer.from("abc")));
    expect(blockHash(algorithm, Buffer.from("abc\0\0\0"))).toEqual(abc);
    expect(blockHash(algorithm, Buffer.from("\0abc"))).not.toEqual(abc);
    expect(blockHash(algorithm, Buffer.from("a\0bc\0"))).toEqual(h(Buffer.from("a\0bc")));
  });
});

describe("strippedLength and isAllZero", () => {
  const sizes = [0, 1, 7, 31, 32, 33, 1023, 1024, 1025, 65_535, 65_536, 65_537, 4 * mebibyte];

  it.each(sizes)("agree with a byte loop for a %i-byte block", (sizeBytes) => {
    const block = Buffer.alloc(sizeBytes);
    expect(strippedLength(block)).toBe(0);
    expect(isAllZero(block)).toBe(true);
    // A non-zero byte at every interesting position: the edges of each scan window.
    for (const position of new Set([0, 1, 31, 32, 1023, 1024, 65_535, 65_536, sizeBytes - 1].filter((p) => p >= 0 && p < sizeBytes))) {
      block[position] = 0x5a;
      expect(strippedLength(block)).toBe(position + 1);
      expect(isAllZero(block)).toBe(false);
      block[position] = 0;
    }
  });

  it("works on a view into a larger buffer", () => {
    const backing = Buffer.alloc(300, 1);
    backing.fill(0, 100, 200);
    expect(strippedLength(backing.subarray(50, 200))).toBe(50);
    expect(isAllZero(backing.subarray(100, 200))).toBe(true);
  });
});

describe.each(hashAlgorithms)("merkleRoot (%s)", (algorithm) => {
  const h = reference[algorithm];
  const leaves = ["one", "two", "three"].map((text) => h(Buffer.from(text)));
  const [h0, h1, h2] = leaves as [Buffer, Buffer, Buffer];
  const zero = Buffer.alloc(32);

  it("of no blocks is H(\"\")", () => {
    expect(merkleRoot(algorithm, []).toString("hex")).toBe(emptyHashHex[algorithm]);
  });

  it("of one block is that block's hash", () => {
    expect(merkleRoot(algorithm, [h0])).toEqual(h0);
  });

  it("of two blocks is H(h0‖h1)", () => {
    expect(merkleRoot(algorithm, [h0, h1])).toEqual(h(Buffer.concat([h0, h1])));
  });

  it("of three blocks pads with a zero hash to four", () => {
    const expected = h(Buffer.concat([h(Buffer.concat([h0, h1])), h(Buffer.concat([h2, zero]))]));
    expect(merkleRoot(algorithm, [h0, h1, h2])).toEqual(expected);
  });
});

describe("content objects", () => {
  const algorithm: HashAlgorithm = "blake3";

  it("are named b.<lowercase hex>", () => {
    expect(contentObjectName(Buffer.alloc(32, 0xab))).toBe(`b.${"ab".repeat(32)}`);
  });

  it("putBlock stores a block once, stripped", async () => {
    const store = new MemoryObjectStore();
    const block = Buffer.alloc(4096);
    block.write("payload");
    const first = await putBlock(store, algorithm, block);
    expect(first).toMatchObject({ zero: false, created: true });
    expect(first.hash).toEqual(blockHash(algorithm, block));
    const second = await putBlock(store, algorithm, Buffer.from("payload"));
    expect(second).toMatchObject({ zero: false, created: false });
    expect(second.hash).toEqual(first.hash);
    expect(store.objectCount).toBe(1);
    expect((await store.stat(contentObjectName(first.hash)))?.sizeBytes).toBe(7);
    expect(await readBlock(store, algorithm, first.hash, 4096)).toEqual(block);
  });

  it("never stores a zero block", async () => {
    const store = new MemoryObjectStore();
    const result = await putBlock(store, algorithm, Buffer.alloc(4096));
    expect(result).toMatchObject({ zero: true, created: false });
    expect(result.hash.toString("hex")).toBe(emptyHashHex[algorithm]);
    expect(store.objectCount).toBe(0);
    expect(await readBlock(store, algorithm, result.hash, 16)).toEqual(Buffer.alloc(16));
  });

  it("a missing block is ECORRUPT", async () => {
    const error: unknown = await readBlock(new MemoryObjectStore(), algorithm, Buffer.alloc(32, 1), 16).catch((caught: unknown) => caught);
    expect(isEngineError(error, "ECORRUPT")).toBe(true);
  });
});

describeObjectStoreConformance("cache over memory", async () => ({
  store: new CachedObjectStore(new MemoryObjectStore()),
  cleanup: async () => {},
}));

/** A memory store that counts the reads that reach it. */
class CountingStore extends MemoryObjectStore {
  reads = 0;

  // Every read, whole or into a buffer, comes through readInto.
  override async readInto(name: string, offsetBytes: number, target: Buffer): Promise<void> {
    this.reads++;
    return super.readInto(name, offsetBytes, target);
  }
}

describe("CachedObjectStore", () => {
  const algorithm: HashAlgorithm = "sha256";

  it("serves a cached block without touching next", async () => {
    const next = new CountingStore();
    const cache = new CachedObjectStore(next);
    const { hash } = await putBlock(cache, algorithm, Buffer.from("cached block"));
    const name = contentObjectName(hash);
    expect(await cache.read(name, 7, 8)).toEqual(Buffer.from("block\0\0\0"));
    expect(next.reads).toBe(0);
    expect(cache.stats).toMatchObject({ hits: 1, misses: 0, cachedObjects: 1, cachedBytes: 12 });
  });

  it("fetches a missed block whole, once, then serves it from memory", async () => {
    const next = new CountingStore();
    const { hash } = await putBlock(next, algorithm, Buffer.from("stored behind the cache"));
    const name = contentObjectName(hash);
    const cache = new CachedObjectStore(next);
    const reads = await Promise.all([cache.read(name, 0, 6), cache.read(name, 7, 6), cache.read(name, 0, 6)]);
    expect(reads.map((data) => data.toString())).toEqual(["stored", "behind", "stored"]);
    expect(next.reads).toBe(1);
    expect(await cache.read(name, 18, 5)).toEqual(Buffer.from("cache"));
    expect(next.reads).toBe(1);
    expect(cache.stats.hits).toBe(1);
  });

  it("passes other names straight through", async () => {
    const next = new CountingStore();
    const cache = new CachedObjectStore(next);
    await cache.write("p.a", 0, Buffer.from("x"));
    await cache.read("p.a", 0, 1);
    await cache.read("p.a", 0, 1);
    expect(next.reads).toBe(2);
    expect(cache.stats).toMatchObject({ hits: 0, misses: 0, cachedObjects: 0 });
  });

  it("evicts on remove and stays within its byte budget", async () => {
    const next = new CountingStore();
    const cache = new CachedObjectStore(next, { maxBytes: 100 });
    for (let index = 0; index < 10; index++) await cache.createExclusive(`b.${index}`, Buffer.alloc(30, index + 1));
    expect(cache.stats.cachedBytes).toBeLessThanOrEqual(100);
    await cache.remove("b.9");
    expect(cache.stats.cachedObjects).toBe(2);
    const error: unknown = await cache.read("b.9", 0, 1).catch((caught: unknown) => caught);
    expect(isEngineError(error, "ENOT_FOUND")).toBe(true);
  });
});
