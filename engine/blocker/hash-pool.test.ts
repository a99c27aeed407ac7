import { spawnSync } from "node:child_process";
import { createHash, randomFillSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { isEngineError } from "../errors.ts";
import { blockHash, hashAlgorithms, strippedLength } from "./content.ts";
import { HashPool, hashPoolDefaultSize, hashPoolSizeMax, inlineHashMaxBytes } from "./hash-pool.ts";

/** Random data, then `zeroTailBytes` NULs (the Pithos rule strips them); all zeros when `allZero`. */
const blocks = fc
  .record({
    dataBytes: fc.integer({ min: 0, max: 3 * 64 * 1024 }),
    zeroTailBytes: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 70 * 1024 })),
    allZero: fc.boolean(),
    seed: fc.integer(),
  })
  .map(({ dataBytes, zeroTailBytes, allZero, seed }) => {
    const block = Buffer.alloc(dataBytes + zeroTailBytes);
    if (!allZero) {
      randomFillSync(block, 0, dataBytes);
      // The last data byte non-zero, so the tail really is the NUL run's whole length.
      if (dataBytes > 0) block[dataBytes - 1] = (seed & 0xff) | 1;
    }
    return block;
  });

describe("HashPool", () => {
  const pools: HashPool[] = [];
  const pool = (options: ConstructorParameters<typeof HashPool>[0] = {}): HashPool => {
    const created = new HashPool(options);
    pools.push(created);
    return created;
  };
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((created) => created.close()));
  });

  it("sizes itself from the cores available, 1 to 4", () => {
    expect(hashPoolDefaultSize()).toBeGreaterThanOrEqual(1);
    expect(hashPoolDefaultSize()).toBeLessThanOrEqual(hashPoolSizeMax);
    expect(() => new HashPool({ size: 0 })).toThrow();
    expect(() => new HashPool({ size: hashPoolSizeMax + 1 })).toThrow();
  });

  for (const algorithm of hashAlgorithms) {
    it(`hashes like blockHash on threads and inline (${algorithm}), incl. all-zero and trailing-zero blocks`, async () => {
      const threaded = pool({ size: 2, inlineHashMaxBytes: 0 });
      const mixed = pool({ size: 2 });
      await fc.assert(
        fc.asyncProperty(blocks, async (block) => {
          const expected = blockHash(algorithm, block);
          const original = Buffer.from(block);
          for (const candidate of [threaded, mixed]) {
            const hashed = await candidate.hashBlock(algorithm, Buffer.from(original));
            expect(hashed.hash.equals(expected)).toBe(true);
            expect(hashed.strippedBytes).toBe(strippedLength(original));
            expect(hashed.data.equals(original)).toBe(true);
          }
        }),
        { numRuns: 60 },
      );
      expect(threaded.threadCount).toBeGreaterThan(0);
    });
  }

  it("starts threads lazily, never more than its size, and answers many concurrent requests", async () => {
    const hashing = pool({ size: 2 });
    expect(hashing.threadCount).toBe(0);
    await hashing.hashBlock("sha256", Buffer.alloc(100)); // small: inline, no thread
    expect(hashing.threadCount).toBe(0);
    const inputs = Array.from({ length: 24 }, (_, index) => randomFillSync(Buffer.alloc(inlineHashMaxBytes + index * 1000)));
    const expected = inputs.map((block) => blockHash("blake3", block));
    const hashed = await Promise.all(inputs.map((block) => hashing.hashBlock("blake3", block)));
    expect(hashed.map((result) => result.hash.toString("hex"))).toEqual(expected.map((hash) => hash.toString("hex")));
    expect(hashing.threadCount).toBe(2);
  });

  it("moves a whole ArrayBuffer to the thread and back, and copies a view of part of one", async () => {
    const hashing = pool({ size: 1, inlineHashMaxBytes: 0 });
    const whole = randomFillSync(Buffer.allocUnsafeSlow(8192));
    const copy = Buffer.from(whole);
    const moved = await hashing.hashBlock("sha256", whole);
    expect(whole.length).toBe(0); // detached: the memory went to the thread
    expect(moved.data.equals(copy)).toBe(true);

    const larger = randomFillSync(Buffer.alloc(8192));
    const part = larger.subarray(100, 5000);
    const lent = await hashing.hashBlock("sha256", part);
    expect(part.length).toBe(4900); // untouched: a copy went instead
    expect(lent.data.equals(part)).toBe(true);
    expect(lent.hash.equals(blockHash("sha256", part))).toBe(true);
  });

  it("fails queued and later requests with ECLOSED once closed", async () => {
    const hashing = pool({ size: 1, inlineHashMaxBytes: 0 });
    const pending = Array.from({ length: 8 }, () => hashing.hashBlock("sha256", Buffer.alloc(4 * 1024 * 1024, 1)).then(
      () => "hashed",
      (error: unknown) => (isEngineError(error, "ECLOSED") ? "closed" : `other: ${String(error)}`),
    ));
    await hashing.close();
    const outcomes = await Promise.all(pending);
    expect(outcomes.every((outcome) => outcome === "hashed" || outcome === "closed")).toBe(true);
    expect(outcomes).toContain("closed");
    await expect(hashing.hashBlock("sha256", Buffer.alloc(10))).rejects.toSatisfy((error) => isEngineError(error, "ECLOSED"));
    await hashing.close(); // idempotent
  });

  it("an MD5 session hashes blocks as hashBlock does and its MD5 equals a one-shot MD5 (property), many sessions at once", async () => {
    const threaded = pool({ size: 2, inlineHashMaxBytes: 1024 });
    const sessionBlocks = fc.array(fc.integer({ min: 0, max: 96 * 1024 }), { minLength: 0, maxLength: 8 }).map((sizes) =>
      sizes.map((size) => randomFillSync(Buffer.allocUnsafeSlow(size))),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(sessionBlocks, { minLength: 1, maxLength: 4 }), fc.constantFrom(...hashAlgorithms), async (streams, algorithm) => {
        // Sessions interleaved with each other and with session-less requests, all in flight at once.
        const runs = streams.map(async (blocksOfStream) => {
          const session = threaded.md5Session();
          const copies = blocksOfStream.map((block) => Buffer.from(block));
          const hashed = await Promise.all(blocksOfStream.map((block) => session.hashBlock(algorithm, block)));
          hashed.forEach((result, index) => {
            expect(result.hash.equals(blockHash(algorithm, copies[index] as Buffer))).toBe(true);
            expect(result.data.equals(copies[index] as Buffer)).toBe(true);
          });
          expect(await session.md5Hex()).toBe(createHash("md5").update(Buffer.concat(copies)).digest("hex"));
        });
        const loose = threaded.hashBlock(algorithm, randomFillSync(Buffer.alloc(70 * 1024)));
        await Promise.all([...runs, loose]);
      }),
      { numRuns: 40 },
    );
    expect(threaded.threadCount).toBe(2);
  });

  it("an MD5 session whose first block is small stays inline; one that reached a thread fails if it dies", async () => {
    const hashing = pool({ size: 1, inlineHashMaxBytes: 4096 });
    const small = hashing.md5Session();
    await small.hashBlock("sha256", Buffer.from("abc"));
    await small.hashBlock("sha256", Buffer.alloc(8192, 1));
    expect(hashing.threadCount).toBe(0);
    expect(await small.md5Hex()).toBe(createHash("md5").update("abc").update(Buffer.alloc(8192, 1)).digest("hex"));
    expect(await hashing.md5Session().md5Hex()).toBe(createHash("md5").digest("hex")); // no blocks: MD5 of nothing

    const large = hashing.md5Session();
    await large.hashBlock("sha256", Buffer.alloc(8192, 2));
    expect(hashing.threadCount).toBe(1);
    await hashing.close();
    await expect(large.md5Hex()).rejects.toSatisfy((error) => isEngineError(error, "ECLOSED"));
  });

  it("never keeps the process alive: a script that does not close its pool exits", () => {
    const poolUrl = new URL("./hash-pool.ts", import.meta.url).href;
    const script = `
      import { HashPool } from ${JSON.stringify(poolUrl)};
      const pool = new HashPool({ inlineHashMaxBytes: 0 });
      const hashed = await pool.hashBlock("sha256", Buffer.alloc(1 << 20, 7));
      process.stdout.write(hashed.hash.toString("hex"));
    `;
    const dir = mkdtempSync(join(tmpdir(), "okeanos-hash-pool-"));
    const scriptPath = join(dir, "no-close.mjs");
    writeFileSync(scriptPath, script);
    let child;
    try {
      child = spawnSync(process.execPath, [scriptPath], { timeout: 20_000, encoding: "utf8" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(child.error).toBeUndefined();
    expect(child.stderr).toBe("");
    expect(child.status).toBe(0);
    expect(child.stdout).toBe(blockHash("sha256", Buffer.alloc(1 << 20, 7)).toString("hex"));
  });
});
