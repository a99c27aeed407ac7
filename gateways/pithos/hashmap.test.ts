/**
 * The Pithos+ hashmap protocol over HTTP (synnefo.md B.3, B.4) on a sha256 store with 4 KiB
 * blocks, so every hash here is computed independently with node:crypto, as kamaki would:
 * GET ?hashmap, PUT ?hashmap (409 with the missing hashes, creating nothing), block upload with
 * POST container?update, then the PUT again.
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { blockObjects, patternBytes, useHarness, type TestUser } from "./testing/http.ts";

const blockSizeBytes = 4096;

function sha256(data: Buffer): Buffer {
  return createHash("sha256").update(data).digest();
}

/** B.4: sha256 of the block without its trailing NULs. */
function blockHashHex(block: Buffer): string {
  let end = block.length;
  while (end > 0 && block[end - 1] === 0) end--;
  return sha256(block.subarray(0, end)).toString("hex");
}

function hashmapOf(data: Buffer): string[] {
  if (data.length === 0) return [sha256(Buffer.alloc(0)).toString("hex")];
  const hashes: string[] = [];
  for (let offset = 0; offset < data.length; offset += blockSizeBytes) hashes.push(blockHashHex(data.subarray(offset, offset + blockSizeBytes)));
  return hashes;
}

/** B.4: the Merkle root, padded with zero digests to a power of two; one block is itself. */
function merkleHex(hashesHex: readonly string[]): string {
  let level: Buffer[] = hashesHex.map((hash) => Buffer.from(hash, "hex"));
  if (level.length === 1) return hashesHex[0]!;
  let width = 1;
  while (width < level.length) width *= 2;
  while (level.length < width) level.push(Buffer.alloc(32));
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) next.push(sha256(Buffer.concat([level[i]!, level[i + 1]!])));
    level = next;
  }
  return level[0]!.toString("hex");
}

/** Four blocks: random, short data then NULs, all NULs, a 500-byte tail. */
function mixedData(seed: number): Buffer {
  return Buffer.concat([patternBytes(blockSizeBytes, seed), patternBytes(100, seed + 1), Buffer.alloc(blockSizeBytes - 100), Buffer.alloc(blockSizeBytes), patternBytes(500, seed + 2)]);
}

function putHashmap(user: TestUser, path: string, body: unknown, query = "?hashmap&format=json", headers: Record<string, string> = {}): ReturnType<TestUser["request"]> {
  return user.request("PUT", `${path}${query}`, { body: typeof body === "string" ? body : JSON.stringify(body), headers: { "content-type": "application/octet-stream", ...headers } });
}

describeEachEngine("pithos HTTP: hashmaps", (databases) => {
  const harness = useHarness(databases, { blockSizeBytes, hashAlgorithm: "sha256" });

  describe("GET ?hashmap", () => {
    it("format=json: block_size, block_hash, bytes and the per-block hashes (trailing NULs stripped)", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const data = mixedData(1);
      await alice.put("/c/o", data);
      const answer = await alice.request("GET", "/c/o?hashmap&format=json");
      expect(answer.status).toBe(200);
      expect(answer.header("content-type")).toMatch(/^application\/json/);
      const hashes = hashmapOf(data);
      expect(hashes[2]).toBe(sha256(Buffer.alloc(0)).toString("hex"));
      expect(answer.json()).toEqual({ block_size: blockSizeBytes, block_hash: "sha256", bytes: data.length, hashes });
      // The object's headers come along: X-Object-Hash is the Merkle root, ETag the MD5.
      expect(answer.header("x-object-hash")).toBe(merkleHex(hashes));
      expect(answer.header("etag")).toBe(createHash("md5").update(data).digest("hex"));
      expect((await alice.request("HEAD", "/c/o")).header("x-object-hash")).toBe(merkleHex(hashes));
    });

    it("an empty object: bytes 0 and the one hash sha256(\"\"), which is also its X-Object-Hash", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/empty", "");
      const answer = await alice.request("GET", "/c/empty?hashmap&format=json");
      const emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
      expect(answer.json()).toEqual({ block_size: blockSizeBytes, block_hash: "sha256", bytes: 0, hashes: [emptyHash] });
      expect(answer.header("x-object-hash")).toBe(emptyHash);
    });

    it("one block: X-Object-Hash is that block's hash", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const data = patternBytes(1234, 5);
      await alice.put("/c/small", data);
      expect((await alice.request("HEAD", "/c/small")).header("x-object-hash")).toBe(blockHashHex(data));
    });

    it("format=xml lists the same hashes; without format the data itself is returned", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const data = mixedData(11);
      await alice.put("/c/o", data);
      const xml = await alice.request("GET", "/c/o?hashmap&format=xml");
      expect(xml.status).toBe(200);
      expect(xml.text()).toMatch(new RegExp(`<object name="o" bytes="${data.length}" block_size="${blockSizeBytes}" block_hash="sha256">`));
      expect([...xml.text().matchAll(/<hash>([0-9a-f]{64})<\/hash>/g)].map((match) => match[1])).toEqual(hashmapOf(data));
      const plain = await alice.request("GET", "/c/o?hashmap");
      expect(plain.status).toBe(200);
      expect(plain.body.equals(data)).toBe(true);
    });
  });

  describe("PUT ?hashmap and block upload", () => {
    it("409 with the missing hashes and nothing created; upload the blocks; PUT again → 201 and GET returns the data", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const data = mixedData(21);
      const hashes = hashmapOf(data);
      const blocksBefore = await blockObjects(harness().served);
      const refused = await putHashmap(alice, "/c/file", { bytes: data.length, hashes });
      expect(refused.status).toBe(409);
      // The zero block is always there; the others are missing.
      const zeroHash = hashes[2]!;
      const missing = refused.json<string[]>();
      expect([...missing].sort()).toEqual(hashes.filter((hash) => hash !== zeroHash).sort());
      expect((await alice.request("HEAD", "/c/file")).status).toBe(404);
      expect((await alice.request("GET", "/c")).status).toBe(204);
      expect((await alice.request("HEAD", "/c")).header("x-container-object-count")).toBe("0");
      expect(await blockObjects(harness().served)).toEqual(blocksBefore);

      // One block per request, as kamaki sends them; the reply is the block's hash.
      for (const hash of missing) {
        const index = hashes.indexOf(hash);
        const block = data.subarray(index * blockSizeBytes, (index + 1) * blockSizeBytes);
        const upload = await alice.request("POST", "/c?update&format=json", { body: block, headers: { "content-type": "application/octet-stream" } });
        expect(upload.status).toBe(202);
        expect(upload.json()).toEqual([hash]);
      }
      const created = await putHashmap(alice, "/c/file", { bytes: data.length, hashes, block_size: blockSizeBytes, block_hash: "sha256" });
      expect(created.status).toBe(201);
      // Pithos+'s ETag for data that never passed whole is the Merkle root (B.3).
      expect(created.header("etag")).toBe(merkleHex(hashes));
      const get = await alice.request("GET", "/c/file");
      expect(get.body.equals(data)).toBe(true);
      expect((await alice.request("GET", "/c/file?hashmap&format=json")).json<{ hashes: string[] }>().hashes).toEqual(hashes);
    });

    it("only the blocks still missing are reported after some were uploaded", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const data = patternBytes(3 * blockSizeBytes, 31);
      const hashes = hashmapOf(data);
      await alice.request("POST", "/c?update&format=json", { body: data.subarray(blockSizeBytes, 2 * blockSizeBytes), headers: { "content-type": "application/octet-stream" } });
      const refused = await putHashmap(alice, "/c/f", { bytes: data.length, hashes });
      expect(refused.status).toBe(409);
      expect([...refused.json<string[]>()].sort()).toEqual([hashes[0]!, hashes[2]!].sort());
    });

    it("without format= the 409 lists the missing hashes as text lines (synnefo.md B.3)", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const data = patternBytes(2 * blockSizeBytes, 41);
      const hashes = hashmapOf(data);
      const refused = await putHashmap(alice, "/c/f", { bytes: data.length, hashes }, "?hashmap");
      expect(refused.status).toBe(409);
      expect(refused.header("content-type")).toMatch(/^text\/plain/);
      expect(refused.text().split("\n").filter((line) => line !== "").sort()).toEqual([...hashes].sort());
    });

    it("a block upload body is cut into blocks (one hash each; text without format); trailing NULs do not change a hash", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const body = patternBytes(2 * blockSizeBytes + 10, 51);
      const upload = await alice.request("POST", "/c?update", { body, headers: { "content-type": "application/octet-stream" } });
      expect(upload.status).toBe(202);
      expect(upload.header("content-type")).toMatch(/^text\/plain/);
      expect(upload.text()).toBe(hashmapOf(body).map((hash) => `${hash}\n`).join(""));
      const padded = await alice.request("POST", "/c?update&format=json", { body: Buffer.concat([Buffer.from("abc"), Buffer.alloc(50)]), headers: { "content-type": "application/octet-stream" } });
      expect(padded.json()).toEqual([sha256(Buffer.from("abc")).toString("hex")]);
      // Chunked bodies work too.
      const chunked = await alice.request("POST", "/c?update&format=json", { chunks: [body.subarray(0, 100), body.subarray(100, blockSizeBytes)], headers: { "content-type": "application/octet-stream" } });
      expect(chunked.json()).toEqual([hashmapOf(body)[0]]);
    });

    it("an existing object's hashmap under a new name is created at once, with no new block (instant upload)", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const data = mixedData(61);
      await alice.put("/c/original", data);
      const blocksBefore = await blockObjects(harness().served);
      const created = await putHashmap(alice, "/c/again", { bytes: data.length, hashes: hashmapOf(data) }, "?hashmap&format=json", { "content-type": "text/plain" });
      expect(created.status).toBe(201);
      expect(await blockObjects(harness().served)).toEqual(blocksBefore);
      const get = await alice.request("GET", "/c/again");
      expect(get.body.equals(data)).toBe(true);
      expect(get.header("content-type")).toBe("text/plain");
      // If-None-Match: * (kamaki's create-only upload) on an existing name → 412.
      expect((await putHashmap(alice, "/c/again", { bytes: data.length, hashes: hashmapOf(data) }, "?hashmap&format=json", { "if-none-match": "*" })).status).toBe(412);
    });

    it("an empty object from a hashmap: bytes 0 with [sha256(\"\")]", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const created = await putHashmap(alice, "/c/empty", { bytes: 0, hashes: hashmapOf(Buffer.alloc(0)) });
      expect(created.status).toBe(201);
      const get = await alice.request("GET", "/c/empty");
      expect(get.status).toBe(200);
      expect(get.body.length).toBe(0);
    });

    it("bad hashmaps are 400 and create nothing: not JSON, wrong hash count, bad hashes, bad bytes", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const data = patternBytes(2 * blockSizeBytes, 71);
      const hashes = hashmapOf(data);
      const bodies: unknown[] = [
        "{not json",
        "",
        "[]",
        "null",
        { bytes: data.length, hashes: [hashes[0]] },
        { bytes: data.length, hashes: [...hashes, hashes[0]] },
        { bytes: data.length, hashes: [hashes[0], "zz".repeat(32)] },
        { bytes: data.length, hashes: [hashes[0], hashes[1]!.slice(0, 60)] },
        { bytes: data.length, hashes: [hashes[0], 42] },
        { bytes: -1, hashes: [] },
        { bytes: "8192", hashes },
        { bytes: 1.5, hashes: [hashes[0]] },
        { hashes },
      ];
      for (const body of bodies) {
        const answer = await putHashmap(alice, "/c/bad", body);
        expect(answer.status, JSON.stringify(body)).toBe(400);
      }
      expect((await alice.request("HEAD", "/c/bad")).status).toBe(404);
      expect((await alice.request("HEAD", "/c")).header("x-container-object-count")).toBe("0");
    });
  });
});
