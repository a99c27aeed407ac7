/**
 * The ObjectStore conformance suite: every semantic in object-store.ts's header, run
 * against every backend and layer (abstract-level's test/ + supports). A backend's test
 * file calls describeObjectStoreConformance with a factory for a fresh, empty store.
 *
 * Only semantics visible through the interface are checked here; durability (barrier) and
 * cross-process locking need a real second process and live in the backends' own tests.
 */
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isEngineError, type EngineErrorCode } from "../errors.ts";
import { ioLengthMaxBytes, objectNameLengthMax, type ObjectStore } from "./object-store.ts";

export interface StoreUnderTest {
  store: ObjectStore;
  cleanup(): Promise<void>;
}

/**
 * Property-test budget: 100 random sequences of up to 30 operations on 2 objects of up to
 * 4 KiB: enough to reach overlap/extend/replace/shrink/copy interleavings, in under a second
 * on the file backend (each writeFull and copy costs an fdatasync).
 */
const modelRuns = 100;
const modelOperationsMax = 30;
const modelObjectBytesMax = 4096;

/** Callers racing createExclusive: more than libuv's 4 threads, so the races are real. */
const exclusiveRacers = 16;

async function expectCode(promise: Promise<unknown>, code: EngineErrorCode): Promise<void> {
  const error: unknown = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(isEngineError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
}

async function listAll(store: ObjectStore, prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const name of store.list(prefix)) names.push(name);
  return names.sort();
}

const bytes = (text: string): Buffer => Buffer.from(text, "utf8");
const zeros = (lengthBytes: number): Buffer => Buffer.alloc(lengthBytes);

export function describeObjectStoreConformance(label: string, makeStore: () => Promise<StoreUnderTest>): void {
  describe(`ObjectStore conformance: ${label}`, () => {
    let subject: StoreUnderTest;
    let store: ObjectStore;

    beforeEach(async () => {
      subject = await makeStore();
      store = subject.store;
    });

    afterEach(async () => {
      await store.close();
      await subject.cleanup();
    });

    describe("read and write", () => {
      it("reading a missing object is ENOT_FOUND", async () => {
        await expectCode(store.read("m.missing", 0, 1), "ENOT_FOUND");
      });

      it("reads back what was written, zeros past the end", async () => {
        await store.write("p.a", 0, bytes("hello"));
        expect(await store.read("p.a", 0, 5)).toEqual(bytes("hello"));
        expect(await store.read("p.a", 3, 4)).toEqual(Buffer.concat([bytes("lo"), zeros(2)]));
        expect(await store.read("p.a", 100, 3)).toEqual(zeros(3));
        expect(await store.read("p.a", 0, 0)).toEqual(zeros(0));
      });

      it("write at an offset creates the object with leading zeros, and extends it", async () => {
        await store.write("p.a", 4, bytes("xy"));
        expect(await store.read("p.a", 0, 6)).toEqual(Buffer.concat([zeros(4), bytes("xy")]));
        expect((await store.stat("p.a"))?.sizeBytes).toBe(6);
        await store.write("p.a", 10, bytes("z"));
        expect((await store.stat("p.a"))?.sizeBytes).toBe(11);
        expect(await store.read("p.a", 0, 11)).toEqual(Buffer.concat([zeros(4), bytes("xy"), zeros(4), bytes("z")]));
      });

      it("an empty write creates the object and extends it to its offset", async () => {
        await store.write("p.a", 3, zeros(0));
        expect((await store.stat("p.a"))?.sizeBytes).toBe(3);
        await store.write("p.a", 1, zeros(0));
        expect((await store.stat("p.a"))?.sizeBytes).toBe(3);
      });

      it("an empty write extends a wholly written object, which then reads whole and copies", async () => {
        // On RADOS, a zero-length write here once left the OSD's digest of the whole object
        // stale: the whole-object read below then never completed (rados.ts, #extendTo).
        await store.writeFull("p.a", bytes("whole"));
        await store.write("p.a", 9, zeros(0));
        await store.copy("p.a", "p.b");
        const expected = Buffer.concat([bytes("whole"), zeros(4)]);
        expect(await store.read("p.b", 0, 9)).toEqual(expected);
        expect(await store.read("p.a", 0, 9)).toEqual(expected);
      });

      it("write in the middle keeps the rest", async () => {
        await store.write("p.a", 0, bytes("abcdef"));
        await store.write("p.a", 2, bytes("XY"));
        expect(await store.read("p.a", 0, 6)).toEqual(bytes("abXYef"));
      });

      it("a returned buffer is the caller's: changing it does not change the object", async () => {
        await store.write("b.a", 0, bytes("abc"));
        const first = await store.read("b.a", 0, 3);
        first.fill(0);
        expect(await store.read("b.a", 0, 3)).toEqual(bytes("abc"));
      });
    });

    describe("writeFull", () => {
      it("replaces the whole object, shorter than before", async () => {
        await store.write("m.a", 0, bytes("a long old content"));
        await store.writeFull("m.a", bytes("new"));
        expect((await store.stat("m.a"))?.sizeBytes).toBe(3);
        expect(await store.read("m.a", 0, 8)).toEqual(Buffer.concat([bytes("new"), zeros(5)]));
      });

      it("reads as offsetBytes zeros then data, nothing old surviving", async () => {
        await store.write("m.a", 0, Buffer.alloc(16, 0xff));
        await store.writeFull("m.a", bytes("zz"), 6);
        expect(await store.read("m.a", 0, 10)).toEqual(Buffer.concat([zeros(6), bytes("zz"), zeros(2)]));
        expect((await store.stat("m.a"))?.sizeBytes).toBe(8);
      });

      it("empty data at an offset makes an object of that many zeros", async () => {
        await store.writeFull("m.a", zeros(0), 5);
        expect((await store.stat("m.a"))?.sizeBytes).toBe(5);
        expect(await store.read("m.a", 0, 5)).toEqual(zeros(5));
      });

      it("a non-atomic replacement has the same result, and later writes land in it", async () => {
        await store.write("p.a", 0, Buffer.alloc(16, 0xff));
        await store.writeFull("p.a", bytes("zz"), 6, { atomic: false });
        expect(await store.read("p.a", 0, 10)).toEqual(Buffer.concat([zeros(6), bytes("zz"), zeros(2)]));
        expect((await store.stat("p.a"))?.sizeBytes).toBe(8);
        await store.write("p.a", 0, bytes("E"));
        expect(await store.read("p.a", 0, 8)).toEqual(Buffer.concat([bytes("E"), zeros(5), bytes("zz")]));
        await store.barrier();
        await store.writeFull("p.fresh", bytes("new"), 0, { atomic: false });
        expect(await store.read("p.fresh", 0, 3)).toEqual(bytes("new"));
      });

      it("later in-place writes land in the replacement", async () => {
        await store.write("p.a", 0, bytes("old!"));
        await store.writeFull("p.a", bytes("new!"));
        await store.write("p.a", 1, bytes("E"));
        expect(await store.read("p.a", 0, 4)).toEqual(bytes("nEw!"));
      });
    });

    describe("createExclusive", () => {
      it("creates only when the name is free", async () => {
        expect(await store.createExclusive("b.x", bytes("first"))).toBe(true);
        expect(await store.createExclusive("b.x", bytes("second"))).toBe(false);
        expect(await store.read("b.x", 0, 5)).toEqual(bytes("first"));
      });

      it("racing callers: exactly one wins and its data is the object", async () => {
        const contents = Array.from({ length: exclusiveRacers }, (_, index) => bytes(`racer-${index}`.padEnd(12, ".")));
        const results = await Promise.all(contents.map((data) => store.createExclusive("d.raced", data)));
        expect(results.filter((created) => created)).toHaveLength(1);
        const winner = contents[results.indexOf(true)];
        expect(await store.read("d.raced", 0, 12)).toEqual(winner);
      });

      it("stores empty data as an empty object", async () => {
        expect(await store.createExclusive("d.empty", zeros(0))).toBe(true);
        expect((await store.stat("d.empty"))?.sizeBytes).toBe(0);
      });
    });

    describe("copy", () => {
      it("replaces the target with the source's content", async () => {
        await store.write("m.source", 0, bytes("src"));
        await store.write("m.target", 0, bytes("a longer target"));
        await store.copy("m.source", "m.target");
        expect((await store.stat("m.target"))?.sizeBytes).toBe(3);
        expect(await store.read("m.target", 0, 5)).toEqual(Buffer.concat([bytes("src"), zeros(2)]));
      });

      it("a non-atomic copy replaces the target too, and later writes land in it", async () => {
        await store.write("p.source", 0, bytes("src"));
        await store.write("p.target", 0, bytes("a longer target"));
        await store.copy("p.source", "p.target", { atomic: false });
        expect((await store.stat("p.target"))?.sizeBytes).toBe(3);
        await store.write("p.target", 1, bytes("R"));
        expect(await store.read("p.target", 0, 5)).toEqual(Buffer.concat([bytes("sRc"), zeros(2)]));
        expect(await store.read("p.source", 0, 3)).toEqual(bytes("src"));
        await expectCode(store.copy("p.missing", "p.target", { atomic: false }), "ENOT_FOUND");
      });

      it("the copy is independent of the source", async () => {
        await store.write("p.source", 0, bytes("original"));
        await store.copy("p.source", "p.copy");
        await store.write("p.copy", 0, bytes("CHANGED!"));
        await store.write("p.source", 0, bytes("O"));
        expect(await store.read("p.source", 0, 8)).toEqual(bytes("Original"));
        expect(await store.read("p.copy", 0, 8)).toEqual(bytes("CHANGED!"));
      });

      it("a missing source is ENOT_FOUND and leaves the target alone", async () => {
        await store.write("m.target", 0, bytes("kept"));
        await expectCode(store.copy("m.missing", "m.target"), "ENOT_FOUND");
        expect(await store.read("m.target", 0, 4)).toEqual(bytes("kept"));
      });

      it("copy onto itself is EINVALID", async () => {
        await store.write("m.a", 0, bytes("x"));
        await expectCode(store.copy("m.a", "m.a"), "EINVALID");
      });
    });

    describe("stat and remove", () => {
      it("stat says size and a plausible mtime, undefined when missing", async () => {
        expect(await store.stat("m.none")).toBeUndefined();
        const beforeMs = Date.now();
        await store.write("m.a", 0, bytes("12345"));
        const stat = await store.stat("m.a");
        expect(stat?.sizeBytes).toBe(5);
        // File systems keep coarser clocks than Date.now(): allow a second of skew.
        expect(stat?.mtimeMs).toBeGreaterThan(beforeMs - 1000);
        expect(stat?.mtimeMs).toBeLessThan(Date.now() + 1000);
      });

      it("remove says whether the object existed; afterwards it is gone", async () => {
        await store.write("p.a", 0, bytes("x"));
        expect(await store.remove("p.a")).toBe(true);
        expect(await store.remove("p.a")).toBe(false);
        expect(await store.stat("p.a")).toBeUndefined();
        await expectCode(store.read("p.a", 0, 1), "ENOT_FOUND");
        expect(await listAll(store, "p.")).toEqual([]);
      });

      it("a removed name can be created again from scratch", async () => {
        await store.write("b.a", 0, bytes("first"));
        await store.remove("b.a");
        expect(await store.createExclusive("b.a", bytes("2nd"))).toBe(true);
        expect(await store.read("b.a", 0, 5)).toEqual(Buffer.concat([bytes("2nd"), zeros(2)]));
      });
    });

    describe("list", () => {
      const names = ["b.aa", "b.ab", "bb.x", "bbb", "p.1.2.3", "okeanos.store", "d.b.", "m.b.aa"];

      beforeEach(async () => {
        for (const name of names) await store.write(name, 0, bytes(name));
      });

      it("lists exactly the names starting with the prefix", async () => {
        expect(await listAll(store, "b.")).toEqual(["b.aa", "b.ab"]);
        expect(await listAll(store, "b.a")).toEqual(["b.aa", "b.ab"]);
        expect(await listAll(store, "b.aa")).toEqual(["b.aa"]);
        expect(await listAll(store, "bb")).toEqual(["bb.x", "bbb"]);
        expect(await listAll(store, "b")).toEqual(["b.aa", "b.ab", "bb.x", "bbb"]);
        expect(await listAll(store, "p.")).toEqual(["p.1.2.3"]);
        expect(await listAll(store, "zz")).toEqual([]);
        expect(await listAll(store, "z.")).toEqual([]);
      });

      it("the empty prefix lists everything", async () => {
        expect(await listAll(store, "")).toEqual([...names].sort());
      });
    });

    describe("barrier", () => {
      it("completes after every kind of mutation, and the data is intact", async () => {
        await store.write("p.a", 0, bytes("one"));
        await store.writeFull("m.a", bytes("two"));
        await store.createExclusive("b.a", bytes("three"));
        await store.copy("p.a", "p.b");
        await store.write("p.gone", 0, bytes("x"));
        await store.remove("p.gone");
        await store.barrier();
        await store.barrier();
        expect(await store.read("p.b", 0, 3)).toEqual(bytes("one"));
        expect(await store.read("m.a", 0, 3)).toEqual(bytes("two"));
      });

      it("runs alongside writes", async () => {
        const writes = Array.from({ length: 20 }, (_, index) => store.write(`p.${index}`, 0, bytes(String(index))));
        await Promise.all([...writes, store.barrier(), store.barrier()]);
        await store.barrier();
        expect(await store.read("p.7", 0, 1)).toEqual(bytes("7"));
      });
    });

    describe("locks", () => {
      it("a lock names its holder", async () => {
        const lock = await store.lock("l.a", "volume a", 30_000);
        expect(lock.name).toBe("l.a");
        expect(lock.holder.owner).toBe("volume a");
        expect(lock.holder.pid).toBe(process.pid);
        expect(await store.lockHolder("l.a")).toMatchObject({ owner: "volume a", pid: process.pid });
        await lock.release();
      });

      it("is refused while held, naming the holder; available after release", async () => {
        const lock = await store.lock("l.a", "first", 30_000);
        const refused: unknown = await store.lock("l.a", "second", 30_000).catch((error: unknown) => error);
        expect(isEngineError(refused, "EVOLUME_LOCKED")).toBe(true);
        expect(isEngineError(refused) && refused.details.holder).toMatchObject({ owner: "first", pid: process.pid });
        expect(String((refused as Error).message)).toContain("first");
        await lock.renew();
        await lock.release();
        expect(await store.lockHolder("l.a")).toBeUndefined();
        const again = await store.lock("l.a", "second", 30_000);
        expect(again.holder.owner).toBe("second");
        await again.release();
      });

      it("different names do not conflict", async () => {
        const first = await store.lock("l.a", "a", 30_000);
        const second = await store.lock("l.b", "b", 30_000);
        await Promise.all([first.release(), second.release()]);
      });

      it("renew after release fails, release twice is harmless", async () => {
        const lock = await store.lock("l.a", "a", 30_000);
        await lock.release();
        await lock.release();
        await expectCode(lock.renew(), "EVOLUME_LOCKED");
      });

      it("lockHolder of a lock never taken is undefined", async () => {
        expect(await store.lockHolder("l.never")).toBeUndefined();
      });

      it("shared holds coexist and exclude an exclusive one, which excludes them in turn", async () => {
        const first = await store.lock("l.s", "reader 1", 30_000, "shared");
        const second = await store.lock("l.s", "reader 2", 30_000, "shared");
        await expectCode(store.lock("l.s", "writer", 30_000), "EVOLUME_LOCKED");
        await first.renew();
        await first.release();
        await expectCode(store.lock("l.s", "writer", 30_000, "exclusive"), "EVOLUME_LOCKED");
        await second.release();
        await expectCode(second.renew(), "EVOLUME_LOCKED");
        const writer = await store.lock("l.s", "writer", 30_000, "exclusive");
        const refused: unknown = await store.lock("l.s", "reader 3", 30_000, "shared").catch((error: unknown) => error);
        expect(isEngineError(refused, "EVOLUME_LOCKED")).toBe(true);
        expect(isEngineError(refused) && refused.details.holder).toMatchObject({ owner: "writer" });
        await writer.release();
        const third = await store.lock("l.s", "reader 3", 30_000, "shared");
        await third.release();
        const again = await store.lock("l.s", "writer again", 30_000);
        await again.release();
      });

      it("refuses an unknown lock mode", async () => {
        await expectCode(store.lock("l.m", "o", 30_000, "both" as "shared"), "EINVALID");
      });
    });

    describe("validation", () => {
      const invalidNames = ["", ".", "..", "a/b", "a b", "x\u00e9", "a\0b", "+tmp.x", "x".repeat(objectNameLengthMax + 1)];

      it.each(invalidNames.map((name) => [JSON.stringify(name).slice(0, 24), name]))("rejects the name %s", async (_label, name) => {
        await expectCode(store.read(name, 0, 1), "EINVALID");
        await expectCode(store.write(name, 0, bytes("x")), "EINVALID");
        await expectCode(store.writeFull(name, bytes("x")), "EINVALID");
        await expectCode(store.createExclusive(name, bytes("x")), "EINVALID");
        await expectCode(store.copy(name, "m.a"), "EINVALID");
        await expectCode(store.copy("m.a", name), "EINVALID");
        await expectCode(store.stat(name), "EINVALID");
        await expectCode(store.remove(name), "EINVALID");
        await expectCode(store.lock(name, "o", 1000), "EINVALID");
        await expectCode(store.lockHolder(name), "EINVALID");
      });

      it("accepts the longest name", async () => {
        const name = "d." + "x".repeat(objectNameLengthMax - 2);
        await store.write(name, 0, bytes("x"));
        expect(await listAll(store, "d.")).toEqual([name]);
      });

      it("rejects invalid ranges", async () => {
        await store.write("p.a", 0, bytes("x"));
        for (const offsetBytes of [-1, 0.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
          await expectCode(store.read("p.a", offsetBytes, 1), "EINVALID");
          await expectCode(store.write("p.a", offsetBytes, bytes("x")), "EINVALID");
          await expectCode(store.writeFull("p.a", bytes("x"), offsetBytes), "EINVALID");
        }
        for (const lengthBytes of [-1, 1.5, Number.NaN, ioLengthMaxBytes + 1]) {
          await expectCode(store.read("p.a", 0, lengthBytes), "EINVALID");
        }
        expect(await store.read("p.a", 0, 1)).toEqual(bytes("x"));
      });

      it("rejects an invalid list prefix and lease", async () => {
        // list() is not async: it refuses the prefix as it is called.
        let refused: unknown;
        try {
          store.list("a/b");
        } catch (error) {
          refused = error;
        }
        expect(isEngineError(refused, "EINVALID")).toBe(true);
        await expectCode(store.lock("l.a", "o", 0), "EINVALID");
        await expectCode(store.lock("l.a", "o", 1.5), "EINVALID");
      });

      it("refuses every call after close with ECLOSED", async () => {
        await store.close();
        await store.close();
        await expectCode(store.read("p.a", 0, 1), "ECLOSED");
        await expectCode(store.write("p.a", 0, bytes("x")), "ECLOSED");
        await expectCode(store.barrier(), "ECLOSED");
      });
    });

    it("describes itself", () => {
      expect(store.uri).toMatch(/^[a-z+]+:/);
      expect(typeof store.capabilities.persistent).toBe("boolean");
    });

    describe("model", () => {
      let run = 0;

      it("random write/writeFull/read sequences match a Buffer model", async () => {
        await fc.assert(
          fc.asyncProperty(fc.array(operationArbitrary, { minLength: 1, maxLength: modelOperationsMax }), async (operations) => {
            // Fresh names per run: the store is shared by all runs of this test.
            const names = modelObjectKinds.map((kind) => `${kind}.run${run}.${kind}`);
            run++;
            const model = new Map<string, Buffer>();
            for (const operation of operations) await applyOperation(store, model, names, operation);
          }),
          { numRuns: modelRuns },
        );
      });
    });
  });
}

/** One object of a kind backends may treat specially (the file store caches `p.` handles), one of another. */
const modelObjectKinds = ["p", "m"] as const;

type Operation =
  | { kind: "write"; object: number; offsetBytes: number; data: Uint8Array }
  | { kind: "copy"; object: number; atomic: boolean }
  | { kind: "writeFull"; object: number; offsetBytes: number; data: Uint8Array; atomic: boolean }
  | { kind: "read"; object: number; offsetBytes: number; lengthBytes: number; into: boolean }
  | { kind: "remove"; object: number };

const objectIndex = fc.integer({ min: 0, max: 1 });
const offset = fc.integer({ min: 0, max: modelObjectBytesMax });
const payload = fc.uint8Array({ minLength: 0, maxLength: modelObjectBytesMax / 4 });

const operationArbitrary: fc.Arbitrary<Operation> = fc.oneof(
  fc.record({ kind: fc.constant("write" as const), object: objectIndex, offsetBytes: offset, data: payload }),
  fc.record({ kind: fc.constant("writeFull" as const), object: objectIndex, offsetBytes: offset, data: payload, atomic: fc.boolean() }),
  fc.record({ kind: fc.constant("read" as const), object: objectIndex, offsetBytes: offset, lengthBytes: fc.integer({ min: 0, max: modelObjectBytesMax }), into: fc.boolean() }),
  fc.record({ kind: fc.constant("remove" as const), object: objectIndex }),
  fc.record({ kind: fc.constant("copy" as const), object: objectIndex, atomic: fc.boolean() }),
);

async function applyOperation(store: ObjectStore, model: Map<string, Buffer>, names: readonly string[], operation: Operation): Promise<void> {
  const name = names[operation.object] as string;
  const current = model.get(name);
  switch (operation.kind) {
    case "write": {
      await store.write(name, operation.offsetBytes, operation.data);
      const end = Math.max(current?.length ?? 0, operation.offsetBytes + operation.data.length);
      const next = Buffer.alloc(end);
      current?.copy(next);
      next.set(operation.data, operation.offsetBytes);
      model.set(name, next);
      return;
    }
    case "writeFull": {
      await store.writeFull(name, operation.data, operation.offsetBytes, { atomic: operation.atomic });
      const next = Buffer.alloc(operation.offsetBytes + operation.data.length);
      next.set(operation.data, operation.offsetBytes);
      model.set(name, next);
      return;
    }
    case "read": {
      if (current === undefined) {
        await expectCode(store.read(name, operation.offsetBytes, operation.lengthBytes), "ENOT_FOUND");
        return;
      }
      const expected = Buffer.alloc(operation.lengthBytes);
      current.copy(expected, 0, Math.min(operation.offsetBytes, current.length), Math.min(current.length, operation.offsetBytes + operation.lengthBytes));
      if (operation.into) {
        // Into a dirty view of a larger buffer: every byte of the view is overwritten.
        const backing = Buffer.alloc(operation.lengthBytes + 2, 0xee);
        await store.readInto(name, operation.offsetBytes, backing.subarray(1, 1 + operation.lengthBytes));
        expect(backing.subarray(1, 1 + operation.lengthBytes)).toEqual(expected);
        expect([backing[0], backing[backing.length - 1]]).toEqual([0xee, 0xee]);
      } else {
        expect(await store.read(name, operation.offsetBytes, operation.lengthBytes)).toEqual(expected);
      }
      expect((await store.stat(name))?.sizeBytes).toBe(current.length);
      return;
    }
    case "copy": {
      // Copies this object onto the other one.
      const target = names[1 - operation.object] as string;
      if (current === undefined) {
        await expectCode(store.copy(name, target), "ENOT_FOUND");
        return;
      }
      await store.copy(name, target, { atomic: operation.atomic });
      model.set(target, Buffer.from(current));
      return;
    }
    case "remove": {
      expect(await store.remove(name)).toBe(current !== undefined);
      model.delete(name);
      return;
    }
  }
}
