import { randomBytes } from "node:crypto";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blockHash, hashAlgorithms, merkleRoot, zeroBlockHash, type HashAlgorithm } from "../../engine/blocker/content.ts";
import { HashPool } from "../../engine/blocker/hash-pool.ts";
import { LocalFileError } from "../output.ts";
import { blockCount, blockLength, hashFileBlocks, hashLocalFile, objectHashOf } from "./local-hashmap.ts";

const blockSizeBytes = 64 * 1024;

describe("the local hashmap", () => {
  let dir: string;
  // inlineHashMaxBytes 0: every block goes through a thread, as 4 MiB blocks do.
  const pool = new HashPool({ size: 2, inlineHashMaxBytes: 0 });
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-hashmap-"));
  });
  afterAll(async () => {
    await pool.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function hashmapOf(data: Buffer, hashAlgorithm: HashAlgorithm): Promise<{ bytes: number; hashes: string[] }> {
    const path = join(dir, `f-${randomBytes(4).toString("hex")}`);
    await writeFile(path, data);
    const file = await open(path, "r");
    try {
      return await hashLocalFile(file, path, { blockSizeBytes, hashAlgorithm }, { pool });
    } finally {
      await file.close();
    }
  }

  for (const hashAlgorithm of hashAlgorithms) {
    it(`hashes every block as the engine's blockHash does (${hashAlgorithm})`, async () => {
      // 5 blocks and a bit: a short last block, a block ending in NULs, an all-zero block.
      const data = randomBytes(5 * blockSizeBytes + 1000);
      data.fill(0, 2 * blockSizeBytes - 100, 2 * blockSizeBytes);
      data.fill(0, 3 * blockSizeBytes, 4 * blockSizeBytes);
      const hashmap = await hashmapOf(data, hashAlgorithm);
      expect(hashmap.bytes).toBe(data.length);
      const expected = Array.from({ length: 6 }, (_, index) =>
        blockHash(hashAlgorithm, data.subarray(index * blockSizeBytes, Math.min(data.length, (index + 1) * blockSizeBytes))).toString("hex"),
      );
      expect(hashmap.hashes).toEqual(expected);
      expect(hashmap.hashes[3]).toBe(zeroBlockHash(hashAlgorithm).toString("hex"));
      expect(objectHashOf({ hashAlgorithm }, hashmap)).toBe(merkleRoot(hashAlgorithm, expected.map((hash) => Buffer.from(hash, "hex"))).toString("hex"));
    });
  }

  it("follows the trailing-NUL rule: a block and the same block with NULs after it hash alike", async () => {
    const content = randomBytes(1000);
    const short = await hashmapOf(content, "sha256");
    const padded = await hashmapOf(Buffer.concat([content, Buffer.alloc(blockSizeBytes - 1000)]), "sha256");
    expect(padded.hashes).toEqual(short.hashes);
    expect(short.hashes[0]).toBe(blockHash("sha256", content).toString("hex"));
    // …but NULs in front count.
    const shifted = await hashmapOf(Buffer.concat([Buffer.alloc(1), content]), "sha256");
    expect(shifted.hashes[0]).not.toBe(short.hashes[0]);
  });

  it("lists an empty file as [H(\"\")], whose object hash is H(\"\")", async () => {
    for (const hashAlgorithm of hashAlgorithms) {
      const hashmap = await hashmapOf(Buffer.alloc(0), hashAlgorithm);
      const empty = zeroBlockHash(hashAlgorithm).toString("hex");
      expect(hashmap).toEqual({ bytes: 0, hashes: [empty] });
      expect(objectHashOf({ hashAlgorithm }, hashmap)).toBe(empty);
    }
  });

  it("gives an exact multiple of the block size no extra block", async () => {
    const hashmap = await hashmapOf(randomBytes(3 * blockSizeBytes), "blake3");
    expect(hashmap.hashes).toHaveLength(3);
    expect(blockCount(3 * blockSizeBytes, blockSizeBytes)).toBe(3);
    expect(blockLength(2, 3 * blockSizeBytes, blockSizeBytes)).toBe(blockSizeBytes);
    expect(blockLength(3, 3 * blockSizeBytes + 5, blockSizeBytes)).toBe(5);
  });

  it("reports progress in file order, up to the size", async () => {
    const path = join(dir, "progress");
    await writeFile(path, randomBytes(10 * blockSizeBytes + 7));
    const file = await open(path, "r");
    const seen: number[] = [];
    try {
      await hashFileBlocks(file, path, 10 * blockSizeBytes + 7, { blockSizeBytes, hashAlgorithm: "sha256" }, { pool, onProgress: (done) => seen.push(done) });
    } finally {
      await file.close();
    }
    expect(seen).toHaveLength(11);
    expect(seen.at(-1)).toBe(10 * blockSizeBytes + 7);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
  });

  it("refuses a file that is shorter than it was said to be (it shrank)", async () => {
    const path = join(dir, "short");
    await writeFile(path, randomBytes(100));
    const file = await open(path, "r");
    try {
      await expect(hashFileBlocks(file, path, 2 * blockSizeBytes, { blockSizeBytes, hashAlgorithm: "sha256" }, { pool })).rejects.toThrow(LocalFileError);
    } finally {
      await file.close();
    }
  });

  it("refuses a directory", async () => {
    const file = await open(dir, "r");
    try {
      await expect(hashLocalFile(file, dir, { blockSizeBytes, hashAlgorithm: "sha256" }, { pool })).rejects.toThrow(/not a regular file/);
    } finally {
      await file.close();
    }
  });
});
