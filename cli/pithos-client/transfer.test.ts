/**
 * Upload, download and sync against the in-memory fake server (testing/fake-pithos.ts):
 * the delta, dedup, resume and integrity rules, counted exactly. The same commands against
 * the real gateway are in cli/commands/file.test.ts.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { blockHash } from "../../engine/blocker/content.ts";
import { HashPool } from "../../engine/blocker/hash-pool.ts";
import { exitCodeOf, exitCodes } from "../output.ts";
import { openSession } from "./auth.ts";
import { hashmapRequestBody, PithosClient } from "./client.ts";
import { downloadObject, partSuffix } from "./download.ts";
import { isRemoteError } from "./errors.ts";
import { syncDown, syncUp } from "./sync.ts";
import { randomBlockData } from "./testing/block-data.ts";
import { startFakePithos, type FakePithos } from "./testing/fake-pithos.ts";
import { uploadFile } from "./upload.ts";

const blockSizeBytes = 64 * 1024;

/** `blocks` distinct random blocks and a short tail. */
function content(blocks: number, tailBytes = 1234): Buffer {
  return randomBlockData(blocks * blockSizeBytes + tailBytes, blockSizeBytes);
}

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

describe("upload, download and sync (fake server)", () => {
  let dir: string;
  let fake: FakePithos;
  let client: PithosClient;
  const pool = new HashPool({ size: 2 });
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-transfer-"));
  });
  afterAll(async () => {
    await pool.close();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    fake = await startFakePithos({ blockSizeBytes, hashAlgorithm: "sha256" });
    client = new PithosClient(await openSession({ url: fake.url, user: "u", password: "p" }));
  });
  afterEach(async () => {
    await fake.close();
  });

  async function localFile(name: string, data: Buffer): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, data);
    return path;
  }

  describe("upload", () => {
    it("creates the container, sends every block once, then only what changed, then nothing but the hashmap", async () => {
      const data = content(8);
      const path = await localFile("a.bin", data);
      const first = await uploadFile(client, path, "c", "a.bin", { pool });
      expect(first).toMatchObject({ bytes: data.length, blocks: 9, blocksSent: 9, bytesSent: data.length, hashmapRequests: 2 });
      expect(fake.objectData("c", "a.bin").equals(data)).toBe(true);

      data[3 * blockSizeBytes + 10] = (data[3 * blockSizeBytes + 10] as number) ^ 1;
      await writeFile(path, data);
      const before = fake.counters.blockBytes;
      const second = await uploadFile(client, path, "c", "a.bin", { pool });
      expect(second).toMatchObject({ blocksSent: 1, bytesSent: blockSizeBytes, hashmapRequests: 2 });
      expect(fake.counters.blockBytes - before).toBe(blockSizeBytes);
      expect(fake.objectData("c", "a.bin").equals(data)).toBe(true);

      const third = await uploadFile(client, path, "c", "a.bin", { pool });
      expect(third).toMatchObject({ blocksSent: 0, bytesSent: 0, hashmapRequests: 1 });
      const hashes = Array.from({ length: 9 }, (_, index) => blockHash("sha256", data.subarray(index * blockSizeBytes, (index + 1) * blockSizeBytes)).toString("hex"));
      expect(third.hashmapBytes).toBe(Buffer.byteLength(hashmapRequestBody({ bytes: data.length, hashes })));
    });

    it("sends a block that repeats in the file once, and no all-zero block, and strips trailing NULs", async () => {
      const block = randomBlockData(blockSizeBytes, blockSizeBytes);
      const tail = Buffer.concat([randomBlockData(100, blockSizeBytes), Buffer.alloc(900)]);
      const data = Buffer.concat([block, Buffer.alloc(blockSizeBytes), block, block, tail]);
      const path = await localFile("dup.bin", data);
      const result = await uploadFile(client, path, "c", "dup.bin", { pool });
      expect(result).toMatchObject({ blocks: 5, blocksSent: 2, bytesSent: blockSizeBytes + 100 });
      expect(fake.objectData("c", "dup.bin").equals(data)).toBe(true);
    });

    it("uploads an empty file as [H(\"\")]", async () => {
      const path = await localFile("empty", Buffer.alloc(0));
      const result = await uploadFile(client, path, "c", "empty", { pool });
      expect(result).toMatchObject({ bytes: 0, blocks: 0, blocksSent: 0, hashmapRequests: 1 });
      expect(fake.containers.get("c")?.get("empty")?.hashes).toEqual([createHash("sha256").digest("hex")]);
    });

    it("resumes an interrupted upload: the second run sends only the blocks the first did not", async () => {
      const data = content(10);
      const path = await localFile("resume.bin", data);
      fake.faults.failBlockPostsAfter = 4;
      const failed = await uploadFile(client, path, "c", "resume.bin", { pool, parallel: 1 }).catch((error: unknown) => error);
      expect(isRemoteError(failed, "ESERVER")).toBe(true);
      expect(exitCodeOf(failed)).toBe(exitCodes.remote.ESERVER);
      expect(fake.containers.get("c")?.has("resume.bin")).toBe(false);
      expect(fake.blocks.size).toBe(4);

      fake.faults.failBlockPostsAfter = undefined;
      const resumed = await uploadFile(client, path, "c", "resume.bin", { pool });
      expect(resumed.blocksSent).toBe(11 - 4);
      expect(fake.objectData("c", "resume.bin").equals(data)).toBe(true);
    });

    it("gives up with EINTEGRITY when the server keeps asking for blocks it was sent", async () => {
      const path = await localFile("lost.bin", content(1));
      // The fake forgets every block as soon as it is stored.
      const original = fake.blocks.set.bind(fake.blocks);
      fake.blocks.set = (key, value) => (original(key, value), fake.blocks.delete(key), fake.blocks);
      const error = await uploadFile(client, path, "c", "lost.bin", { pool }).catch((caught: unknown) => caught);
      expect(isRemoteError(error, "EINTEGRITY")).toBe(true);
      expect(fake.counters.hashmapPuts).toBe(4);
    });
  });

  describe("download", () => {
    async function uploaded(name: string, data: Buffer): Promise<void> {
      await uploadFile(client, await localFile(`${name}.src`, data), "c", name, { pool });
    }

    it("writes a new file through LOCAL.part, fetching each distinct block once and no zero block", async () => {
      const block = randomBytes(blockSizeBytes);
      const data = Buffer.concat([block, Buffer.alloc(blockSizeBytes), block, randomBytes(blockSizeBytes), Buffer.from("tail")]);
      await uploaded("d.bin", data);
      const target = join(dir, "d.out");
      const result = await downloadObject(client, "c", "d.bin", target, { pool });
      expect(result).toMatchObject({ workingFile: "new", blocks: 5, blocksFetched: 3, blocksKept: 1, zeroBlocksWritten: 0 });
      expect(fake.counters.rangeGets).toBe(3);
      expect((await readFile(target)).equals(data)).toBe(true);
      await expect(stat(`${target}${partSuffix}`)).rejects.toThrow();
    });

    it("updates an existing file in place, fetching only the blocks that differ, and truncates it", async () => {
      const data = content(6);
      await uploaded("e.bin", data);
      const local = Buffer.concat([data, randomBytes(3 * blockSizeBytes)]); // longer than the object
      local.fill(7, 2 * blockSizeBytes, 2 * blockSizeBytes + 10); // block 2 differs
      const target = await localFile("e.out", local);
      const result = await downloadObject(client, "c", "e.bin", target, { pool });
      expect(result).toMatchObject({ workingFile: "existing", blocksFetched: 1, blocksKept: 6 });
      expect((await readFile(target)).equals(data)).toBe(true);
    });

    it("writes zeros for a zero block the local file has non-zero, without a request", async () => {
      const data = Buffer.concat([randomBytes(blockSizeBytes), Buffer.alloc(blockSizeBytes)]);
      await uploaded("z.bin", data);
      const target = await localFile("z.out", Buffer.concat([data.subarray(0, blockSizeBytes), randomBytes(blockSizeBytes)]));
      const result = await downloadObject(client, "c", "z.bin", target, { pool });
      expect(result).toMatchObject({ blocksFetched: 0, zeroBlocksWritten: 1, blocksKept: 1 });
      expect(fake.counters.rangeGets).toBe(0);
      expect((await readFile(target)).equals(data)).toBe(true);
    });

    it("resumes from LOCAL.part: the blocks already there are not fetched again", async () => {
      const data = content(8);
      await uploaded("r.bin", data);
      const target = join(dir, "r.out");
      await writeFile(`${target}${partSuffix}`, data.subarray(0, 5 * blockSizeBytes + 300)); // 5 whole blocks and a torn one
      const result = await downloadObject(client, "c", "r.bin", target, { pool });
      expect(result).toMatchObject({ workingFile: "part", blocksFetched: 4, blocksKept: 5 });
      expect(sha256(await readFile(target))).toBe(sha256(data));
    });

    it("refuses a block whose hash is wrong, and leaves nothing under the name", async () => {
      await uploaded("bad.bin", content(2));
      fake.faults.corruptRanges = true;
      const target = join(dir, "bad.out");
      const error = await downloadObject(client, "c", "bad.bin", target, { pool }).catch((caught: unknown) => caught);
      expect(isRemoteError(error, "EINTEGRITY")).toBe(true);
      expect(exitCodeOf(error)).toBe(exitCodes.remote.EINTEGRITY);
      await expect(stat(target)).rejects.toThrow();
    });

    it("downloads an empty object", async () => {
      await uploaded("empty", Buffer.alloc(0));
      const target = join(dir, "empty.out");
      await downloadObject(client, "c", "empty", target, { pool });
      expect((await stat(target)).size).toBe(0);
    });

    it("says which object is missing (REMOTE_ENOT_FOUND)", async () => {
      await client.ensureContainer("c");
      const error = await downloadObject(client, "c", "nope", join(dir, "nope"), { pool }).catch((caught: unknown) => caught);
      expect(isRemoteError(error, "ENOT_FOUND")).toBe(true);
      expect((error as Error).message).toBe("hashmap of c/nope: The resource could not be found (HTTP 404)");
    });
  });

  describe("sync", () => {
    it("uploads new and changed files, skips unchanged ones without a request, deletes with --delete", async () => {
      const source = join(dir, "sync-up");
      await mkdir(join(source, "sub"), { recursive: true });
      const a = content(3);
      await writeFile(join(source, "a.bin"), a);
      await writeFile(join(source, "sub", "b.txt"), "hello");
      const first = await syncUp(client, source, "s", "pre", { pool });
      expect(first.changed.map((entry) => entry.name)).toEqual(["pre/a.bin", "pre/sub/b.txt"]);

      a[5] = (a[5] as number) ^ 1;
      await writeFile(join(source, "a.bin"), a);
      await rm(join(source, "sub", "b.txt"));
      const puts = fake.counters.hashmapPuts;
      const second = await syncUp(client, source, "s", "pre/", { pool, delete: true });
      expect(second).toMatchObject({ compared: 1, unchanged: 0, deleted: ["pre/sub/b.txt"], blockBytes: blockSizeBytes });
      expect(fake.counters.hashmapPuts - puts).toBe(2);

      const third = await syncUp(client, source, "s", "pre", { pool, delete: true });
      expect(third).toMatchObject({ compared: 1, unchanged: 1, changed: [], deleted: [] });
      expect(fake.counters.hashmapPuts - puts).toBe(2);
    });

    it("downloads what differs, deletes local extras with --delete, and never writes outside LOCALDIR", async () => {
      const source = join(dir, "sync-src");
      await mkdir(source, { recursive: true });
      await writeFile(join(source, "x.bin"), content(2));
      await writeFile(join(source, "y.txt"), "why");
      await syncUp(client, source, "down", "", { pool });
      // Objects whose names would escape the folder, or are no path (a client cannot even address them).
      const evil = { bytes: 0, hashes: [], contentType: "text/plain", version: 99, sharing: "", publicUrl: null };
      fake.containers.get("down")?.set("../evil", evil);
      fake.containers.get("down")?.set("a//b", evil);

      const target = join(dir, "sync-down");
      await mkdir(target, { recursive: true });
      await writeFile(join(target, "extra"), "x");
      const result = await syncDown(client, "down", "", target, { pool, delete: true });
      expect(result.changed.map((entry) => entry.name).sort()).toEqual(["x.bin", "y.txt"]);
      expect(result.skipped).toEqual([
        { name: "../evil", reason: "the name has an empty, . or .. segment" },
        { name: "a//b", reason: "the name has an empty, . or .. segment" },
      ]);
      expect(result.deleted).toEqual([join(target, "extra")]);
      expect(await readFile(join(target, "y.txt"), "utf8")).toBe("why");
      await expect(stat(join(dir, "evil"))).rejects.toThrow();

      const again = await syncDown(client, "down", "", target, { pool });
      expect(again).toMatchObject({ compared: 2, unchanged: 2, changed: [] });
    });
  });

  it("refuses names with . or .. segments rather than let the URL parser resolve them", async () => {
    for (const [container, object] of [["c", "../x"], ["c", "a/./b"], ["..", "x"]] as const) {
      const error = await client.deleteObject(container, object).catch((caught: unknown) => caught);
      expect(isRemoteError(error, "EREFUSED")).toBe(true);
    }
    expect(fake.counters.logins).toBe(1);
  });

  it("logs in again once when the token is refused mid-way", async () => {
    await client.ensureContainer("c");
    fake.token = "rotated";
    expect(await client.containerInfo("c")).toBeDefined();
    expect(fake.counters.logins).toBe(2);
    fake.faults.rejectToken = true;
    const error = await client.containerInfo("c").catch((caught: unknown) => caught);
    expect(isRemoteError(error, "EAUTH")).toBe(true);
  });
});
