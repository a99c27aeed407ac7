/**
 * The CLI as users and scripts meet it: real `node bin/okeanos.js` processes against a
 * file store in a temporary directory.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, open, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../engine/engine.ts";
import { openObjectStore } from "../engine/blocker/open-store.ts";
import { cliFor, ok, okJson, runCli, type CliResult } from "./testing/run-cli.ts";
import { asksForVersionOnly, commandNamed } from "./main.ts";

const blockSizeBytes = 64 * 1024;

let dir: string;
let storeCount = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "okeanos-cli-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A fresh, initialised store with 64 KiB blocks, and a CLI bound to it. */
async function newStore(): Promise<{ storeDir: string; okeanos: ReturnType<typeof cliFor> }> {
  const storeDir = join(dir, `store-${storeCount++}`);
  const okeanos = cliFor(storeDir);
  await ok(okeanos("store", "init", "--block-size", "64K"));
  return { storeDir, okeanos };
}

/** Writes `content` to a new file, leaving its all-zero 64 KiB blocks as holes. */
async function writeSparse(path: string, content: Buffer): Promise<void> {
  const file = await open(path, "w");
  try {
    await file.truncate(content.length);
    for (let offset = 0; offset < content.length; offset += blockSizeBytes) {
      const block = content.subarray(offset, offset + blockSizeBytes);
      if (block.some((byte) => byte !== 0)) await file.write(block, 0, block.length, offset);
    }
  } finally {
    await file.close();
  }
}

/**
 * 40 blocks and a partial one: data in blocks 0–4, 15, 20–22 (block 21 half zeros) and the
 * tail; everything else zero.
 */
function imageWithHoles(): { content: Buffer; dataBlocks: number; zeroBlocks: number } {
  const content = Buffer.alloc(40 * blockSizeBytes + 1234);
  const fill = (firstBlock: number, blocks: number): void => {
    randomBytes(blocks * blockSizeBytes).copy(content, firstBlock * blockSizeBytes);
  };
  fill(0, 5);
  fill(15, 1);
  fill(20, 3);
  content.fill(0, 21 * blockSizeBytes + blockSizeBytes / 2, 22 * blockSizeBytes);
  randomBytes(1234).copy(content, 40 * blockSizeBytes);
  return { content, dataBlocks: 10, zeroBlocks: 31 };
}

async function allocatedBytes(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

/** Writes through the engine in this process: the CLI has no write command (NBD will be the way). */
async function writeVolume(storeDir: string, name: string, writes: ReadonlyArray<[offsetBytes: number, data: Buffer]>): Promise<void> {
  const engine = await Engine.open(await openObjectStore(`file:${storeDir}`));
  try {
    const volume = await engine.openVolume(name);
    try {
      for (const [offsetBytes, data] of writes) await volume.write(offsetBytes, data);
    } finally {
      await volume.close();
    }
  } finally {
    await engine.close();
  }
}

function expectOneLineError(result: CliResult, code: number, message: RegExp): void {
  expect({ code: result.code, stdout: result.stdout }, result.stderr).toEqual({ code, stdout: "" });
  expect(result.stderr).toMatch(/^okeanos: [^\n]+\n$/);
  expect(result.stderr).toMatch(message);
}

describe("import and export", () => {
  it("imports a file with holes and exports the same bytes, holes left sparse", async () => {
    const { okeanos } = await newStore();
    const image = imageWithHoles();
    const source = join(dir, "holes.raw");
    await writeSparse(source, image.content);

    const imported = await okJson<{ dataBlocks: number; zeroBlocks: number; sizeBytes: number }>(okeanos("volume", "import", source, "vm1", "--json"));
    expect(imported).toMatchObject({ dataBlocks: image.dataBlocks, zeroBlocks: image.zeroBlocks, sizeBytes: image.content.length });
    const info = await okJson<{ header: { sizeBytes: number }; zeroBlocks: number; contentBlocks: number; privateBlocks: number }>(
      okeanos("volume", "info", "vm1", "--json"),
    );
    expect(info).toMatchObject({ zeroBlocks: image.zeroBlocks, contentBlocks: image.dataBlocks, privateBlocks: 0 });
    expect(info.header.sizeBytes).toBe(image.content.length);

    const target = join(dir, "holes.exported.raw");
    expect(await ok(okeanos("volume", "export", "vm1", target))).toMatch(/^Exported vm1 to /);
    expect((await readFile(target)).equals(image.content)).toBe(true);
    // Data blocks are allocated, holes are not (the file system may round to 4 KiB).
    const allocated = await allocatedBytes(target);
    expect(allocated).toBeGreaterThanOrEqual(9 * blockSizeBytes);
    expect(allocated).toBeLessThan(12 * blockSizeBytes);
  });

  it("exports a never-written volume as a file that is all hole", async () => {
    const { okeanos } = await newStore();
    await ok(okeanos("volume", "create", "empty", "--size", "64M"));
    const target = join(dir, "empty.raw");
    // An existing longer file is truncated, not merged.
    await writeSparse(target, randomBytes(3 * blockSizeBytes));
    const result = await okJson<{ sizeBytes: number; writtenBytes: number }>(okeanos("volume", "export", "empty", target, "--json"));
    expect(result).toEqual({ name: "empty", file: target, sizeBytes: 64 * 1024 * 1024, writtenBytes: 0 });
    expect((await stat(target)).size).toBe(64 * 1024 * 1024);
    expect(await allocatedBytes(target)).toBeLessThan(64 * 1024);
    const content = await readFile(target);
    expect(content.every((byte) => byte === 0)).toBe(true);
  });

  it("refuses to import a missing file (exit 3) and an existing name (exit 11), leaving no volume behind", async () => {
    const { okeanos } = await newStore();
    expectOneLineError(await okeanos("volume", "import", join(dir, "absent.raw"), "vm1"), 3, /cannot open .*absent\.raw: no such file or directory/);
    const source = join(dir, "small.raw");
    await writeSparse(source, randomBytes(1000));
    await ok(okeanos("volume", "import", source, "vm1"));
    expectOneLineError(await okeanos("volume", "import", source, "vm1"), 11, /vm1 already exists/);
    expect(await okJson(okeanos("volume", "list", "--json"))).toHaveLength(1);
  });
});

describe("snapshots, clones, hash, diff, delete and gc", () => {
  it("runs the whole lifecycle with JSON results", async () => {
    const { storeDir, okeanos } = await newStore();
    const original = randomBytes(16 * blockSizeBytes);
    const source = join(dir, "base.raw");
    await writeSparse(source, original);
    await ok(okeanos("volume", "import", source, "vm1"));

    const s1 = await okJson<{ kind: string; frozen: boolean; sizeBytes: number }>(okeanos("volume", "snapshot", "vm1", "s1", "--json"));
    expect(s1).toMatchObject({ kind: "snapshot", frozen: true, sizeBytes: original.length });
    await ok(okeanos("volume", "clone", "s1", "c1"));
    expect(await okJson(okeanos("volume", "diff", "s1", "c1", "--json"))).toMatchObject({ ranges: [], changedBlocks: 0, totalBlocks: 16 });

    // A small write in block 3 and a whole-block write over blocks 10–11.
    const modified = Buffer.from(original);
    const small = randomBytes(10);
    const large = randomBytes(2 * blockSizeBytes);
    small.copy(modified, 3 * blockSizeBytes + 100);
    large.copy(modified, 10 * blockSizeBytes);
    await writeVolume(storeDir, "vm1", [
      [3 * blockSizeBytes + 100, small],
      [10 * blockSizeBytes, large],
    ]);
    await ok(okeanos("volume", "snapshot", "vm1", "s2"));
    const diff = await okJson<{ ranges: unknown[]; changedBlocks: number }>(okeanos("volume", "diff", "s1", "s2", "--json"));
    expect(diff).toMatchObject({
      changedBlocks: 3,
      ranges: [
        { offsetBytes: 3 * blockSizeBytes, lengthBytes: blockSizeBytes },
        { offsetBytes: 10 * blockSizeBytes, lengthBytes: 2 * blockSizeBytes },
      ],
    });
    const diffText = await ok(okeanos("volume", "diff", "s1", "s2"));
    expect(diffText).toMatch(/^3 of 16 blocks differ \(192 KiB\) in 2 ranges\nOFFSET +LENGTH +AT +SIZE\n196608 +65536 +192 KiB +64 KiB\n/);

    // Hash publishes the three private blocks; a second hash has nothing left to do.
    const hashed = await okJson<{ hashedBlocks: number; storedBlocks: number; header: { contentHash: string } }>(okeanos("volume", "hash", "s2", "--json"));
    expect(hashed).toMatchObject({ hashedBlocks: 3, storedBlocks: 3 });
    expect(hashed.header.contentHash).toMatch(/^[0-9a-f]{64}$/);
    expect(await okJson(okeanos("volume", "info", "s2", "--json"))).toMatchObject({ privateBlocks: 0, contentBlocks: 16 });
    expect(await okJson(okeanos("volume", "hash", "s2", "--json"))).toMatchObject({ hashedBlocks: 0, storedBlocks: 0 });
    // The volume still names its (now frozen) private blocks: diff knows they are the hashed ones.
    expect(await okJson(okeanos("volume", "diff", "s2", "vm1", "--json"))).toMatchObject({ ranges: [] });

    await ok(okeanos("volume", "clone", "s2", "c2", "--size", "2M"));
    const list = await okJson<Array<{ name: string; kind: string; sizeBytes: number }>>(okeanos("volume", "list", "--json"));
    expect(list.map(({ name, kind, sizeBytes }) => [name, kind, sizeBytes])).toEqual([
      ["c1", "volume", original.length],
      ["c2", "volume", 2 * 1024 * 1024],
      ["s1", "snapshot", original.length],
      ["s2", "snapshot", original.length],
      ["vm1", "volume", original.length],
    ]);
    expect(await ok(okeanos("volume", "list"))).toMatch(/^NAME +KIND +SIZE +PARENT +HASHED +CREATED\nc1 +volume +1 MiB +s1 +- +\d{4}-/);

    // Deleting s1 and c1 orphans the three original blocks that only they still named.
    await ok(okeanos("volume", "delete", "c1"));
    await ok(okeanos("volume", "delete", "s1"));
    const young = await okJson<{ removedObjects: number; keptRecentObjects: number }>(okeanos("gc", "--dry-run", "--json"));
    expect(young.removedObjects).toBe(0);
    expect(young.keptRecentObjects).toBeGreaterThanOrEqual(3);
    const dry = await okJson(okeanos("gc", "--grace", "0", "--dry-run", "--json"));
    expect(dry).toMatchObject({ dryRun: true, removedByKind: { "content-block": 3 } });
    const freed = await okJson<{ removedObjects: number; removedBytes: number }>(okeanos("gc", "--grace", "0", "--json"));
    expect(freed).toMatchObject({ dryRun: false, removedByKind: { "content-block": 3 }, graceMs: 0 });
    expect(freed.removedBytes).toBeGreaterThanOrEqual(3 * blockSizeBytes);
    expect(await ok(okeanos("gc", "--grace", "0s"))).toMatch(/^Freed 0 objects, 0 bytes\n/);

    // Nothing live was freed: every remaining map still reads back its bytes.
    for (const [name, expected] of [
      ["vm1", modified],
      ["s2", modified],
      ["c2", Buffer.concat([modified, Buffer.alloc(1024 * 1024)])],
    ] as const) {
      const target = join(dir, `${name}.raw`);
      await ok(okeanos("volume", "export", name, target));
      expect((await readFile(target)).equals(expected), name).toBe(true);
    }

    const stats = await okJson<{ volumes: number; snapshots: number; dedupRatio: number; byKind: Record<string, { objects: number }> }>(
      okeanos("store", "stats", "--json"),
    );
    expect(stats).toMatchObject({ volumes: 2, snapshots: 1, images: 0, blockSizeBytes, hashAlgorithm: "blake3" });
    expect(stats.dedupRatio).toBeGreaterThan(1);
    expect(await ok(okeanos("store", "stats"))).toMatch(/dedup ratio: +\d+\.\d\d\n[\s\S]*KIND +OBJECTS +BYTES\n/);
  }, 180_000);

  it("resizes a volume up, never down", async () => {
    const { okeanos } = await newStore();
    await ok(okeanos("volume", "create", "vm1", "--size", "1M"));
    expect(await ok(okeanos("volume", "resize", "vm1", "--size", "1.5M"))).toBe("Resized vm1 from 1 MiB to 1.5 MiB\n");
    expect(await okJson(okeanos("volume", "info", "vm1", "--json"))).toMatchObject({ header: { sizeBytes: 1.5 * 1024 * 1024 } });
    expectOneLineError(await okeanos("volume", "resize", "vm1", "--size", "1M"), 15, /shrinking to 1048576 is not supported/);
  });
});

describe("errors: one line on stderr, a distinct exit code", () => {
  it("reports a missing store without creating it, and a store initialised twice", async () => {
    const storeDir = join(dir, "never-initialised");
    expectOneLineError(await runCli(["--store", `file:${storeDir}`, "volume", "list"]), 18, /no store at file:.*never-initialised: run `okeanos store init` first/);
    await expect(stat(storeDir)).rejects.toThrow();
    const { okeanos } = await newStore();
    expectOneLineError(await okeanos("store", "init"), 11, /a store is already initialised at file:/);
  });

  it("maps engine errors to their exit codes", async () => {
    const { okeanos } = await newStore();
    await ok(okeanos("volume", "create", "vm1", "--size", "1M"));
    expectOneLineError(await okeanos("volume", "info", "nope"), 10, /no volume, snapshot or image named nope/);
    expectOneLineError(await okeanos("volume", "create", "vm1", "--size", "1M"), 11, /vm1 already exists/);
    expectOneLineError(await okeanos("volume", "clone", "vm1", "vm2"), 16, /vm1 is a writable volume; clone a snapshot of it instead/);
    expectOneLineError(await okeanos("volume", "hash", "vm1"), 16, /snapshot it and hash the snapshot/);
    expectOneLineError(await okeanos("volume", "create", "-bad", "--size", "1M"), 2, /unknown option '-bad'/);
    expectOneLineError(await okeanos("volume", "create", "bad/name", "--size", "1M"), 15, /invalid name "bad\/name"/);
    await ok(okeanos("volume", "snapshot", "vm1", "s1"));
    expectOneLineError(await okeanos("volume", "resize", "s1", "--size", "2M"), 14, /s1 is a frozen snapshot/);
    expectOneLineError(await okeanos("volume", "clone", "s1", "small", "--size", "4K"), 15, /needs at least 1048576 bytes/);
  });

  it("reports a volume another process has open for writing", async () => {
    const { storeDir, okeanos } = await newStore();
    await ok(okeanos("volume", "create", "vm1", "--size", "1M"));
    const engine = await Engine.open(await openObjectStore(`file:${storeDir}`));
    try {
      const volume = await engine.openVolume("vm1", { owner: "test-holder" });
      try {
        expectOneLineError(await okeanos("volume", "resize", "vm1", "--size", "2M"), 12, /vm1 is open for writing by test-holder/);
        expect(await okJson(okeanos("volume", "info", "vm1", "--json"))).toMatchObject({ lockHolder: { owner: "test-holder", pid: process.pid } });
      } finally {
        await volume.close();
      }
    } finally {
      await engine.close();
    }
  });

  it("rejects malformed command lines with exit code 2", async () => {
    const { okeanos } = await newStore();
    expectOneLineError(await okeanos("volume", "create", "vm1", "--size", "10X"), 2, /option '--size <size>' argument '10X' is invalid\. invalid size "10X"/);
    expectOneLineError(await okeanos("volume", "create", "vm1", "--size", "-1G"), 2, /invalid/);
    expectOneLineError(await okeanos("volume", "create", "vm1"), 2, /--size is required \(or --from-image\)/);
    expectOneLineError(await okeanos("store", "init", "--hash", "md5"), 2, /argument 'md5' is invalid\. Allowed choices are blake3, sha256/);
    expectOneLineError(await okeanos("gc", "--grace", "5"), 2, /invalid duration "5"/);
    expectOneLineError(await okeanos("volume", "snapshot", "vm1"), 2, /missing required argument 'snapshot'/);
    expectOneLineError(await okeanos("volumes", "list"), 2, /unknown command 'volumes' \(Did you mean volume\?\)/);
    expectOneLineError(await okeanos("volume", "list", "extra"), 2, /too many arguments/);
  });

  it("refuses store URIs it cannot open", async () => {
    expectOneLineError(await runCli(["--store", "rados:", "volume", "list"]), 15, /a rados store needs a pool/);
    expectOneLineError(await runCli(["--store", "s3:bucket", "volume", "list"]), 15, /unknown store scheme "s3:"/);
  });

  it("prints the stack only with OKEANOS_DEBUG=1", async () => {
    const result = await runCli(["--store", "rados:", "volume", "list"], { env: { OKEANOS_DEBUG: "1" } });
    expect(result.code).toBe(15);
    expect(result.stderr.split("\n")[0]).toMatch(/^okeanos: a rados store needs a pool/);
    expect(result.stderr).toMatch(/\n\s+at .*open-store\.ts/);
  });
});

describe("options, help and version", () => {
  it("takes the store from OKEANOS_STORE and global options after the command", async () => {
    const { storeDir } = await newStore();
    await ok(runCli(["volume", "create", "vm1", "--size", "4M"], { env: { OKEANOS_STORE: `file:${storeDir}` } }));
    const list = await okJson(runCli(["volume", "list", "--json", "--store", storeDir]));
    expect(list).toMatchObject([{ name: "vm1", sizeBytes: 4 * 1024 * 1024 }]);
  });

  it("defaults to file:./data", async () => {
    const cwd = await mkdtemp(join(dir, "cwd-"));
    const init = await okJson(runCli(["store", "init", "--json"], { cwd }));
    expect(init).toMatchObject({ uri: `file:${join(cwd, "data")}`, blockSizeBytes: 4 * 1024 * 1024, hashAlgorithm: "blake3" });
  });

  it("prints the package version", async () => {
    const manifest = JSON.parse(await readFile(join(import.meta.dirname, "..", "package.json"), "utf8")) as { version: string };
    expect(await ok(runCli(["--version"]))).toBe(`${manifest.version}\n`);
  });

  it("has help with examples for every command", async () => {
    const commands = [
      ["store", "init"],
      ["store", "stats"],
      ...["create", "list", "info", "resize", "snapshot", "clone", "hash", "diff", "delete", "import", "export"].map((name) => ["volume", name]),
      ["gc"],
    ];
    for (const command of commands) {
      const help = await ok(runCli([...command, "--help"]));
      expect(help, command.join(" ")).toMatch(new RegExp(`^Usage: okeanos ${command.join(" ")}`));
      expect(help, command.join(" ")).toMatch(new RegExp(`\\nExamples:\\n  \\$ okeanos .*${command.at(-1) as string}`));
    }
    const top = await ok(runCli(["--help"]));
    expect(top).toMatch(/--store <uri>/);
    expect(top).toMatch(/OKEANOS_STORE/);
    // A bare command group prints its help and fails, as a usage error.
    const bare = await runCli(["volume"]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toMatch(/^Usage: okeanos volume/);
  });
});

describe("commandNamed: which command module main loads", () => {
  it("finds the command after global options, with or without values", () => {
    expect(commandNamed(["volume", "list"])).toBe("volume");
    expect(commandNamed(["--store", "rados:pool", "--ceph-id", "admin", "--json", "nbd", "serve"])).toBe("nbd");
    expect(commandNamed(["--store=file:/x", "server", "list"])).toBe("server");
  });

  it("loads every command for help, a typo (for its suggestion) or no command", () => {
    expect(commandNamed([])).toBeUndefined();
    expect(commandNamed(["--help"])).toBeUndefined();
    expect(commandNamed(["volum", "list"])).toBeUndefined();
    expect(commandNamed(["--store", "volume"])).toBeUndefined();
  });

  it("loads none for --version alone (but all for help, and the command's for its own)", () => {
    expect(asksForVersionOnly(["--version"])).toBe(true);
    expect(asksForVersionOnly(["--store", "file:/x", "-V"])).toBe(true);
    expect(asksForVersionOnly(["--version", "--help"])).toBe(false);
    expect(asksForVersionOnly(["volume", "--version"])).toBe(false);
    expect(asksForVersionOnly([])).toBe(false);
  });
});
