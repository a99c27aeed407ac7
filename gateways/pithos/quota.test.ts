/**
 * Disk-space quota over HTTP (synnefo.md B.2 413, B.5 "Policy/quota", D.3 commissions): an
 * upload past the user's `object-store.diskspace` limit is 413 and stores nothing; an overwrite
 * charges the difference; a delete releases; old versions are free. Usage is read from the
 * identity quota tables (getQuota) and must never be left pending.
 */
import { expect, it } from "vitest";
import { getQuota } from "../../db/index.ts";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { diskspaceResource } from "./quota.ts";
import { useHarness, type TestUser } from "./testing/http.ts";

const limitBytes = 10_000;

describeEachEngine("pithos HTTP: quota", (databases) => {
  const harness = useHarness(databases, { blockSizeBytes: 4096 });

  async function usage(user: TestUser): Promise<number> {
    const quota = await getQuota(harness().db, user.uuid, diskspaceResource);
    // Every commission was accepted or rejected: nothing is left in flight.
    expect(quota.pendingIncrease).toBe(0);
    expect(quota.pendingDecrease).toBe(0);
    expect(quota.limit).toBe(limitBytes);
    return quota.usage;
  }

  async function smallUser(): Promise<TestUser> {
    const user = await harness().user("small", { diskspaceBytes: limitBytes });
    await user.container("c");
    return user;
  }

  it("uploads are charged; past the limit 413 and nothing is stored (Content-Length and chunked)", async () => {
    const user = await smallUser();
    await user.put("/c/a", Buffer.alloc(6000, 1));
    expect(await usage(user)).toBe(6000);
    const refused = await user.request("PUT", "/c/b", { body: Buffer.alloc(5000, 2) });
    expect(refused.status).toBe(413);
    expect((await user.request("HEAD", "/c/b")).status).toBe(404);
    const chunked = await user.request("PUT", "/c/b", { chunks: [Buffer.alloc(2500, 3), Buffer.alloc(2500, 4)] });
    expect(chunked.status).toBe(413);
    expect((await user.request("HEAD", "/c/b")).status).toBe(404);
    expect(await usage(user)).toBe(6000);
    expect((await user.request("HEAD", "/c")).header("x-container-object-count")).toBe("1");
    // Exactly up to the limit is fine.
    await user.put("/c/b", Buffer.alloc(4000, 5));
    expect(await usage(user)).toBe(limitBytes);
    expect((await user.request("PUT", "/c/one-more", { body: "x" })).status).toBe(413);
    // A 0-byte object costs nothing and is always taken.
    await user.put("/c/empty", "");
    expect(await usage(user)).toBe(limitBytes);
  });

  it("an overwrite charges the difference: growing past the limit is 413 and keeps the old data; shrinking releases", async () => {
    const user = await smallUser();
    await user.put("/c/a", Buffer.alloc(6000, 1));
    await user.put("/c/a", Buffer.alloc(9000, 2));
    expect(await usage(user)).toBe(9000);
    expect((await user.request("PUT", "/c/a", { body: Buffer.alloc(10_001, 3) })).status).toBe(413);
    const kept = await user.request("GET", "/c/a");
    expect(kept.body.equals(Buffer.alloc(9000, 2))).toBe(true);
    expect(await usage(user)).toBe(9000);
    await user.put("/c/a", Buffer.alloc(100, 4));
    expect(await usage(user)).toBe(100);
  });

  it("old versions are free: only current versions count (synnefo.md B.5)", async () => {
    const user = await smallUser();
    for (let round = 0; round < 4; round++) await user.put("/c/v", Buffer.alloc(5000, round));
    expect(await usage(user)).toBe(5000);
    const { versions } = (await user.request("GET", "/c/v?version=list&format=json")).json<{ versions: unknown[] }>();
    expect(versions).toHaveLength(4);
  });

  it("delete releases; bulk delete and SLO delete too", async () => {
    const user = await smallUser();
    await user.put("/c/a", Buffer.alloc(3000, 1));
    await user.put("/c/b", Buffer.alloc(3000, 2));
    await user.put("/c/seg/1", Buffer.alloc(1000, 3));
    await user.put("/c/seg/2", Buffer.alloc(1000, 4));
    await user.put("/c/slo?multipart-manifest=put", JSON.stringify([{ path: "/c/seg/1" }, { path: "/c/seg/2" }]));
    expect(await usage(user)).toBe(8000);
    expect((await user.request("DELETE", "/c/a")).status).toBe(204);
    expect(await usage(user)).toBe(5000);
    await user.request("POST", "?bulk-delete", { body: "/c/b\n", headers: { "content-type": "text/plain", accept: "application/json" } });
    expect(await usage(user)).toBe(2000);
    expect((await user.request("DELETE", "/c/slo?multipart-manifest=delete")).status).toBe(200);
    expect(await usage(user)).toBe(0);
  });

  it("copy charges the copy; move charges nothing; both refused past the limit", async () => {
    const user = await smallUser();
    await user.put("/c/a", Buffer.alloc(4000, 1));
    expect((await user.request("PUT", "/c/copy", { body: "", headers: { "x-copy-from": "/c/a" } })).status).toBe(201);
    expect(await usage(user)).toBe(8000);
    expect((await user.request("COPY", "/c/a", { headers: { destination: "/c/copy2" } })).status).toBe(413);
    expect((await user.request("HEAD", "/c/copy2")).status).toBe(404);
    expect((await user.request("MOVE", "/c/copy", { headers: { destination: "/c/moved" } })).status).toBe(201);
    expect(await usage(user)).toBe(8000);
  });

  it("an object created from a hashmap is charged its size; 413 past the limit creates nothing", async () => {
    const user = await smallUser();
    const data = Buffer.alloc(8000, 7);
    await user.put("/c/a", data);
    const hashmap = (await user.request("GET", "/c/a?hashmap&format=json")).json<{ bytes: number; hashes: string[] }>();
    const refused = await user.request("PUT", "/c/b?hashmap&format=json", { body: JSON.stringify({ bytes: hashmap.bytes, hashes: hashmap.hashes }), headers: { "content-type": "application/octet-stream" } });
    expect(refused.status).toBe(413);
    expect((await user.request("HEAD", "/c/b")).status).toBe(404);
    expect(await usage(user)).toBe(8000);
  });

  it("the owner is charged when a grantee with write access uploads", async () => {
    const owner = await smallUser();
    const writer = await harness().user("writer");
    await owner.put("/c/shared", "", { "x-object-sharing": `write=${writer.uuid}` });
    expect((await writer.request("PUT", "/c/shared", { account: owner.account, body: Buffer.alloc(9000, 1) })).status).toBe(201);
    expect(await usage(owner)).toBe(9000);
    expect((await getQuota(harness().db, writer.uuid, diskspaceResource)).usage).toBe(0);
    expect((await writer.request("PUT", "/c/shared", { account: owner.account, body: Buffer.alloc(limitBytes + 1, 1) })).status).toBe(413);
  });
});
