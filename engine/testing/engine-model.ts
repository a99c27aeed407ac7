/**
 * Model-based testing of the engine: random sequences of volume and map operations run
 * against an Engine and against a plain in-memory reference (one Buffer per name), and
 * every read is compared. Used by engine.model.test.ts on every backend.
 *
 * A failure prints fast-check's seed and path; rerun exactly that sequence with
 * `MODEL_SEED=<seed> MODEL_PATH=<path> npx vitest run engine/engine.model.test.ts`.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import type { Engine } from "../engine.ts";
import type { Volume } from "../volume.ts";

export const modelBlockSizeBytes = 4096;
const volumeNames = ["v0", "v1", "v2"];
const frozenNames = ["s0", "s1", "s2", "s3"];

interface ModelMap {
  bytes: Buffer;
  frozen: boolean;
}

export interface Model {
  maps: Map<string, ModelMap>;
}

export interface Real {
  engine: Engine;
  open: Map<string, Volume>;
  /** Restart: close the engine and open a new one on the same stored data. */
  restart(): Promise<Engine>;
}

type Cmd = fc.AsyncCommand<Model, Real>;

function fill(lengthBytes: number, seed: number): Buffer {
  const out = Buffer.alloc(lengthBytes);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < lengthBytes; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    out[i] = x & 0xff;
  }
  return out;
}

async function writable(real: Real, name: string): Promise<Volume> {
  let volume = real.open.get(name);
  if (volume === undefined) {
    volume = await real.engine.openVolume(name);
    real.open.set(name, volume);
  }
  return volume;
}

async function closeOpen(real: Real, name: string): Promise<void> {
  const volume = real.open.get(name);
  real.open.delete(name);
  await volume?.close();
}

/**
 * A range inside a map of `sizeBytes`, from two fractions (in thousandths). Half the
 * offsets and a third of the lengths snap to block boundaries, so whole-block paths
 * (zero entries, full-block copy-on-write) are as common as partial ones.
 */
function range(sizeBytes: number, startFraction: number, lengthFraction: number): [number, number] {
  const block = modelBlockSizeBytes;
  let offset = Math.min(sizeBytes, Math.floor(startFraction * (sizeBytes + 1)));
  if (Math.round(startFraction * 1000) % 2 === 0) offset = Math.floor(offset / block) * block;
  let length = Math.floor(lengthFraction * 3 * block);
  if (Math.round(lengthFraction * 1000) % 3 === 0) length = Math.ceil(length / block) * block;
  return [offset, Math.min(sizeBytes - offset, length)];
}

/** A command: fast-check shows `label` in counterexamples. */
function command(label: string, check: (m: Readonly<Model>) => boolean, run: (m: Model, r: Real) => Promise<void>): Cmd {
  return {
    check,
    run: (m, r) => {
      commandsRun.count++;
      return run(m, r);
    },
    toString: () => label,
  };
}

/** How many commands ran, so a test can show it exercised thousands of operations. */
export const commandsRun = { count: 0 };

const isWritable = (name: string) => (m: Readonly<Model>) => m.maps.get(name)?.frozen === false;
const isFrozen = (name: string) => (m: Readonly<Model>) => m.maps.get(name)?.frozen === true;

const create = (name: string, sizeBytes: number) =>
  command(`create(${name}, ${sizeBytes})`, (m) => !m.maps.has(name), async (m, r) => {
    await r.engine.createVolume(name, sizeBytes);
    m.maps.set(name, { bytes: Buffer.alloc(sizeBytes), frozen: false });
  });

const write = (name: string, start: number, lengthFraction: number, seed: number) =>
  command(`write(${name}, ${start}, ${lengthFraction}, ${seed})`, isWritable(name), async (m, r) => {
    const target = m.maps.get(name)!;
    const [offset, length] = range(target.bytes.length, start, lengthFraction);
    const data = fill(length, seed);
    await (await writable(r, name)).write(offset, data, { fua: seed % 7 === 0 });
    data.copy(target.bytes, offset);
  });

const zero = (name: string, start: number, lengthFraction: number, how: "trim" | "zero" | "zero-nohole") =>
  command(`${how}(${name}, ${start}, ${lengthFraction})`, isWritable(name), async (m, r) => {
    const target = m.maps.get(name)!;
    const [offset, length] = range(target.bytes.length, start, lengthFraction);
    const volume = await writable(r, name);
    if (how === "trim") await volume.trim(offset, length);
    else await volume.writeZeroes(offset, length, { noHole: how === "zero-nohole" });
    target.bytes.fill(0, offset, offset + length);
  });

const read = (name: string, start: number, lengthFraction: number) =>
  command(`read(${name}, ${start}, ${lengthFraction})`, (m) => m.maps.has(name), async (m, r) => {
    const target = m.maps.get(name)!;
    const [offset, length] = range(target.bytes.length, start, lengthFraction);
    const volume = r.open.get(name) ?? (await r.engine.openVolume(name, { readOnly: true }));
    try {
      const got = await volume.read(offset, length);
      assert.ok(got.equals(target.bytes.subarray(offset, offset + length)), `read(${name}, ${offset}, ${length}) differs from the model`);
    } finally {
      if (!r.open.has(name)) await volume.close();
    }
  });

const flush = (name: string) =>
  command(`flush(${name})`, isWritable(name), async (_m, r) => {
    await (await writable(r, name)).flush();
  });

const snapshot = (name: string, snapshotName: string) =>
  command(`snapshot(${name}, ${snapshotName})`, (m) => isWritable(name)(m) && !m.maps.has(snapshotName), async (m, r) => {
    const open = r.open.get(name);
    if (open !== undefined) await open.snapshot(snapshotName);
    else await r.engine.snapshot(name, snapshotName);
    m.maps.set(snapshotName, { bytes: Buffer.from(m.maps.get(name)!.bytes), frozen: true });
  });

const clone = (source: string, name: string, growBytes: number) =>
  command(`clone(${source}, ${name}, +${growBytes})`, (m) => isFrozen(source)(m) && !m.maps.has(name), async (m, r) => {
    const sourceBytes = m.maps.get(source)!.bytes;
    const sizeBytes = sourceBytes.length + growBytes;
    await r.engine.clone(source, name, { sizeBytes });
    const bytes = Buffer.alloc(sizeBytes);
    sourceBytes.copy(bytes);
    m.maps.set(name, { bytes, frozen: false });
  });

const resize = (name: string, growBytes: number) =>
  command(`resize(${name}, +${growBytes})`, isWritable(name), async (m, r) => {
    const target = m.maps.get(name)!;
    const sizeBytes = target.bytes.length + growBytes;
    const open = r.open.get(name);
    if (open !== undefined) await open.resize(sizeBytes);
    else await r.engine.resize(name, sizeBytes);
    const bytes = Buffer.alloc(sizeBytes);
    target.bytes.copy(bytes);
    target.bytes = bytes;
  });

const hash = (name: string) =>
  command(`hash(${name})`, isFrozen(name), async (_m, r) => {
    const result = await r.engine.hash(name);
    assert.equal(result.doneBlocks, result.totalBlocks);
  });

const remove = (name: string) =>
  command(`delete(${name})`, (m) => m.maps.has(name), async (m, r) => {
    await closeOpen(r, name);
    await r.engine.delete(name);
    m.maps.delete(name);
  });

// Grace 0: only references and the open-volume protection keep objects alive.
const gc = command("gc()", () => true, async (_m, r) => {
  await r.engine.gc({ graceMs: 0 });
});

const reopen = (wholeStore: boolean) =>
  command(wholeStore ? "restart()" : "closeAll()", () => true, async (_m, r) => {
    for (const name of [...r.open.keys()]) await closeOpen(r, name);
    if (wholeStore) r.engine = await r.restart();
  });

/** Fractions in thousandths: fc.double is biased towards tiny values, which would make every range empty. */
const fraction = fc.integer({ min: 0, max: 1000 }).map((n) => n / 1000);
const volumeName = fc.constantFrom(...volumeNames);
const frozenName = fc.constantFrom(...frozenNames);
const anyName = fc.constantFrom(...volumeNames, ...frozenNames);
/** Sizes around a few blocks, with and without a partial last block. */
const sizeBytes = fc.oneof(fc.integer({ min: 1, max: 6 }).map((n) => n * modelBlockSizeBytes), fc.integer({ min: 1, max: 6 * modelBlockSizeBytes }));
const growBytes = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2 * modelBlockSizeBytes }));

export const engineCommands = [
  fc.tuple(volumeName, sizeBytes).map(([n, s]) => create(n, s)),
  fc.tuple(volumeName, fraction, fraction, fc.nat()).map(([n, a, b, s]) => write(n, a, b, s)),
  fc.tuple(volumeName, fraction, fraction, fc.nat()).map(([n, a, b, s]) => write(n, a, b, s)),
  fc.tuple(volumeName, fraction, fraction, fc.constantFrom("trim" as const, "zero" as const, "zero-nohole" as const)).map(([n, a, b, h]) => zero(n, a, b, h)),
  fc.tuple(anyName, fraction, fraction).map(([n, a, b]) => read(n, a, b)),
  fc.tuple(anyName, fraction, fraction).map(([n, a, b]) => read(n, a, b)),
  volumeName.map((n) => flush(n)),
  fc.tuple(volumeName, frozenName).map(([n, s]) => snapshot(n, s)),
  fc.tuple(frozenName, volumeName, growBytes).map(([s, n, g]) => clone(s, n, g)),
  fc.tuple(volumeName, growBytes).map(([n, g]) => resize(n, g)),
  frozenName.map((n) => hash(n)),
  anyName.map((n) => remove(n)),
  fc.constant(gc),
  fc.boolean().map((whole) => reopen(whole)),
];

/** After a sequence: every map reads back exactly as the model, and every object a map names exists. */
export async function verifyEverything(model: Model, real: Real): Promise<void> {
  for (const [name, expected] of model.maps) {
    const volume = real.open.get(name) ?? (await real.engine.openVolume(name, { readOnly: true }));
    try {
      assert.ok((await volume.read(0, expected.bytes.length)).equals(expected.bytes), `${name} differs from the model`);
    } finally {
      if (!real.open.has(name)) await volume.close();
    }
  }
  const listed = (await real.engine.list()).map((entry) => entry.name).sort();
  assert.deepEqual(listed, [...model.maps.keys()].sort());
}

export function modelRunParameters(defaultRuns: number): fc.Parameters<unknown> {
  const seed = process.env["MODEL_SEED"];
  const path = process.env["MODEL_PATH"];
  return seed === undefined
    ? { numRuns: Number(process.env["MODEL_RUNS"] ?? defaultRuns), verbose: 1 }
    : { seed: Number(seed), ...(path === undefined ? {} : { path }), numRuns: 1, verbose: 2 };
}
