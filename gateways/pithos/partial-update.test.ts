/**
 * Pithos+ partial updates over HTTP: patch, append, truncate and data from another object,
 * checked against a byte-array model, and the blocks they store counted in the engine.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { parseContentRange } from "./partial-update.ts";
import { servePithos, type ServedPithos } from "./testing/server.ts";

const blockSize = 4096;

describeEachEngine("object partial updates", (databases) => {
  let served: ServedPithos;
  let base: string;
  let token: string;

  const request = (path: string, init: RequestInit & { headers?: Record<string, string> } = {}): Promise<Response> =>
    fetch(`${base}/${path}`, { ...init, headers: { "x-auth-token": token, ...init.headers } });
  const contentBlocks = async (): Promise<number> => {
    let count = 0;
    for await (const _ of served.engine.objects.list("b.")) count++;
    return count;
  };
  const body = async (path: string): Promise<Buffer> => Buffer.from(await (await request(path)).arrayBuffer());

  beforeAll(async () => {
    served = await servePithos(await databases.open(), { blockSizeBytes: blockSize });
    await served.addUser("alice", "pw");
    const login = await served.login("alice", "pw");
    base = login.storageUrl;
    token = login.token;
    expect((await request("c", { method: "PUT" })).status).toBe(201);
  });

  afterAll(async () => served?.close());

  it("parses Content-Range forms", () => {
    expect(parseContentRange("bytes 10-19/*")).toEqual({ start: 10, lengthBytes: 10, expectedSizeBytes: undefined });
    expect(parseContentRange("bytes 10-/100")).toEqual({ start: 10, lengthBytes: undefined, expectedSizeBytes: 100 });
    expect(parseContentRange("bytes */*")).toEqual({ start: undefined, lengthBytes: undefined, expectedSizeBytes: undefined });
    expect(() => parseContentRange("bytes 9-3/*")).toThrow();
    expect(() => parseContentRange("items 0-1/*")).toThrow();
  });

  it("patches a range, storing only the blocks it touches", async () => {
    const model = randomBytes(3 * blockSize + 500);
    expect((await request("c/f", { method: "PUT", body: model })).status).toBe(201);
    const before = await contentBlocks();
    const patch = randomBytes(100);
    const response = await request("c/f", {
      method: "POST",
      body: patch,
      headers: { "content-type": "application/octet-stream", "content-range": `bytes ${blockSize + 10}-${blockSize + 109}/*` },
    });
    expect(response.status).toBe(204);
    patch.copy(model, blockSize + 10);
    expect((await body("c/f")).equals(model)).toBe(true);
    expect(await contentBlocks()).toBe(before + 1);
    // A patch across a block boundary touches two blocks.
    const across = randomBytes(20);
    expect(
      (await request("c/f", { method: "POST", body: across, headers: { "content-type": "application/octet-stream", "content-range": `bytes ${2 * blockSize - 10}-${2 * blockSize + 9}/${model.length}` } }))
        .status,
    ).toBe(204);
    across.copy(model, 2 * blockSize - 10);
    expect((await body("c/f")).equals(model)).toBe(true);
    expect(await contentBlocks()).toBe(before + 3);
    const versions = (await (await request("c/f?version=list&format=json")).json()) as { versions: unknown[] };
    expect(versions.versions).toHaveLength(3);
  });

  it("appends, truncates and extends", async () => {
    let model = randomBytes(blockSize + 7);
    expect((await request("c/g", { method: "PUT", body: model })).status).toBe(201);
    const tail = randomBytes(blockSize);
    expect((await request("c/g", { method: "POST", body: tail, headers: { "content-type": "application/octet-stream", "content-range": "bytes */*" } })).status).toBe(204);
    model = Buffer.concat([model, tail]);
    expect((await body("c/g")).equals(model)).toBe(true);
    expect((await request("c/g", { method: "POST", headers: { "x-object-bytes": "3000" } })).status).toBe(204);
    model = model.subarray(0, 3000);
    expect((await body("c/g")).equals(model)).toBe(true);
    expect((await request("c/g", { method: "POST", headers: { "x-object-bytes": String(2 * blockSize + 1) } })).status).toBe(204);
    model = Buffer.concat([model, Buffer.alloc(2 * blockSize + 1 - 3000)]);
    expect((await body("c/g")).equals(model)).toBe(true);
    expect((await request("c/g", { method: "HEAD" })).headers.get("content-length")).toBe(String(2 * blockSize + 1));
  });

  it("writes another object's data at an offset (X-Source-Object)", async () => {
    const target = randomBytes(2 * blockSize);
    const source = randomBytes(blockSize);
    expect((await request("c/t", { method: "PUT", body: target })).status).toBe(201);
    expect((await request("c/s", { method: "PUT", body: source })).status).toBe(201);
    const before = await contentBlocks();
    const response = await request("c/t", { method: "POST", headers: { "x-source-object": "/c/s", "content-range": `bytes ${blockSize}-${2 * blockSize - 1}/*` } });
    expect(response.status).toBe(204);
    expect((await body("c/t")).equals(Buffer.concat([target.subarray(0, blockSize), source]))).toBe(true);
    // The aligned block is the source's block: stored once already.
    expect(await contentBlocks()).toBe(before);
  });

  it("refuses what it cannot do, changing nothing", async () => {
    const data = randomBytes(100);
    expect((await request("c/h", { method: "PUT", body: data })).status).toBe(201);
    expect((await request("c/h", { method: "POST", body: "x", headers: { "content-type": "application/octet-stream", "content-range": "bytes 0-0/99" } })).status).toBe(416);
    expect((await request("c/h", { method: "POST", body: "x", headers: { "content-type": "text/plain", "content-range": "bytes 0-0/*" } })).status).toBe(400);
    expect((await request("c/h", { method: "POST", body: "x", headers: { "content-type": "application/octet-stream", "content-range": "garbage" } })).status).toBe(400);
    expect((await request("c/nothing", { method: "POST", body: "x", headers: { "content-type": "application/octet-stream", "content-range": "bytes 0-0/*" } })).status).toBe(404);
    expect((await body("c/h")).equals(data)).toBe(true);
  });
});
