import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isEngineError } from "../errors.ts";
import { describeObjectStoreConformance } from "./conformance.ts";
import { FileObjectStore } from "./file.ts";
import { writePieceBytesMax } from "./file-io.ts";
import { coldReadGuard, coldReadGuardOptions, syncReadGuard, syncWriteGuard } from "./sync-io.ts";

const fileModuleUrl = pathToFileURL(join(import.meta.dirname, "file.ts")).href;

async function makeDirectory(): Promise<string> {
  return mkdtemp(join(tmpdir(), "okeanos-file-store-"));
}

describeObjectStoreConformance("file", async () => {
  const dir = await makeDirectory();
  return { store: await FileObjectStore.open(dir), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

// Every small read and write through the thread pool, as before sync-io.ts.
describeObjectStoreConformance("file, no sync small I/O", async () => {
  const dir = await makeDirectory();
  return { store: await FileObjectStore.open(dir, { syncSmallIo: false }), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

/** Runs `body` (an ES module body with `store` opened on argv's directory) in a child node process. */
function spawnStoreChild(dir: string, body: string): ChildProcess {
  const script = `const { FileObjectStore } = await import(process.argv[1]);\nconst store = await FileObjectStore.open(process.argv[2]);\n${body}`;
  return spawn(process.execPath, ["--input-type=module", "-e", script, fileModuleUrl, dir], { stdio: ["ignore", "pipe", "inherit"] });
}

async function firstLine(child: ChildProcess): Promise<string> {
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const [line] = (await once(lines, "line")) as [string];
  lines.close();
  return line;
}

async function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) await once(child, "exit");
}

describe("FileObjectStore", () => {
  let dir: string;
  let store: FileObjectStore;

  beforeEach(async () => {
    dir = await makeDirectory();
    store = await FileObjectStore.open(dir);
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("describes itself", () => {
    expect(store.uri).toBe(`file:${dir}`);
    expect(store.capabilities).toMatchObject({ persistent: true, crossProcessLocks: true });
  });

  it("fans objects out by first segment and name hash", async () => {
    const block = `b.${"ab".repeat(32)}`;
    await store.createExclusive(block, Buffer.from("block"));
    await store.write("p.0123456789abcdef.00000001.2a", 0, Buffer.from("private"));
    await store.writeFull("okeanos.store", Buffer.from("header"));
    expect(store.objectPath(block)).toMatch(new RegExp(`/objects/b/[0-9a-f]{2}/${block}$`));
    expect((await readdir(join(dir, "objects"))).sort()).toEqual(["b", "okeanos", "p"]);
    expect(await readdir(dirname(store.objectPath(block)))).toEqual([block]);
  });

  it("lists a dotted prefix without walking other segments", async () => {
    await store.write("b.1", 0, Buffer.from("x"));
    // A file where a segment directory belongs: walking it would fail.
    await writeFile(join(dir, "objects", "zz"), "not a directory");
    const names: string[] = [];
    for await (const name of store.list("b.")) names.push(name);
    expect(names).toEqual(["b.1"]);
    const walkAll = async (): Promise<void> => {
      for await (const _name of store.list("")) void _name;
    };
    await expect(walkAll()).rejects.toMatchObject({ code: "EIO" });
  });

  it("never lists temporary files", async () => {
    await store.writeFull("m.a", Buffer.from("x"));
    await writeFile(join(dirname(store.objectPath("m.a")), "+tmp.left.over.by.a.crash"), "junk");
    const names: string[] = [];
    for await (const name of store.list("m.")) names.push(name);
    expect(names).toEqual(["m.a"]);
  });

  it("keeps data across close and reopen", async () => {
    await store.write("p.a", 3, Buffer.from("kept"));
    await store.barrier();
    await store.close();
    store = await FileObjectStore.open(dir);
    expect(await store.read("p.a", 0, 7)).toEqual(Buffer.concat([Buffer.alloc(3), Buffer.from("kept")]));
  });

  it("bounds the open handles", async () => {
    await store.close();
    store = await FileObjectStore.open(dir, { handleCacheMax: 8 });
    const descriptorsBefore = (await readdir("/proc/self/fd")).length;
    for (let index = 0; index < 50; index++) await store.write(`p.${index}`, 0, Buffer.from(String(index)));
    for (let index = 0; index < 50; index++) expect(await store.read(`p.${index}`, 0, 2)).toEqual(Buffer.from(String(index).padEnd(2, "\0")));
    expect(store.cachedHandleCount).toBe(8);
    // Slack for descriptors the runtime opens on its own.
    expect((await readdir("/proc/self/fd")).length - descriptorsBefore).toBeLessThanOrEqual(8 + 4);
    await store.close();
    expect((await readdir("/proc/self/fd")).length).toBeLessThanOrEqual(descriptorsBefore + 4);
  });

  it("page-aligned writes up to 1 MiB, and small reads of pages touched lately, run on the calling thread; the rest through the pool", async () => {
    const counts = () => ({ writes: syncWriteGuard.stats.calls, reads: syncReadGuard.stats.calls, cold: coldReadGuard.stats.calls });
    const page = Buffer.alloc(4096, 1);
    const name = "p.sync.0.1";
    let before = counts();
    await store.write(name, 8192, page); // aligned: sync
    await store.write(name, 100, Buffer.from("unaligned")); // may need the page from disk: pool
    await store.write(name, 1024 * 1024, Buffer.alloc(1024 * 1024, 2)); // 1 MiB, aligned: sync
    await store.write(name, 2 * 1024 * 1024, Buffer.alloc(1024 * 1024 + 4096, 3)); // larger: pool
    expect(counts().writes - before.writes).toBe(2);
    before = counts();
    expect((await store.read(name, 8192, 4096)).equals(page)).toBe(true); // written lately: sync
    expect((await store.read(name, 0, 200)).subarray(100, 109).toString()).toBe("unaligned"); // sync too
    expect((await store.read(name, 1024 * 1024 + 4096, 4096)).equals(Buffer.alloc(4096, 2))).toBe(true); // sync
    expect((await store.read(name, 1024 * 1024, 128 * 1024)).equals(Buffer.alloc(128 * 1024, 2))).toBe(true); // large: pool
    expect(counts().reads - before.reads).toBe(3);
    // A page never touched: a cold read, sync while the cold guard sees hits; then recent.
    // (Earlier tests' cold reads may have tripped the process-wide guard on a loaded machine.)
    before = counts();
    const coldAllowed = coldReadGuard.allowed(performance.now());
    expect((await store.read(name, 16384, 4096)).equals(Buffer.alloc(4096))).toBe(true);
    expect(counts().cold - before.cold).toBe(coldAllowed ? 1 : 0);
    expect((await store.read(name, 16384, 4096)).equals(Buffer.alloc(4096))).toBe(true); // touched by that read: sync
    expect(counts().reads - before.reads).toBe(1);
    // Cold reads that missed the cache: the cold guard backs off, and they take the pool.
    const missedAtMs = performance.now();
    for (let miss = 0; miss < coldReadGuardOptions.missCountMin + 1; miss++) coldReadGuard.record(1, missedAtMs);
    expect(coldReadGuard.allowed(performance.now())).toBe(false);
    before = counts();
    expect((await store.read(name, 32768, 4096)).equals(Buffer.alloc(4096))).toBe(true);
    // A replaced object's pages are not assumed cached any more.
    await store.writeFull(name, page);
    expect((await store.read(name, 0, 4096)).equals(page)).toBe(true);
    expect(counts()).toEqual(before);
    // Objects whose handles are not cached (they may be replaced by another process) never go sync.
    before = counts();
    await store.write("m.sync", 0, page);
    await store.read("m.sync", 0, 4096);
    expect(counts()).toEqual(before);
  });

  it("writes larger than one pwrite piece land whole, at any offset, on the calling thread or through the pool", async () => {
    const data = Buffer.alloc(3 * writePieceBytesMax + 3);
    for (let index = 0; index < data.length; index++) data[index] = (index * 7) % 251;
    await store.write("p.pieces", 4097, data);
    expect((await store.read("p.pieces", 4097, data.length)).equals(data)).toBe(true);
    expect((await store.stat("p.pieces"))?.sizeBytes).toBe(4097 + data.length);
    // Aligned and at most 1 MiB: written synchronously, in pieces too.
    const aligned = Buffer.concat([data, Buffer.alloc(4093, 5)]); // 3 pieces and a page
    expect(aligned.length % 4096).toBe(0);
    const writesBefore = syncWriteGuard.stats.calls;
    const syncAllowed = syncWriteGuard.allowed(performance.now());
    await store.write("p.pieces.0.1", 8192, aligned);
    expect(syncWriteGuard.stats.calls - writesBefore).toBe(syncAllowed ? 1 : 0);
    expect((await store.read("p.pieces.0.1", 8192, aligned.length)).equals(aligned)).toBe(true);
    expect((await store.read("p.pieces.0.1", 0, 8192)).equals(Buffer.alloc(8192))).toBe(true);
  });

  it("with syncSmallIo off, nothing runs on the calling thread", async () => {
    const pooled = await FileObjectStore.open(dir, { syncSmallIo: false });
    try {
      const counts = () => ({ writes: syncWriteGuard.stats.calls, reads: syncReadGuard.stats.calls, cold: coldReadGuard.stats.calls });
      const before = counts();
      await pooled.write("p.pool.0.1", 0, Buffer.alloc(4096, 3));
      expect((await pooled.read("p.pool.0.1", 0, 4096)).equals(Buffer.alloc(4096, 3))).toBe(true);
      expect((await pooled.read("p.pool.0.1", 8192, 4096)).equals(Buffer.alloc(4096))).toBe(true);
      expect(counts()).toEqual(before);
    } finally {
      await pooled.close();
    }
  });

  it("tracks writes that complete during a barrier for the next one", async () => {
    await store.write("p.a", 0, Buffer.from("a"));
    expect(store.dirtyObjectCount).toBe(1);
    const barrier = store.barrier(); // snapshots its dirty set before any I/O completes
    const write = store.write("p.b", 0, Buffer.from("b"));
    await Promise.all([barrier, write]);
    expect(store.dirtyObjectCount).toBe(1);
    await store.barrier();
    expect(store.dirtyObjectCount).toBe(0);
  });

  it("readers never see a half-replaced object", async () => {
    const versions = [Buffer.alloc(64 * 1024, 0x61), Buffer.alloc(128 * 1024, 0x62)];
    await store.writeFull("m.a", versions[0] as Buffer);
    let replacing = true;
    const replacer = (async () => {
      for (let round = 0; round < 40; round++) await store.writeFull("m.a", versions[round % 2] as Buffer);
      replacing = false;
    })();
    while (replacing) {
      const seen = await store.read("m.a", 0, 128 * 1024);
      const matches = versions.some((version) => seen.equals(Buffer.concat([version, Buffer.alloc(128 * 1024 - version.length)])));
      expect(matches).toBe(true);
    }
    await replacer;
  });

  it("createExclusive: one winner among processes", async () => {
    const racers = Array.from({ length: 4 }, (_, index) =>
      spawnStoreChild(dir, `console.log(String(await store.createExclusive("d.raced", Buffer.from("racer ${index}"))));\nawait store.close();`),
    );
    const results = await Promise.all(racers.map((child) => firstLine(child)));
    await Promise.all(racers.map((child) => exited(child)));
    expect(results.filter((result) => result === "true")).toHaveLength(1);
    const winner = results.indexOf("true");
    expect((await store.read("d.raced", 0, 7)).toString()).toBe(`racer ${winner}`);
  });

  it("a lock excludes other processes and dies with its holder", async () => {
    const child = spawnStoreChild(dir, `await store.lock("l.vol", "child volume", 30000);\nconsole.log("locked");\nsetInterval(() => {}, 1000);`);
    try {
      expect(await firstLine(child)).toBe("locked");
      const refused: unknown = await store.lock("l.vol", "parent", 30_000).catch((error: unknown) => error);
      expect(isEngineError(refused, "EVOLUME_LOCKED")).toBe(true);
      expect(isEngineError(refused) && refused.details.holder).toMatchObject({ owner: "child volume", pid: child.pid });
      expect((refused as Error).message).toContain(`pid ${child.pid}`);
      expect(await store.lockHolder("l.vol")).toMatchObject({ pid: child.pid });

      child.kill("SIGKILL");
      await exited(child);
      // Its holder record is still in the lock file, but no one holds the flock.
      expect(await store.lockHolder("l.vol")).toBeUndefined();
      const lock = await store.lock("l.vol", "parent", 30_000);
      expect(lock.holder.pid).toBe(process.pid);
      await lock.release();
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });

  it("a shared lock excludes an exclusive one in another process, not a shared one, and dies with its holder", async () => {
    const child = spawnStoreChild(dir, `await store.lock("l.refs", "child reader", 30000, "shared");\nconsole.log("locked");\nsetInterval(() => {}, 1000);`);
    try {
      expect(await firstLine(child)).toBe("locked");
      await expect(store.lock("l.refs", "parent writer", 30_000)).rejects.toMatchObject({ code: "EVOLUME_LOCKED" });
      const reader = await store.lock("l.refs", "parent reader", 30_000, "shared");
      await reader.release();
      child.kill("SIGKILL");
      await exited(child);
      const writer = await store.lock("l.refs", "parent writer", 30_000);
      await writer.release();
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });
});
