/**
 * engine/crash.test.ts on the rados backend: a child process writes, zeroes, flushes and
 * snapshots a volume and is killed with SIGKILL at a random moment; after each kill every
 * flushed byte, every acknowledged snapshot and every map entry's object must be there,
 * and gc with no grace period must remove only garbage. Rounds continue on the same store.
 *
 * One difference from the file backend: a killed holder's volume lock is a lease (30 s),
 * not an flock the kernel drops. Each round therefore breaks the dead child's lock, as an
 * operator would (`volume unlock --force`), which also fences (blocklists) that client.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { expect, it } from "vitest";
import { Engine } from "../../engine.ts";
import { crashBlockSizeBytes, crashOps, crashVolumeBytes, replay, touchedRanges } from "../../testing/crash-ops.ts";
import { RadosObjectStore } from "./rados.ts";
import { describeRados, testNamespace, type RadosTarget } from "./testing/target.ts";

/** Fewer rounds than the file backend's 8: each starts a Node child and a RADOS connection. */
const rounds = Number(process.env["CRASH_ROUNDS"] ?? 5);
const childScript = join(import.meta.dirname, "testing", "crash-child.ts");

interface ChildRun {
  lastDurable: number;
  lastStarted: number;
}

async function runChildUntilKilled(target: RadosTarget, namespace: string, seed: number, killAfterOps: number): Promise<ChildRun> {
  const child = spawn(process.execPath, [childScript, target.pool, namespace, String(seed)], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, CEPH_CONF: target.cephConf },
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const ops = crashOps(seed);
  const kinds: string[] = [""];
  const run: ChildRun = { lastDurable: 0, lastStarted: 0 };
  for await (const line of createInterface({ input: child.stdout })) {
    const [word, number] = line.split(" ");
    const n = Number(number);
    if (word === "start") run.lastStarted = n;
    if (word === "done") {
      while (kinds.length <= n) kinds.push(ops.next().value.kind);
      if (kinds[n] === "flush" || kinds[n] === "snapshot") run.lastDurable = n;
      if (n >= killAfterOps && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  }
  const code = await exited;
  if (code !== null) throw new Error(`crash child exited by itself (${code}): ${stderr}`);
  return run;
}

async function withEngine<T>(target: RadosTarget, namespace: string, body: (engine: Engine) => Promise<T>): Promise<T> {
  const engine = await Engine.open(await RadosObjectStore.open({ pool: target.pool, namespace, cephConf: target.cephConf }));
  try {
    return await body(engine);
  } finally {
    await engine.close();
  }
}

/** Breaks the killed child's volume lock (its lease would hold it for 30 s more). */
async function breakDeadChildLock(target: RadosTarget, namespace: string): Promise<void> {
  await withEngine(target, namespace, async (engine) => {
    const { header } = await engine.maps.loadMap("v");
    await (engine.objects as RadosObjectStore).breakLock(engine.maps.lockObject(header.mapId));
  });
}

async function verifyStore(
  target: RadosTarget,
  namespace: string,
  expected: Buffer,
  uncertain: Array<[number, number]>,
  snapshots: Map<string, Buffer>,
  mustExist: Set<string>,
): Promise<Buffer> {
  return withEngine(target, namespace, async (engine) => {
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

describeRados("crash safety (SIGKILL)", (target) => {
  it(`keeps every flushed byte across ${rounds} kills on rados, and gc afterwards frees only garbage`, async () => {
    const namespace = testNamespace("crash");
    const engine = await Engine.init(await RadosObjectStore.open({ pool: target.pool, namespace, cephConf: target.cephConf }), {
      blockSizeBytes: crashBlockSizeBytes,
    });
    await engine.createVolume("v", crashVolumeBytes);
    await engine.close();

    const baseSeed = Number(process.env["CRASH_SEED"] ?? Date.now() % 100000);
    let baseline: Buffer = Buffer.alloc(crashVolumeBytes);
    const allSnapshots = new Map<string, Buffer>();
    for (let round = 0; round < rounds; round++) {
      const seed = baseSeed + round;
      const killAfterOps = 10 + ((seed * 7919) % 300);
      const run = await runChildUntilKilled(target, namespace, seed, killAfterOps);
      const context = `seed ${seed} (CRASH_SEED=${baseSeed}), durable ${run.lastDurable}, started ${run.lastStarted}`;
      const expected = Buffer.from(baseline);
      replay(seed, run.lastDurable, expected);
      const possibleSnapshots = replay(seed, run.lastStarted, Buffer.from(baseline));
      const acknowledged = new Set([...replay(seed, run.lastDurable, Buffer.from(baseline)).keys()]);
      for (const [name, content] of possibleSnapshots) allSnapshots.set(name, content);
      const uncertain = touchedRanges(seed, run.lastDurable + 1, run.lastStarted);
      try {
        await breakDeadChildLock(target, namespace);
        baseline = await verifyStore(target, namespace, expected, uncertain, allSnapshots, acknowledged);
        await withEngine(target, namespace, (gcEngine) => gcEngine.gc({ graceMs: 0 }));
        await verifyStore(target, namespace, baseline, [], allSnapshots, acknowledged);
      } catch (error) {
        throw new Error(`${context}: ${(error as Error).message}`, { cause: error });
      }
      const names = await withEngine(target, namespace, async (listing) => new Set((await listing.list()).map((entry) => entry.name)));
      for (const name of [...allSnapshots.keys()]) if (!names.has(name)) allSnapshots.delete(name);
    }
  }, 300_000);
});
