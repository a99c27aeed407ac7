/**
 * A version that is stored stays readable even when the clean-up after it fails: dropping
 * the map it replaced is gc's to finish, not a reason to report the write as failed (and drop
 * the map the new version names, which left the object pointing at nothing).
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import type { ObjectStore } from "../../engine/blocker/object-store.ts";
import { EngineError } from "../../engine/errors.ts";
import { servePithos, type ServedPithos } from "./testing/server.ts";

describeEachEngine("pithos: a failed clean-up after a stored version", (databases) => {
  let served: ServedPithos;
  let failRemovals = false;
  const warnings: string[] = [];

  const failingRemovals = (store: ObjectStore): ObjectStore =>
    new Proxy(store, {
      get(target, property, receiver) {
        const value: unknown = Reflect.get(target, property, receiver);
        if (property === "remove" && typeof value === "function") {
          return async (name: string) => {
            if (failRemovals) throw new EngineError("EIO", `injected: cannot remove ${name}`);
            return (value as (name: string) => Promise<boolean>).call(target, name);
          };
        }
        return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });

  beforeAll(async () => {
    served = await servePithos(await databases.open(), { blockSizeBytes: 4096, wrapStore: failingRemovals, onCleanupError: (_error, what) => warnings.push(what) });
  });
  afterAll(async () => served?.close());

  it("an overwrite and a copy onto an existing object succeed and read back while replaced maps cannot be dropped", async () => {
    await served.addUser("alice", "pw");
    const { storageUrl, token } = await served.login("alice", "pw");
    const request = (path: string, init: RequestInit & { headers?: Record<string, string> } = {}) =>
      fetch(`${storageUrl}/${path}`, { ...init, headers: { "x-auth-token": token, ...init.headers } });
    // Versioning off: an overwrite unreferences the map it replaces (auto would keep it as history).
    expect((await request("c", { method: "PUT", headers: { "x-container-policy-versioning": "none" } })).status).toBe(201);
    expect((await request("c/o", { method: "PUT", body: "first" })).status).toBe(201);
    expect((await request("c/p", { method: "PUT", body: "source" })).status).toBe(201);

    failRemovals = true;
    expect((await request("c/o", { method: "PUT", body: "second" })).status).toBe(201);
    expect((await request("c/p", { method: "COPY", headers: { destination: "/c/o" } })).status).toBe(201);
    failRemovals = false;

    const read = await request("c/o");
    expect(read.status).toBe(200);
    expect(await read.text()).toBe("source");
    expect(warnings.filter((what) => what.startsWith("dropping replaced maps")).length).toBe(2);
  });
});
