import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isEngineError } from "../../errors.ts";
import { describeObjectStoreConformance } from "../conformance.ts";
import { lockObject } from "./lease-lock.ts";
import { indexShardCount, shardObject, shardOf } from "./listing-index.ts";
import { loadRadosAddon, type RadosCluster, type RadosPool } from "./native.ts";
import { mallocTuning, RadosObjectStore } from "./rados.ts";
import { describeRados, openTestStore, testNamespace, type RadosTarget } from "./testing/target.ts";

async function listAll(store: RadosObjectStore, prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const name of store.list(prefix)) names.push(name);
  return names.sort();
}

/** A raw connection to the same namespace, to look under the store. */
async function rawPool(target: RadosTarget, namespace: string): Promise<{ cluster: RadosCluster; pool: RadosPool; close(): Promise<void> }> {
  const cluster = await loadRadosAddon().connect({ conf: target.cephConf });
  const pool = await cluster.openPool(target.pool, namespace);
  return {
    cluster,
    pool,
    close: async () => {
      pool.close();
      await cluster.shutdown();
    },
  };
}

describeRados("rados backend", (target) => {
  describeObjectStoreConformance("rados", async () => {
    const store = await openTestStore(target, "conformance");
    return { store, cleanup: async () => {} };
  });

  it("tunes glibc's malloc through the addon, and refuses thresholds an int cannot hold", () => {
    const addon = loadRadosAddon();
    expect(addon.tuneMalloc?.(mallocTuning.mmapThresholdBytes, mallocTuning.trimThresholdBytes)).toBe(true);
    expect(() => addon.tuneMalloc?.(2 ** 32, 0)).toThrow(RangeError);
  });

  describe("empty writes and object versions", () => {
    it("assertVersion passes at the version a read saw and fails once the object changed", async () => {
      const raw = await rawPool(target, testNamespace("version"));
      try {
        await raw.pool.writeOp("v", [["writeFull", Buffer.from("one")]]);
        const [version] = await raw.pool.readOp("v", [["version"], ["stat"]]);
        await raw.pool.writeOp("v", [["assertVersion", version as number], ["write", 3, Buffer.from("two")]]);
        const failed: unknown = await raw.pool.writeOp("v", [["assertVersion", version as number], ["truncate", 0]]).catch((error: unknown) => error);
        expect((failed as { errno?: number }).errno).toBe(34); // ERANGE: the object is newer
        const data = Buffer.alloc(6);
        await raw.pool.readOp("v", [["read", 0, data]]);
        expect(data.toString()).toBe("onetwo");
      } finally {
        await raw.close();
      }
    });

    it("an empty write past the end of a wholly written object leaves it readable (ops time out instead of hanging)", async () => {
      const store = await openTestStore(target, "extend", { settings: { rados_osd_op_timeout: "10" } });
      try {
        for (let round = 0; round < 5; round++) {
          const name = `p.extend${round}`;
          await store.writeFull(name, Buffer.alloc(862, 7));
          await store.write(name, 5000 + round, Buffer.alloc(0));
          const whole = await store.read(name, 0, 5000 + round);
          expect(whole.subarray(0, 862).every((byte) => byte === 7) && whole.subarray(862).every((byte) => byte === 0)).toBe(true);
          await store.copy(name, `p.extended${round}`);
          expect((await store.stat(`p.extended${round}`))?.sizeBytes).toBe(5000 + round);
          await store.write(name, 100, Buffer.alloc(0)); // shorter: no change
          expect((await store.stat(name))?.sizeBytes).toBe(5000 + round);
        }
      } finally {
        await store.close();
      }
    });
  });

  describe("listing index", () => {
    let store: RadosObjectStore;
    let namespace: string;
    beforeAll(async () => {
      store = await openTestStore(target, "index");
      namespace = store.uri.slice(store.uri.indexOf("/") + 1);
    });
    afterAll(async () => {
      await store.close();
    });

    it("indexes each name in its segment's shard, and drops it on remove", async () => {
      await store.write("b.one", 0, Buffer.from("x"));
      const raw = await rawPool(target, namespace);
      try {
        const [page] = await raw.pool.readOp(shardObject("b", shardOf("b.one")), [["omapGetVals", "", "", 100]]);
        expect((page as { keys: string[] }).keys).toEqual(["b.one"]);
        await store.remove("b.one");
        const [after] = await raw.pool.readOp(shardObject("b", shardOf("b.one")), [["omapGetVals", "", "", 100]]);
        expect((after as { keys: string[] }).keys).toEqual([]);
      } finally {
        await raw.close();
      }
    });

    it("lists more names than one omap page, across every shard", async () => {
      const names = Array.from({ length: 1100 }, (_, index) => `e.many${String(index).padStart(5, "0")}`);
      for (let start = 0; start < names.length; start += 100) {
        await Promise.all(names.slice(start, start + 100).map((name) => store.createExclusive(name, Buffer.alloc(0))));
      }
      expect(await listAll(store, "e.many")).toEqual(names);
      expect(new Set(names.map(shardOf)).size).toBe(indexShardCount);
    });

    it("an index entry whose object was never created (a crash between the two) is listed, and reads as missing", async () => {
      const raw = await rawPool(target, namespace);
      try {
        await raw.pool.writeOp(shardObject("d", shardOf("d.orphan")), [["omapSet", ["d.orphan"], [Buffer.from("0")]]]);
        await raw.pool.writeOp("+index", [["omapSet", ["d."], [Buffer.alloc(0)]]]);
      } finally {
        await raw.close();
      }
      expect(await listAll(store, "d.")).toContain("d.orphan");
      expect(await store.stat("d.orphan")).toBeUndefined();
      expect(await store.remove("d.orphan")).toBe(false);
    });

    it("an object written behind the index's back is not listed: listing never scans the pool", async () => {
      const raw = await rawPool(target, namespace);
      try {
        await raw.pool.writeOp("m.hidden", [["writeFull", Buffer.from("x")]]);
      } finally {
        await raw.close();
      }
      expect(await store.stat("m.hidden")).toMatchObject({ sizeBytes: 1 });
      expect(await listAll(store, "m.")).not.toContain("m.hidden");
    });
  });

  describe("ordering", () => {
    it("mutations of one name issued together land in the order issued, creating or not", async () => {
      const store = await openTestStore(target, "order");
      try {
        for (let round = 0; round < 10; round++) {
          const name = `p.order${round}`;
          const [, , , created] = await Promise.all([
            store.write(name, 0, Buffer.from("aaaa")), // absent: index, then create by writing
            store.writeFull(name, Buffer.from("bb")), // must replace the write above
            store.write(name, 1, Buffer.from("c")),
            store.createExclusive(name, Buffer.from("zz")),
          ]);
          expect(created).toBe(false);
          expect((await store.read(name, 0, 3)).toString("latin1")).toBe("bc\0");
          await store.write(`${name}.copy`, 0, Buffer.from("old"));
          const [removed] = await Promise.all([
            store.remove(name),
            store.write(name, 2, Buffer.from("d")), // absent again: index, then create
            store.copy(`${name}.copy`, name), // must replace the write above
            store.write(name, 0, Buffer.from("N")),
          ]);
          expect(removed).toBe(true);
          expect((await store.read(name, 0, 4)).toString("latin1")).toBe("Nld\0");
        }
      } finally {
        await store.close();
      }
    });

    it("copies both ways at once without waiting on each other", async () => {
      const store = await openTestStore(target, "copies");
      try {
        await Promise.all([store.write("p.left", 0, Buffer.from("L")), store.write("p.right", 0, Buffer.from("R"))]);
        await Promise.all([store.copy("p.left", "p.right"), store.copy("p.right", "p.left")]);
        const contents = [(await store.read("p.left", 0, 1)).toString(), (await store.read("p.right", 0, 1)).toString()];
        expect(["LL", "RR", "RL"]).toContain(contents.join(""));
      } finally {
        await store.close();
      }
    });
  });

  describe("in-flight limits", () => {
    it("keeps bytes in flight under the limit and every write lands", async () => {
      const store = await openTestStore(target, "inflight", { inFlightOpsMax: 8, inFlightBytesMax: 3 * 1024 * 1024 });
      try {
        const block = 1024 * 1024;
        let peakBytes = 0;
        let peakOps = 0;
        const writes = Array.from({ length: 24 }, (_, index) => store.writeFull(`p.big${index}`, Buffer.alloc(block, index)));
        const sampler = setInterval(() => {
          peakBytes = Math.max(peakBytes, store.inFlight.bytesInFlight);
          peakOps = Math.max(peakOps, store.inFlight.opsInFlight);
        }, 1);
        await Promise.all(writes);
        clearInterval(sampler);
        expect(peakBytes).toBeLessThanOrEqual(3 * block);
        expect(peakOps).toBeLessThanOrEqual(8);
        for (const index of [0, 11, 23]) expect((await store.read(`p.big${index}`, block - 1, 1))[0]).toBe(index);
      } finally {
        await store.close();
      }
    });

    it("defaults to 90 % of librados' objecter_inflight_op_bytes", async () => {
      const store = await openTestStore(target, "inflight-default");
      try {
        expect(store.inFlight.bytesMax).toBe(Math.floor(100 * 1024 * 1024 * 0.9));
      } finally {
        await store.close();
      }
    });
  });

  describe("locks between two clients", () => {
    /** Two connections (two RADOS clients) on one store, closed after `body`. */
    async function withTwoClients(body: (first: RadosObjectStore, second: RadosObjectStore) => Promise<void>): Promise<void> {
      const first = await openTestStore(target, "locks");
      const namespace = first.uri.slice(first.uri.indexOf("/") + 1);
      const second = await RadosObjectStore.open({ pool: target.pool, namespace, cephConf: target.cephConf });
      try {
        await body(first, second);
      } finally {
        await Promise.all([first.close(), second.close()]);
      }
    }

    it("excludes another client, naming the holder", async () => {
      await withTwoClients(async (first, second) => {
        const lock = await first.lock("l.shared", "volume one", 30_000);
        const refused: unknown = await second.lock("l.shared", "volume two", 30_000).catch((error: unknown) => error);
        expect(isEngineError(refused, "EVOLUME_LOCKED")).toBe(true);
        expect(String(refused)).toContain("volume one");
        expect(await second.lockHolder("l.shared")).toMatchObject({ owner: "volume one", pid: process.pid });
        await lock.release();
        const taken = await second.lock("l.shared", "volume two", 30_000);
        await taken.release();
        // A clean release leaves nothing to fence: the first client still works.
        await first.write("p.after", 0, Buffer.from("ok"));
        // …and no lock object behind (gc would never see one: locks are not indexed).
        const raw = await rawPool(target, first.uri.slice(first.uri.indexOf("/") + 1));
        try {
          await expect(raw.pool.readOp(lockObject("l.shared"), [["stat"]])).rejects.toMatchObject({ errno: 2 });
        } finally {
          await raw.close();
        }
      });
    });

    it("renews the lease on a timer: held well past one lease", async () => {
      await withTwoClients(async (first, second) => {
        const lock = await first.lock("l.renewed", "renewer", 1500);
        await sleep(4000);
        await lock.renew();
        expect(isEngineError(await second.lock("l.renewed", "taker", 1500).catch((error: unknown) => error), "EVOLUME_LOCKED")).toBe(true);
        await lock.release();
      });
    });

    it("a lease that ran out goes to the next client, which fences the old holder: it cannot write again", async () => {
      await withTwoClients(async (first, second) => {
        await first.write("p.data", 0, Buffer.from("before"));
        const lock = await first.lock("l.expiring", "sleeper", 1000);
        // What a hung holder looks like: no renewal.
        (lock as unknown as { abandon(): void }).abandon();
        await sleep(1500);
        expect(await second.lockHolder("l.expiring")).toBeUndefined();
        const taken = await second.lock("l.expiring", "taker", 30_000);
        expect(await second.lockHolder("l.expiring")).toMatchObject({ owner: "taker" });
        const fenced: unknown = await first.write("p.data", 0, Buffer.from("AFTER!")).catch((error: unknown) => error);
        expect(isEngineError(fenced, "EIO"), String(fenced)).toBe(true);
        expect(String(fenced)).toMatch(/blocklisted/);
        // A barrier would otherwise complete locally: it must not report the writes durable.
        await expect(first.barrier()).rejects.toThrow(/blocklisted/);
        expect((await second.read("p.data", 0, 6)).toString()).toBe("before");
        await expect(lock.renew()).rejects.toThrow(/lost|abandoned/);
        await taken.release();
      });
    });

    it("breakLock fences and removes whoever holds it, and says who that was", async () => {
      await withTwoClients(async (first, second) => {
        const lock = await first.lock("l.broken", "stuck", 30_000);
        expect(await second.breakLock("l.broken")).toMatchObject({ owner: "stuck" });
        expect(await second.lockHolder("l.broken")).toBeUndefined();
        await expect(lock.renew()).rejects.toThrow();
        await lock.release();
        const taken = await second.lock("l.broken", "operator", 30_000);
        await taken.release();
      });
    });
  });
});

function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}
