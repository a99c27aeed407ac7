/**
 * The crash test's runner, for any persistent backend: a child process (crash-child.ts)
 * writes, zeroes, flushes and snapshots volume `v` and is killed with SIGKILL at a random
 * moment. After each kill:
 * - every byte acknowledged by a completed flush (or snapshot) reads back unchanged;
 *   only ranges touched after the last durable point may differ;
 * - every snapshot that exists reads exactly as the volume did when it was taken, and
 *   every acknowledged snapshot exists;
 * - every map entry names an existing object;
 * - gc with no grace period then removes only unreferenced objects: all of the above
 *   still holds afterwards.
 * Rounds continue on the same store, so later rounds start from a crashed state.
 * engine/crash.test.ts runs it on the file backend, engine/blocker/rados/crash-rados.test.ts
 * on rados. CRASH_SEED replays a run.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { expect } from "vitest";
import type { ObjectStore } from "../blocker/object-store.ts";
import { Engine } from "../engine.ts";
import { crashBlockSizeBytes, crashOps, crashVolumeBytes, replay, touchedRanges } from "./crash-ops.ts";

const childScript = join(import.meta.dirname, "crash-child.ts");

/** The store the child crashes on. */
export interface CrashStore {
  /** Opens it, here (called again for every check). */
  open(): Promise<ObjectStore>;
  /** The store as crash-child.ts's STORE argument (a URI or a directory) … */
  childStore: string;
  /** … and the child's environment on top of ours (e.g. CEPH_CONF). */
  childEnv?: Record<string, string>;
  /**
   * After each kill, before the checks: e.g. break the dead child's volume lock where it
   * is a lease that outlives its holder (the kernel drops a file lock at once).
   */
  afterKill?(engine: Engine): Promise<void>;
}

interface ChildRun {
  /** Last operation whose `done` was seen and which made everything before it durable. */
  lastDurable: number;
  /** Last operation that may have started. */
  lastStarted: number;
}

/** Initialises the store with volume `v`, then runs `rounds` kill-and-check rounds on it. */
export async function runCrashRounds(store: CrashStore, rounds: number): Promise<void> {
  const engine = await Engine.init(await store.open(), { blockSizeBytes: crashBlockSizeBytes });
  await engine.createVolume("v", crashVolumeBytes);
  await engine.close();

  const baseSeed = Number(process.env["CRASH_SEED"] ?? Date.now() % 100000);
  let baseline: Buffer = Buffer.alloc(crashVolumeBytes);
  const allSnapshots = new Map<string, Buffer>();
  for (let round = 0; round < rounds; round++) {
    const seed = baseSeed + round;
    const killAfterOps = 10 + ((seed * 7919) % 300);
    const run = await runChildUntilKilled(store, seed, killAfterOps);
    const context = `seed ${seed} (CRASH_SEED=${baseSeed}), durable ${run.lastDurable}, started ${run.lastStarted}`;
    const expected = Buffer.from(baseline);
    replay(seed, run.lastDurable, expected);
    const possibleSnapshots = replay(seed, run.lastStarted, Buffer.from(baseline));
    const acknowledged = new Set([...replay(seed, run.lastDurable, Buffer.from(baseline)).keys()]);
    for (const [name, content] of possibleSnapshots) allSnapshots.set(name, content);
    const uncertain = touchedRanges(seed, run.lastDurable + 1, run.lastStarted);
    try {
      if (store.afterKill !== undefined) await withEngine(store, store.afterKill);
      baseline = await verifyStore(store, expected, uncertain, allSnapshots, acknowledged);
      await withEngine(store, (gcEngine) => gcEngine.gc({ graceMs: 0 }));
      await verifyStore(store, baseline, [], allSnapshots, acknowledged);
    } catch (error) {
      throw new Error(`${context}: ${(error as Error).message}`, { cause: error });
    }
    // Unacknowledged snapshots that did not survive are forgotten.
    const names = await withEngine(store, async (listing) => new Set((await listing.list()).map((entry) => entry.name)));
    for (const name of [...allSnapshots.keys()]) if (!names.has(name)) allSnapshots.delete(name);
  }
}

/** Runs the child until it has completed `killAfterOps` operations (then SIGKILL). */
async function runChildUntilKilled(store: CrashStore, seed: number, killAfterOps: number): Promise<ChildRun> {
  const child = spawn(process.execPath, [childScript, store.childStore, String(seed)], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...store.childEnv },
  });
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

async function withEngine<T>(store: CrashStore, body: (engine: Engine) => Promise<T>): Promise<T> {
  const engine = await Engine.open(await store.open());
  try {
    return await body(engine);
  } finally {
    await engine.close();
  }
}

async function verifyStore(
  store: CrashStore,
  expected: Buffer,
  uncertain: Array<[number, number]>,
  snapshots: Map<string, Buffer>,
  mustExist: Set<string>,
): Promise<Buffer> {
  return withEngine(store, async (engine) => {
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
  });
}
