/**
 * The NBD interop suite: real NBD clients — nbdinfo, qemu-io, qemu-img, nbdcopy, nbdsh
 * (python3-libnbd) and fio's nbd engine — against an in-process NbdServer on a unix socket,
 * and one round through the `okeanos nbd serve` command itself, over the store an
 * InteropStore opens: engine/nbd/interop.test.ts runs it on a file store,
 * engine/blocker/rados/nbd-interop-rados.test.ts on rados. With CI=true a missing tool
 * fails the suite; otherwise these tests are skipped with a loud message
 * (engine/nbd/testing/require-tool.ts).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ObjectStore } from "../blocker/object-store.ts";
import { Engine } from "../engine.ts";
import { NbdServer } from "../nbd/server.ts";
import { findTool, requireTools, runTool, runToolOk } from "../nbd/testing/require-tool.ts";

/** Where the suite's engine lives. */
export interface InteropStore {
  /** Opens a new, empty store (the suite initialises it); `dir` is the suite's scratch directory. */
  open(dir: string): Promise<ObjectStore>;
  /** The `okeanos` global options that reach that same store (for `okeanos nbd serve`). */
  cliArgs(dir: string): string[];
}

const KiB = 1024;
const MiB = 1024 * KiB;
const blockSizeBytes = 64 * KiB;
const diskBytes = 32 * MiB;

/** Where "disk" has data; everything else is zero entries (holes). */
const diskDataRanges = [
  { offsetBytes: 0, lengthBytes: MiB },
  { offsetBytes: 4 * MiB, lengthBytes: MiB },
  { offsetBytes: 8 * MiB + 100, lengthBytes: 1000 }, // unaligned: its block is data, with zeros around
];
/** Written after the snapshot "disk-snap": the dirty bitmap against it. */
const dirtyRange = { offsetBytes: 16 * MiB, lengthBytes: MiB };

/** nbdsh is `python3 -m nbd`: the python3 that has python3-libnbd is Debian's own. */
const nbdshEnv = { PATH: `/usr/bin:${process.env["PATH"] ?? ""}` };

async function nbdsh(script: string): Promise<string> {
  const result = await runTool("nbdsh", ["-c", script], { env: nbdshEnv });
  if (result.code !== 0) throw new Error(`nbdsh failed (${result.code}):\n${result.stderr}\n${result.stdout}`);
  return result.stdout;
}

/**
 * Registers the suite's hooks and describe blocks in the current scope: at the top level of
 * a test file its test names are the same whatever the store.
 */
export function describeNbdInterop(store: InteropStore): void {
  const available = requireTools("nbdinfo", "nbdcopy", "nbdsh", "qemu-io", "qemu-img", "fio");

  let dir: string;
  let engine: Engine;
  let server: NbdServer;
  let socketPath: string;
  const disk = Buffer.alloc(diskBytes);

  const uri = (name: string, path = socketPath) => `nbd+unix:///${name}?socket=${path}`;

  /**
   * Reads a whole volume through the engine (the ground truth the clients are compared with),
   * once the server has closed it: the last connection's close flushes it.
   */
  async function engineRead(name: string): Promise<Buffer> {
    const deadline = Date.now() + 10_000;
    while (server.registry.openExports.has(name)) {
      if (Date.now() > deadline) throw new Error(`${name} is still open in the server`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const volume = await engine.openVolume(name, { readOnly: true });
    try {
      return await volume.read(0, volume.sizeBytes);
    } finally {
      await volume.close();
    }
  }

  beforeAll(async () => {
    if (!available) return;
    dir = await mkdtemp(join(tmpdir(), "okeanos-nbd-interop-"));
    engine = await Engine.init(await store.open(dir), { blockSizeBytes });
    for (const name of ["disk", "scratch", "copy-in", "nbdcopy-in", "shared", "cli-vol", "fio-vol"]) await engine.createVolume(name, diskBytes);
    const volume = await engine.openVolume("disk");
    for (const range of diskDataRanges) {
      randomBytes(range.lengthBytes).copy(disk, range.offsetBytes);
      await volume.write(range.offsetBytes, disk.subarray(range.offsetBytes, range.offsetBytes + range.lengthBytes));
    }
    await volume.snapshot("disk-snap");
    disk.fill(0x5a, dirtyRange.offsetBytes, dirtyRange.offsetBytes + dirtyRange.lengthBytes);
    await volume.write(dirtyRange.offsetBytes, disk.subarray(dirtyRange.offsetBytes, dirtyRange.offsetBytes + dirtyRange.lengthBytes));
    await volume.close();
    socketPath = join(dir, "nbd.sock");
    server = new NbdServer({ engine, exports: ["disk", "disk-snap", "scratch", "copy-in", "nbdcopy-in", "shared", "fio-vol"], socketPath });
    await server.listen();
  });

  afterAll(async () => {
    await server?.close();
    await engine?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  describe.skipIf(!available)("nbdinfo", () => {
    interface NbdinfoExport {
      "export-name": string;
      "export-size": number;
      contexts: string[];
      is_read_only: boolean;
      [flag: string]: unknown;
    }

    it("--json: size, flags, block sizes and base:allocation", async () => {
      const info = JSON.parse(await runToolOk("nbdinfo", ["--json", uri("disk")])) as { protocol: string; structured: boolean; exports: NbdinfoExport[] };
      expect(info.protocol).toBe("newstyle-fixed");
      expect(info.structured).toBe(true);
      const [only] = info.exports;
      expect(only).toMatchObject({
        "export-name": "disk",
        "export-size": diskBytes,
        is_read_only: false,
        can_flush: true,
        can_fua: true,
        can_trim: true,
        can_zero: true,
        can_fast_zero: true,
        can_multi_conn: true,
        can_cache: true,
        can_df: true,
        block_size_minimum: 1,
        block_size_preferred: 4096,
        block_size_maximum: 32 * MiB,
      });
      expect(only!.contexts).toContain("base:allocation");
      expect(only!.contexts).toContain("qemu:dirty-bitmap:disk-snap");

      const snapshot = JSON.parse(await runToolOk("nbdinfo", ["--json", uri("disk-snap")])) as { exports: NbdinfoExport[] };
      expect(snapshot.exports[0]).toMatchObject({ is_read_only: true, can_trim: false, can_zero: false, can_fua: false });
    });

    it("--can: 0 for what the export does, 2 for what it does not", async () => {
      expect((await runTool("nbdinfo", ["--can", "flush", uri("disk")])).code).toBe(0);
      expect((await runTool("nbdinfo", ["--can", "trim", uri("disk")])).code).toBe(0);
      expect((await runTool("nbdinfo", ["--can", "trim", uri("disk-snap")])).code).toBe(2);
      expect((await runTool("nbdinfo", ["--is", "readonly", uri("disk-snap")])).code).toBe(0);
    });

    it("--list names every export", async () => {
      const list = JSON.parse(await runToolOk("nbdinfo", ["--list", "--json", `nbd+unix:///?socket=${socketPath}`])) as { exports: NbdinfoExport[] };
      expect(list.exports.map((entry) => entry["export-name"])).toEqual(["disk", "disk-snap", "scratch", "copy-in", "nbdcopy-in", "shared", "fio-vol"]);
      expect(list.exports.find((entry) => entry["export-name"] === "disk")!["export-size"]).toBe(diskBytes);
    });

    it("--map shows holes and data; --map=qemu:dirty-bitmap:SNAP what changed since the snapshot", async () => {
      type MapEntry = { offset: number; length: number; type: number; description: string };
      const allocation = JSON.parse(await runToolOk("nbdinfo", ["--json", "--map", uri("disk")])) as MapEntry[];
      const data = allocation.filter((entry) => entry.type === 0).map((entry) => [entry.offset, entry.length]);
      expect(data).toEqual([
        [0, MiB],
        [4 * MiB, MiB],
        [8 * MiB, blockSizeBytes],
        [16 * MiB, MiB],
      ]);
      expect(allocation.filter((entry) => entry.type !== 0).every((entry) => entry.type === 3)).toBe(true);
      const dirty = JSON.parse(await runToolOk("nbdinfo", ["--json", "--map=qemu:dirty-bitmap:disk-snap", uri("disk")])) as MapEntry[];
      expect(dirty.filter((entry) => entry.type === 1).map((entry) => [entry.offset, entry.length])).toEqual([[dirtyRange.offsetBytes, dirtyRange.lengthBytes]]);
      expect(dirty.at(-1)!.offset + dirty.at(-1)!.length).toBe(diskBytes);
    });
  });

  describe.skipIf(!available)("qemu-io and qemu-img", () => {
    async function qemuIo(name: string, ...commands: string[]): Promise<string> {
      const args = ["-f", "raw", uri(name), ...commands.flatMap((command) => ["-c", command])];
      const result = await runTool("qemu-io", args);
      const output = result.stdout + result.stderr;
      if (result.code !== 0 || /verification failed|error|failed/i.test(output)) throw new Error(`qemu-io ${commands.join("; ")}:\n${output}`);
      return output;
    }

    it("pattern writes and reads: aligned, unaligned, multi-block; flush; write -z; discard reads zeros", async () => {
      await qemuIo(
        "scratch",
        "write -P 0xab 0 1M",
        "read -P 0xab 0 1M",
        "flush",
        "write -P 0x11 4097 100000",
        "read -P 0x11 4097 100000",
        "read -P 0xab 0 4097",
        "write -P 0x22 3145711 3M", // 3 MiB - 17: unaligned and across 49 blocks
        "read -P 0x22 3145711 3M",
        "write -f -P 0x55 2M 64k", // FUA
        "read -P 0x55 2M 64k",
        "read -P 0 6M 2M",
        "write -z 5M 1M",
        "read -P 0 5M 1M",
        "write -z -u 2M 1M",
        "read -P 0 2M 1M",
        "write -z -u -n 7M 1M", // FAST_ZERO: whole blocks, so no fallback is needed
        "read -P 0 7M 1M",
        "discard 0 1M",
        "read -P 0 0 1M",
        "aio_write -P 0x33 10M 64k",
        "aio_write -P 0x44 11M 64k",
        "aio_flush",
        "read -P 0x33 10M 64k",
        "read -P 0x44 11M 64k",
      );
      const content = await engineRead("scratch");
      expect(content.subarray(0, MiB).every((byte) => byte === 0)).toBe(true);
      expect(content.subarray(3 * MiB - 17 + MiB, 3 * MiB - 17 + 2 * MiB).every((byte) => byte === 0x22)).toBe(true);
      expect(content.subarray(5 * MiB, 6 * MiB).every((byte) => byte === 0)).toBe(true);
    });

    it("qemu-io: a snapshot is read-only (READ_ONLY flag) and reads back as it was", async () => {
      const readWrite = await runTool("qemu-io", ["-f", "raw", uri("disk-snap"), "-c", "read 0 512"]);
      expect(readWrite.code).not.toBe(0);
      expect(readWrite.stderr).toMatch(/Permission denied|read-only/i);
      const output = await runToolOk("qemu-io", ["-r", "-f", "raw", uri("disk-snap"), "-c", "read -P 0 16M 1M", "-c", "read -P 0 31M 1M"]);
      expect(output).not.toMatch(/fail/i);
    });

    it("qemu-img info and map: size, holes where the map has zero entries", async () => {
      const info = JSON.parse(await runToolOk("qemu-img", ["info", "--output=json", uri("disk")])) as { "virtual-size": number };
      expect(info["virtual-size"]).toBe(diskBytes);
      const map = JSON.parse(await runToolOk("qemu-img", ["map", "--output=json", uri("disk")])) as Array<{ start: number; length: number; data: boolean; zero: boolean }>;
      expect(map.filter((entry) => entry.data).map((entry) => [entry.start, entry.length])).toEqual([
        [0, MiB],
        [4 * MiB, MiB],
        [8 * MiB, blockSizeBytes],
        [16 * MiB, MiB],
      ]);
      expect(map.filter((entry) => !entry.data).every((entry) => entry.zero)).toBe(true);
    });

    it("qemu-img map with x-dirty-bitmap (qemu's incremental-backup path) sees what changed since the snapshot", async () => {
      const options = `driver=nbd,server.type=unix,server.path=${socketPath},export=disk,x-dirty-bitmap=qemu:dirty-bitmap:disk-snap`;
      const map = JSON.parse(await runToolOk("qemu-img", ["map", "--output=json", "--image-opts", options])) as Array<{ start: number; length: number; data: boolean }>;
      // qemu reads the bitmap in place of base:allocation: dirty extents show as "not data".
      expect(map.filter((entry) => !entry.data).map((entry) => [entry.start, entry.length])).toEqual([[dirtyRange.offsetBytes, dirtyRange.lengthBytes]]);
    });

    it("qemu-img convert out to a sparse raw file, in from it, and compare", async () => {
      const raw = join(dir, "disk.raw");
      await runToolOk("qemu-img", ["convert", "-f", "raw", "-O", "raw", uri("disk"), raw]);
      expect((await readFile(raw)).equals(disk)).toBe(true);
      const stats = await stat(raw);
      expect(stats.blocks * 512).toBeLessThan(8 * MiB); // 3 MiB + a block of data; the rest are holes
      await runToolOk("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", raw, uri("copy-in")]);
      await runToolOk("qemu-img", ["compare", "-f", "raw", "-F", "raw", raw, uri("copy-in")]);
      expect((await engineRead("copy-in")).equals(disk)).toBe(true);
      const copied = JSON.parse(await runToolOk("qemu-img", ["map", "--output=json", uri("copy-in")])) as Array<{ data: boolean }>;
      expect(copied.filter((entry) => entry.data).length).toBeLessThanOrEqual(4); // holes stayed holes
    });
  });

  describe.skipIf(!available)("nbdcopy", () => {
    it("round trip: export → file → export over 4 connections", async () => {
      const raw = join(dir, "nbdcopy.raw");
      await writeFile(raw, Buffer.alloc(0));
      await runToolOk("nbdcopy", [uri("disk"), raw]);
      expect((await readFile(raw)).equals(disk)).toBe(true);
      await runToolOk("nbdcopy", ["--connections", "4", "--flush", raw, uri("nbdcopy-in")]);
      expect((await engineRead("nbdcopy-in")).equals(disk)).toBe(true);
      await runToolOk("nbdcopy", ["--connections", "4", uri("disk"), uri("nbdcopy-in")]);
    });
  });

  describe.skipIf(!available)("nbdsh (python3-libnbd)", () => {
    it("structured reads with holes, block status, FUA, flush, trim and zero read back zeros", async () => {
      const out = await nbdsh(`
h.add_meta_context("base:allocation")
h.connect_uri("${uri("shared")}")
assert h.can_meta_context("base:allocation")
h.pwrite(b"\\x07" * 70000, 3 * 65536, nbd.CMD_FLAG_FUA)
chunks = []
def chunk(buf, offset, status, err):
    chunks.append((offset, len(buf), status, bytes(buf[:1])))
    return 0
h.pread_structured(2 * 1024 * 1024, 0, chunk)
assert chunks == [(0, 196608, nbd.READ_HOLE, b"\\x00"), (196608, 131072, nbd.READ_DATA, b"\\x07"), (327680, 1769472, nbd.READ_HOLE, b"\\x00")], chunks
chunks.clear()
h.pread_structured(2 * 1024 * 1024, 0, chunk, nbd.CMD_FLAG_DF)
assert len(chunks) == 1 and chunks[0][2] == nbd.READ_DATA, chunks
extents = []
def extent(context, offset, entries, err):
    extents.append((context, offset, list(entries)))
    return 0
h.block_status(1024 * 1024, 0, extent)
assert extents == [("base:allocation", 0, [196608, 3, 131072, 0, 720896, 3])], extents
h.flush()
h.trim(65536, 3 * 65536)
assert h.pread(65536, 3 * 65536) == bytes(65536)
h.zero(100, 4 * 65536 + 10, nbd.CMD_FLAG_NO_HOLE)
buf = h.pread(200, 4 * 65536)
assert buf[:10] == b"\\x07" * 10 and buf[10:110] == bytes(100) and buf[110:] == b"\\x07" * 90, buf
h.zero(65536, 4 * 65536, nbd.CMD_FLAG_FAST_ZERO)
assert h.pread(65536, 4 * 65536) == bytes(65536)
print("ok")
`);
      expect(out.trim()).toBe("ok");
    });

    it("with strict mode off: reads past the end and oversize requests fail cleanly, the connection survives", async () => {
      const out = await nbdsh(`
import errno
h.set_strict_mode(0)
h.connect_uri("${uri("shared")}")
size = h.get_size()
for count, offset in [(10, size - 5), (1, size), (33 * 1024 * 1024, 0)]:
    try:
        h.pread(count, offset)
        raise AssertionError("pread %d at %d succeeded" % (count, offset))
    except nbd.Error as e:
        assert e.errnum == errno.EINVAL, e
try:
    h.pwrite(b"x" * 10, size - 5)
    raise AssertionError("write past the end succeeded")
except nbd.Error as e:
    assert e.errnum == errno.ENOSPC, e
assert len(h.pread(512, 0)) == 512
print("ok")
`);
      expect(out.trim()).toBe("ok");
    });

    it("two connections see each other's writes (multi-conn), and a FLUSH on one covers both", async () => {
      const out = await nbdsh(`
h2 = nbd.NBD()
h.connect_uri("${uri("shared")}")
h2.connect_uri("${uri("shared")}")
assert h.can_multi_conn() and h2.can_multi_conn()
h.pwrite(b"A" * 4096, 20 * 65536)
assert h2.pread(4096, 20 * 65536) == b"A" * 4096
h2.pwrite(b"B" * 4096, 20 * 65536 + 4096)
h.flush()
assert h.pread(8192, 20 * 65536) == b"A" * 4096 + b"B" * 4096
h2.shutdown()
print("ok")
`);
      expect(out.trim()).toBe("ok");
      expect((await engineRead("shared")).subarray(20 * blockSizeBytes, 20 * blockSizeBytes + 8192).toString()).toBe("A".repeat(4096) + "B".repeat(4096));
    });

    it("a client killed mid-transfer leaves the server serving", async () => {
      // 64 reads of 1 MiB in flight, then SIGKILL: replies are queued for a dead socket.
      const killed = await runTool(
        "nbdsh",
        [
          "-c",
          `
import os, signal
h.connect_uri("${uri("disk")}")
buffers = [nbd.Buffer(1024 * 1024) for i in range(64)]
for i, buffer in enumerate(buffers):
    h.aio_pread(buffer, (i % 32) * 1024 * 1024)
h.poll(0)
os.kill(os.getpid(), signal.SIGKILL)
`,
        ],
        { env: nbdshEnv },
      );
      expect(killed.signal, killed.stderr).toBe("SIGKILL");
      const child = spawn("nbdcopy", ["--no-extents", "--connections", "4", uri("disk"), "null:"], { stdio: "ignore" });
      const exited = new Promise((resolve) => child.once("exit", resolve));
      await new Promise((resolve) => setTimeout(resolve, 50));
      child.kill("SIGKILL");
      await exited;
      const info = JSON.parse(await runToolOk("nbdinfo", ["--json", uri("disk")])) as { exports: Array<{ "export-size": number }> };
      expect(info.exports[0]!["export-size"]).toBe(diskBytes);
      const raw = join(dir, "after-kill.raw");
      await runToolOk("nbdcopy", [uri("disk"), raw]);
      expect((await readFile(raw)).equals(disk)).toBe(true);
    });
  });

  describe.skipIf(!available)("fio's nbd engine", () => {
    it("random writes at queue depth 32, verified by reading back", async () => {
      const output = await runToolOk("fio", [
        "--name=verify",
        "--ioengine=nbd",
        `--uri=${uri("fio-vol")}`,
        "--rw=randwrite",
        "--bs=4k",
        "--size=4M",
        "--iodepth=32",
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_state_save=0", // no state file in the working directory
        "--output-format=json",
      ]);
      const result = JSON.parse(output.slice(output.indexOf("{"))) as { jobs: Array<{ error: number; write: { io_bytes: number } }> };
      expect(result.jobs[0]!.error).toBe(0);
      expect(result.jobs[0]!.write.io_bytes).toBe(4 * MiB);
    });
  });

  describe.skipIf(!available)("okeanos nbd serve", () => {
    it("serves until SIGTERM, then flushes, unlocks and exits 0", async () => {
      const cliSocket = join(dir, "cli.sock");
      const entry = join(import.meta.dirname, "..", "..", "bin", "okeanos.js");
      const child = spawn(process.execPath, [entry, ...store.cliArgs(dir), "nbd", "serve", "cli-vol", "--socket", cliSocket], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      const deadline = Date.now() + 20_000;
      while (!stdout.includes("SIGINT or SIGTERM")) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`okeanos nbd serve did not start:\n${stdout}\n${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(stdout).toContain(uri("cli-vol", cliSocket));
      await runToolOk("qemu-io", ["-f", "raw", uri("cli-vol", cliSocket), "-c", "write -P 0x6b 1M 1M", "-c", "read -P 0x6b 1M 1M"]);
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      expect(stderr).toContain("shutting down");
      const content = await engineRead("cli-vol");
      expect(content.subarray(MiB, 2 * MiB).every((byte) => byte === 0x6b)).toBe(true);
      expect(findTool("qemu-io")).toBeDefined();
    });
  });
}
