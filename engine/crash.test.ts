/**
 * Crash test: a child process writes, zeroes, flushes and snapshots a volume on the file
 * backend and is killed with SIGKILL at a random moment. After each kill:
 * - every byte acknowledged by a completed flush (or snapshot) reads back unchanged;
 *   only ranges touched after the last durable point may differ;
 * - every snapshot that exists reads exactly as the volume did when it was taken, and
 *   every acknowledged snapshot exists;
 * - every map entry names an existing object;
 * - gc with no grace period then removes only unreferenced objects: all of the above
 *   still holds afterwards.
 * Rounds continue on the same store, so later rounds start from a crashed state.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileObjectStore } from "./blocker/file.ts";
import { Engine } from "./engine.ts";
import { crashBlockSizeBytes, crashOps, crashVolumeBytes, replay, touchedRanges } from "./testing/crash-ops.ts";

const rounds = Number(process.env["CRASH_ROUNDS"] ?? 8);
const childScript = join(import.meta.dirname, "testing", "crash-child.ts");

interface ChildRun {
  /** Last operation whose `done` was seen and which made everything before it durable. */
  lastDurable: number;
  /** Last operation that may have started. */
  lastStarted: number;
}

/** Runs the child until it has completed `killAfterOps` operations (then SIGKILL). */
async function runChildUntilKilled(dir: string, seed: number, killAfterOps: number): Promise<ChildRun> {
  const child = spawn(process.execPath, [childScript, dir, String(seed)], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const ops = crashOps(seed);
  const kinds: string[] = [""];
  const run: ChildRun = { lastDurable: 0, lastStarted: 0 };
  const lines = createInterface({ input: child.stdout });
  for await (const line of lines) {
    const [word, number] = line.split(" ");
    const n = Number(number);
    if (word === "start") run.lastStarted = n;
    if (word === "done") {
      while (kinds.length <= n) kinds.push(ops.next().value.kind);
      if (kinds[n] === "flush" || kinds[n] === "snapshot") run.lastDurable = n;
      // Keep reading after the kill: lines the child wrote before dying still count.
      if (n >= killAfterOps && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  }
  const code = await exited;
  if (code !== null) throw new Error(`crash child exited by itself (${code}): ${stderr}`);
  return run;
}

async function verifyStore(dir: string, expected: Buffer, uncertain: Array<[number, number]>, snapshots: Map<string, Buffer>, mustExist: Set<string>): Promise<Buffer> {
  const engine = await Engine.open(await FileObjectStore.open(dir));
  try {
    const volume = await engine.openVolume("v", { readOnly: true });
    const actual = await volume.read(0, crashVolumeBytes);
    await volume.close();
    const certain = Buffer.alloc(crashVolumeBytes, 1);
    for (const [start, end] of uncertain) certain.fill(0, start, end);
    for (let i = 0; i < crashVolumeBytes; i++) {
      if (certain[i] === 1 && actual[i] !== expected[i]) throw new Error(`byte ${i} lost: ${actual[i]} instead of ${expected[i]}`);
    }
    const names = new Set((await engine.list()).map((entry) => entry.name));
    for (const [name, content] of snapshots) {
      if (!names.has(name)) {
        expect(mustExist.has(name), `acknowledged snapshot ${name} is missing`).toBe(false);
        continue;
      }
      const snapshot = await engine.openVolume(name);
      expect((await snapshot.read(0, crashVolumeBytes)).equals(content), `snapshot ${name} content`).toBe(true);
      await snapshot.close();
    }
    for (const entry of await engine.list()) {
      const { entries } = await engine.maps.loadMap(entry.name);
      for (let index = 0; index < entries.count; index++) {
        const object = entries.objectName(index);
        if (object !== undefined) expect(await engine.objects.stat(object), `${entry.name}[${index}] → ${object}`).toBeDefined();
      }
    }
    return actual;
  } finally {
    await engine.close();
  }
}

describe("crash safety (SIGKILL)", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "okeanos-crash-"));
    const engine = await Engine.init(await FileObjectStore.open(dir), { blockSizeBytes: crashBlockSizeBytes });
    await engine.createVolume("v", crashVolumeBytes);
    await engine.close();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it(`keeps every flushed byte across ${rounds} kills, and gc afterwards frees only garbage`, async () => {
    const baseSeed = Number(process.env["CRASH_SEED"] ?? Date.now() % 100000);
    let baseline: Buffer = Buffer.alloc(crashVolumeBytes);
    const allSnapshots = new Map<string, Buffer>();
    for (let round = 0; round < rounds; round++) {
      const seed = baseSeed + round;
      const killAfterOps = 10 + ((seed * 7919) % 300);
      const run = await runChildUntilKilled(dir, seed, killAfterOps);
      const context = `seed ${seed} (CRASH_SEED=${baseSeed}), durable ${run.lastDurable}, started ${run.lastStarted}`;
      const expected = Buffer.from(baseline);
      replay(seed, run.lastDurable, expected);
      const possibleSnapshots = replay(seed, run.lastStarted, Buffer.from(baseline));
      const acknowledged = new Set([...replay(seed, run.lastDurable, Buffer.from(baseline)).keys()]);
      for (const [name, content] of possibleSnapshots) allSnapshots.set(name, content);
      const uncertain = touchedRanges(seed, run.lastDurable + 1, run.lastStarted);
      try {
        baseline = await verifyStore(dir, expected, uncertain, allSnapshots, acknowledged);
        const engine = await Engine.open(await FileObjectStore.open(dir));
        await engine.gc({ graceMs: 0 });
        await engine.close();
        await verifyStore(dir, baseline, [], allSnapshots, acknowledged);
      } catch (error) {
        throw new Error(`${context}: ${(error as Error).message}`, { cause: error });
      }
      // Unacknowledged snapshots that did not survive are forgotten.
      const engine = await Engine.open(await FileObjectStore.open(dir));
      const names = new Set((await engine.list()).map((entry) => entry.name));
      await engine.close();
      for (const name of [...allSnapshots.keys()]) if (!names.has(name)) allSnapshots.delete(name);
    }
  });
});
