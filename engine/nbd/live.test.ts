/**
 * A served volume, live, end to end through the real processes (issue 3):
 *
 * - `okeanos volume snapshot` of a volume `okeanos nbd serve` holds, while an nbdsh client
 *   writes to it without pause: the CLI reaches the server through its control socket, the
 *   writer sees no error, each snapshot holds exactly the writes up to some point (the writes
 *   are sequential generations, so it must hold a prefix of them), and later writes are not
 *   in it. `volume resize` goes the same way.
 * - Restart safety: the server is stopped (SIGTERM) and started again under a qemu-io that
 *   connected with `reconnect-delay`, once while it sleeps and once while it writes without
 *   pause; qemu reconnects, every command succeeds, and the data is all there. A server killed
 *   outright (SIGKILL) is replaced too: its socket file is stale, its lock gone with it.
 *
 * With CI=true a missing tool fails the suite; otherwise it is skipped loudly.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Engine } from "../engine.ts";
import { openObjectStore } from "../blocker/open-store.ts";
import { requireTools, runTool } from "./testing/require-tool.ts";

const available = requireTools("nbdsh", "qemu-io", "stdbuf");

const KiB = 1024;
const MiB = 1024 * KiB;
const blockSizeBytes = 64 * KiB;
const volumeBytes = 8 * MiB;
/** The writer cycles over 128 chunks of 16 KiB (2 MiB, 4 chunks per block), so every round overwrites the last. */
const chunkBytes = 16 * KiB;
const chunks = 128;
const cliEntry = join(import.meta.dirname, "..", "..", "bin", "okeanos.js");
/** nbdsh is `python3 -m nbd`: the python3 that has python3-libnbd is Debian's own. */
const nbdshEnv = { PATH: `/usr/bin:${process.env["PATH"] ?? ""}` };

let dir: string;
let storeDir: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  if (!available) return;
  dir = await mkdtemp(join(tmpdir(), "okeanos-nbd-live-"));
  storeDir = join(dir, "store");
  const engine = await Engine.init(await openObjectStore(`file:${storeDir}`, { create: true }), { blockSizeBytes });
  for (const name of ["live", "restart-idle", "restart-killed", "restart-busy"]) await engine.createVolume(name, volumeBytes);
  await engine.close();
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

// ── processes ────────────────────────────────────────────────────────────────

interface Proc {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number>;
  /** Resolves once `pattern` matches stdout; rejects if the process exits first or time runs out. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

function start(command: string, args: readonly string[], env: Record<string, string> = {}): Proc {
  const child = spawn(command, [...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, OKEANOS_STORE: undefined, ...env } });
  children.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number>((resolve) => child.once("exit", (code, signal) => resolve(code ?? 128 + (signal === "SIGKILL" ? 9 : 15))));
  let done = false;
  void exited.then(() => (done = true));
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    async waitFor(pattern, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = pattern.exec(stdout);
        if (match !== null) return match;
        if (done || Date.now() > deadline) {
          throw new Error(`${command} ${done ? "exited" : "timed out"} before printing ${pattern}:\n${stdout.slice(-2000)}\n${stderr.slice(-2000)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
  };
}

/** `okeanos nbd serve NAME --socket PATH`, once it listens; its pid is the one the lock names. */
async function serve(name: string, socketPath: string): Promise<Proc & { controlSocket: string }> {
  const server = start(process.execPath, [cliEntry, "--store", `file:${storeDir}`, "nbd", "serve", name, "--socket", socketPath]);
  await server.waitFor(/SIGINT or SIGTERM/);
  const control = /^Control socket: (\S+)/m.exec(server.stdout());
  expect(control, server.stdout()).not.toBeNull();
  return { ...server, controlSocket: (control as RegExpExecArray)[1] as string };
}

async function stop(server: Proc): Promise<void> {
  server.child.kill("SIGTERM");
  expect(await server.exited, server.stderr()).toBe(0);
}

function okeanos(...args: string[]) {
  return runTool(process.execPath, [cliEntry, "--store", `file:${storeDir}`, ...args]);
}

async function readThroughEngine(name: string): Promise<Buffer> {
  const engine = await Engine.open(await openObjectStore(`file:${storeDir}`));
  try {
    const volume = await engine.openVolume(name, { readOnly: true });
    try {
      return await volume.read(0, volume.sizeBytes);
    } finally {
      await volume.close();
    }
  } finally {
    await engine.close();
  }
}

// ── the writer's generations ─────────────────────────────────────────────────

/**
 * Generation g (1, 2, 3…) writes chunk (g − 1) mod 128, filled with the pair (g, index) in
 * every 8 bytes. The writes are sequential — each starts after the previous one's reply — so a
 * state the volume passed through is "every generation up to G, none after".
 */
function chunkOf(generation: number, index: number): Buffer {
  const out = Buffer.alloc(chunkBytes);
  for (let offset = 0; offset < chunkBytes; offset += 8) {
    out.writeUInt32LE(generation, offset);
    out.writeUInt32LE(index, offset + 4);
  }
  return out;
}

/** The region after generations 1..G: each chunk holds the last generation that wrote it, or zeros. */
function regionAfter(generations: number): Buffer {
  const region = Buffer.alloc(chunks * chunkBytes);
  for (let index = 0; index < chunks; index++) {
    if (generations < index + 1) continue;
    const last = index + 1 + Math.floor((generations - (index + 1)) / chunks) * chunks;
    chunkOf(last, index).copy(region, index * chunkBytes);
  }
  return region;
}

/** The G whose state `content` is, or a failure naming the first chunk that does not fit. */
function generationsIn(content: Buffer): number {
  let newest = 0;
  for (let index = 0; index < chunks; index++) newest = Math.max(newest, content.readUInt32LE(index * chunkBytes));
  const expected = regionAfter(newest);
  for (let index = 0; index < chunks; index++) {
    const at = index * chunkBytes;
    const actual = content.subarray(at, at + chunkBytes);
    if (!actual.equals(expected.subarray(at, at + chunkBytes))) {
      throw new Error(`not a prefix of the writes: newest generation ${newest}, but chunk ${index} holds generation ${actual.readUInt32LE(0)} (expected ${expected.readUInt32LE(at)})`);
    }
  }
  expect(content.subarray(chunks * chunkBytes).every((byte) => byte === 0)).toBe(true);
  return newest;
}

const writerScript = (uri: string, stopPath: string) => `
import os, struct
h.connect_uri(${JSON.stringify(uri)})
generation = 0
while not os.path.exists(${JSON.stringify(stopPath)}) and generation < 10000000:
    index = generation % ${chunks}
    generation += 1
    h.pwrite(struct.pack("<II", generation, index) * ${chunkBytes / 8}, index * ${chunkBytes})
    if generation % 8 == 0:
        print("generation", generation, flush=True)
h.flush()
print("done", generation, flush=True)
h.shutdown()
`;

/** The writer's last reported generation (every write up to it has been acknowledged). */
function progressOf(writer: Proc): number {
  const all = [...writer.stdout().matchAll(/^generation (\d+)$/gm)];
  return all.length === 0 ? 0 : Number(all.at(-1)?.[1]);
}

async function writerReaches(writer: Proc, generation: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (progressOf(writer) < generation) {
    if (writer.child.exitCode !== null || Date.now() > deadline) throw new Error(`the writer stopped at ${progressOf(writer)}:\n${writer.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// ── the tests ────────────────────────────────────────────────────────────────

describe.skipIf(!available)("okeanos volume snapshot of a served volume", () => {
  it(
    "is taken by the serving process between requests while a client writes without pause: each snapshot is a prefix of the writes",
    async () => {
      const socketPath = join(dir, "live.sock");
      const server = await serve("live", socketPath);
      const stopPath = join(dir, "live.stop");
      const writer = start("nbdsh", ["-c", writerScript(`nbd+unix:///live?socket=${socketPath}`, stopPath)], nbdshEnv);

      await writerReaches(writer, 3 * chunks); // three rounds: later writes overwrite earlier ones
      const before1 = progressOf(writer);
      const first = await okeanos("volume", "snapshot", "live", "live-1");
      expect(first.code, first.stderr).toBe(0);
      expect(first.stdout).toBe(`Snapshot live-1 of live taken by the serving process ${server.child.pid} (8 MiB; no data copied)\n`);
      const after1 = progressOf(writer);

      await writerReaches(writer, after1 + 2 * chunks);
      const before2 = progressOf(writer);
      const second = await okeanos("--json", "volume", "snapshot", "live", "live-2");
      expect(second.code, second.stderr).toBe(0);
      expect(JSON.parse(second.stdout)).toMatchObject({ name: "live-2", kind: "snapshot", frozen: true, sizeBytes: volumeBytes });

      // The server's refusals come back as the CLI's own: EEXISTS is exit code 11.
      const taken = await okeanos("volume", "snapshot", "live", "live-1");
      expect(taken.code).toBe(11);
      expect(taken.stderr).toBe("okeanos: live-1 already exists\n");
      const grown = await okeanos("volume", "resize", "live", "--size", "16M");
      expect(grown.code, grown.stderr).toBe(0);
      expect(grown.stdout).toContain(`Resized live from 8 MiB to 16 MiB by the serving process ${server.child.pid}`);

      await writerReaches(writer, progressOf(writer) + chunks);
      await writeFile(stopPath, "");
      expect(await writer.exited, writer.stderr()).toBe(0);
      const total = Number((/^done (\d+)$/m.exec(writer.stdout()) as RegExpExecArray)[1]);
      await stop(server);

      const generations1 = generationsIn(await readThroughEngine("live-1"));
      const generations2 = generationsIn(await readThroughEngine("live-2"));
      const final = await readThroughEngine("live");
      expect(final.length).toBe(16 * MiB);
      expect(generationsIn(final.subarray(0, volumeBytes))).toBe(total);
      expect(final.subarray(volumeBytes).every((byte) => byte === 0)).toBe(true);
      // Writes acknowledged before the CLI started are in; writes after the snapshot are not.
      expect(generations1).toBeGreaterThanOrEqual(before1);
      expect(generations2).toBeGreaterThanOrEqual(before2);
      expect(generations2).toBeGreaterThan(generations1);
      expect(total).toBeGreaterThan(generations2);
    },
    180_000,
  );

  it("without a server holding the volume the CLI snapshots directly; a lock held by a process with no control socket stands", async () => {
    const direct = await okeanos("volume", "snapshot", "restart-idle", "restart-idle-0");
    expect(direct.stdout).toBe("Snapshot restart-idle-0 of restart-idle taken (8 MiB; no data copied)\n");
    // This process holds the lock and has no control socket: the lock error stands.
    const engine = await Engine.open(await openObjectStore(`file:${storeDir}`));
    try {
      const volume = await engine.openVolume("restart-idle", { owner: "test" });
      try {
        const refused = await okeanos("volume", "snapshot", "restart-idle", "restart-idle-1");
        expect(refused.code).toBe(12);
        expect(refused.stderr).toMatch(/^okeanos: restart-idle is open for writing by test \(pid \d+ on /);
      } finally {
        await volume.close();
      }
    } finally {
      await engine.close();
    }
  }, 60_000);
});

describe.skipIf(!available)("restart under a reconnecting qemu", () => {
  const imageOpts = (socketPath: string, name: string) =>
    `driver=nbd,server.type=unix,server.path=${socketPath},export=${name},reconnect-delay=20`;

  it(
    "the server restarts while qemu-io sleeps; its next commands succeed",
    async () => {
      const socketPath = join(dir, "restart-idle.sock");
      let server = await serve("restart-idle", socketPath);
      const qemu = start("stdbuf", [
        "-oL",
        "qemu-io",
        "--image-opts",
        imageOpts(socketPath, "restart-idle"),
        ...["-c", "write -P 1 0 64k", "-c", "sleep 3000", "-c", "write -P 2 64k 64k", "-c", "read -P 1 0 64k", "-c", "read -P 2 64k 64k"],
      ]);
      await qemu.waitFor(/^wrote 65536\/65536 bytes at offset 0$/m);
      await stop(server); // graceful: in-flight requests answered, flushed, the lock released
      server = await serve("restart-idle", socketPath);
      expect(await qemu.exited, `${qemu.stdout()}\n${qemu.stderr()}`).toBe(0);
      expect(qemu.stdout()).toMatch(/^wrote 65536\/65536 bytes at offset 65536$/m);
      expect(qemu.stdout()).toMatch(/^read 65536\/65536 bytes at offset 65536$/m);
      expect(`${qemu.stdout()}${qemu.stderr()}`).not.toMatch(/fail|error/i);
      await stop(server);
      const content = await readThroughEngine("restart-idle");
      expect(content.subarray(0, 64 * KiB).every((byte) => byte === 1)).toBe(true);
      expect(content.subarray(64 * KiB, 128 * KiB).every((byte) => byte === 2)).toBe(true);
    },
    120_000,
  );

  it(
    "a killed server is replaced: its stale socket file is removed, qemu-io reconnects, flushed data is there",
    async () => {
      const socketPath = join(dir, "restart-killed.sock");
      let server = await serve("restart-killed", socketPath);
      const qemu = start("stdbuf", [
        "-oL",
        "qemu-io",
        "--image-opts",
        imageOpts(socketPath, "restart-killed"),
        // The small read after the flush prints once the flush is done (flush prints nothing).
        ...["-c", "write -P 3 0 64k", "-c", "flush", "-c", "read -P 3 0 4k", "-c", "sleep 3000"],
        ...["-c", "write -P 4 64k 64k", "-c", "read -P 3 0 64k", "-c", "read -P 4 64k 64k"],
      ]);
      await qemu.waitFor(/^read 4096\/4096 bytes at offset 0$/m);
      server.child.kill("SIGKILL"); // no shutdown: the socket file stays, the kernel drops the lock
      expect(await server.exited).toBe(128 + 9);
      server = await serve("restart-killed", socketPath);
      expect(await qemu.exited, `${qemu.stdout()}\n${qemu.stderr()}`).toBe(0);
      expect(`${qemu.stdout()}${qemu.stderr()}`).not.toMatch(/fail|error/i);
      await stop(server);
      const content = await readThroughEngine("restart-killed");
      expect(content.subarray(0, 64 * KiB).every((byte) => byte === 3)).toBe(true);
      expect(content.subarray(64 * KiB, 128 * KiB).every((byte) => byte === 4)).toBe(true);
    },
    120_000,
  );

  it(
    "the server restarts while qemu-io writes without pause: no command fails, every write is there",
    async () => {
      const socketPath = join(dir, "restart-busy.sock");
      let server = await serve("restart-busy", socketPath);
      const writes = 120;
      const pattern = (index: number) => (index % 250) + 1;
      const commands: string[] = [];
      for (let index = 0; index < writes; index++) commands.push("-c", `write -P ${pattern(index)} ${index * 64 * KiB} 64k`, "-c", "sleep 20");
      for (let index = 0; index < writes; index++) commands.push("-c", `read -P ${pattern(index)} ${index * 64 * KiB} 64k`);
      const qemu = start("stdbuf", ["-oL", "qemu-io", "--image-opts", imageOpts(socketPath, "restart-busy"), ...commands]);
      await qemu.waitFor(new RegExp(`^wrote 65536/65536 bytes at offset ${20 * 64 * KiB}$`, "m"));
      await stop(server);
      const writtenDuringOutage = [...qemu.stdout().matchAll(/^wrote /gm)].length;
      server = await serve("restart-busy", socketPath);
      expect(await qemu.exited, `${qemu.stdout().slice(-3000)}\n${qemu.stderr()}`).toBe(0);
      expect([...qemu.stdout().matchAll(/^wrote 65536\/65536 bytes/gm)].length).toBe(writes);
      expect([...qemu.stdout().matchAll(/^read 65536\/65536 bytes/gm)].length).toBe(writes);
      expect(`${qemu.stdout()}${qemu.stderr()}`).not.toMatch(/fail|error/i);
      expect(writtenDuringOutage).toBeLessThan(writes); // the restart happened while it was writing
      await stop(server);
      const content = await readThroughEngine("restart-busy");
      for (let index = 0; index < writes; index++) {
        const chunk = content.subarray(index * 64 * KiB, (index + 1) * 64 * KiB);
        expect(chunk.every((byte) => byte === pattern(index)), `chunk ${index}`).toBe(true);
      }
    },
    120_000,
  );
});
