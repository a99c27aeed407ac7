/**
 * Server-side copy and move of a 1 GiB object (issue 6 "Done when"): no block object is
 * created and none is even read — the work is the map's, O(number of blocks), whatever
 * the bytes. Counted with a wrapper around the engine's store.
 */
import { createHash } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import type { ObjectStore } from "../../engine/blocker/object-store.ts";
import { servePithos, type ServedPithos } from "./testing/server.ts";

const blockSize = 4 * 1024 * 1024;
const objectBytes = 1024 ** 3;

/** 1 GiB of distinct non-zero 4 MiB blocks, generated as it is read (never all in memory). */
async function* gibibyte(): AsyncGenerator<Buffer> {
  // One pseudo-random block, stamped with its index at its start, middle and end: 256
  // distinct blocks for the price of generating one.
  const base = Buffer.alloc(blockSize);
  for (let offset = 0; offset < blockSize; offset += 32) createHash("sha256").update(String(offset)).digest().copy(base, offset);
  for (let index = 0; index < objectBytes / blockSize; index++) {
    const block = Buffer.from(base);
    for (const at of [0, blockSize / 2, blockSize - 4]) block.writeUInt32LE(index, at);
    yield block;
  }
}

describeEachEngine("copy and move of a 1 GiB object", (databases) => {
  let served: ServedPithos;
  let counting = false;
  const blockReads: string[] = [];

  const countBlockReads = (store: ObjectStore): ObjectStore =>
    new Proxy(store, {
      get(target, property, receiver) {
        const value: unknown = Reflect.get(target, property, receiver);
        if ((property === "read" || property === "readInto") && typeof value === "function") {
          return (name: string, ...rest: unknown[]) => {
            if (counting && name.startsWith("b.")) blockReads.push(name);
            return (value as (...args: unknown[]) => unknown).call(target, name, ...rest);
          };
        }
        return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });

  const contentBlocks = async (): Promise<number> => {
    let count = 0;
    for await (const _ of served.engine.objects.list("b.")) count++;
    return count;
  };

  beforeAll(async () => {
    served = await servePithos(await databases.open(), { blockSizeBytes: blockSize, wrapStore: countBlockReads });
  });
  afterAll(async () => served?.close());

  it("creates and reads no block objects", async () => {
    const alice = await served.addUser("alice", "pw");
    const { storageUrl, token } = await served.login("alice", "pw");
    const request = (path: string, init: RequestInit & { headers?: Record<string, string> } = {}) =>
      fetch(`${storageUrl}/${path}`, { ...init, headers: { "x-auth-token": token, ...init.headers } });
    expect((await request("big", { method: "PUT" })).status).toBe(201);
    // Stored through the service (the upload path is tested elsewhere; this test is about copy).
    const { getContainer } = await import("../../db/index.ts");
    const container = (await getContainer(served.service.db, alice.uuid, "big"))!;
    const stored = await served.service.putFromStream(container, "one-gib", gibibyte(), { contentType: "application/octet-stream" }, { modifiedBy: alice.uuid });
    expect(stored.version.sizeBytes).toBe(objectBytes);
    const blocksBefore = await contentBlocks();
    expect(blocksBefore).toBe(objectBytes / blockSize);

    counting = true;
    expect((await request("big/copy", { method: "PUT", headers: { "x-copy-from": "/big/one-gib", "content-length": "0" } })).status).toBe(201);
    expect((await request("big/one-gib", { method: "COPY", headers: { destination: "/big/copy2" } })).status).toBe(201);
    expect((await request("big/moved", { method: "PUT", headers: { "x-move-from": "/big/copy", "content-length": "0" } })).status).toBe(201);
    expect((await request("big/copy2", { method: "MOVE", headers: { destination: "/big/moved2" } })).status).toBe(201);
    counting = false;
    expect(blockReads).toEqual([]);
    expect(await contentBlocks()).toBe(blocksBefore);

    // Every copy has the original's hashmap, and the data reads back the same.
    const hashmap = async (path: string) => ((await (await request(`${path}?hashmap&format=json`)).json()) as { hashes: string[] }).hashes;
    const original = await hashmap("big/one-gib");
    expect(await hashmap("big/moved")).toEqual(original);
    expect(await hashmap("big/moved2")).toEqual(original);
    expect((await request("big/copy")).status).toBe(404);
    const head = await request("big/moved2", { method: "HEAD" });
    expect(head.headers.get("content-length")).toBe(String(objectBytes));
    expect(head.headers.get("etag")).toBe(stored.version.etag);
    const tail = await request("big/moved2", { headers: { range: `bytes=${objectBytes - blockSize}-` } });
    const expected = createHash("md5");
    for await (const block of gibibyte()) expected.update(block);
    expect(stored.version.etag).toBe(expected.digest("hex"));
    expect(Buffer.from(await tail.arrayBuffer()).readUInt32LE(0)).toBe(objectBytes / blockSize - 1);
  });
});
