/**
 * MapEntries lookups on the in-memory map of a 100 GiB volume (25,600 entries of 4 MiB
 * blocks): objectName(i), which every read and copy-on-write calls, and isWritableBy(i),
 * which every write calls. Sequential (a guest streaming a disk) and random (4 KiB random
 * I/O) orders, over a map of private blocks (a written volume) and one of content blocks
 * (a clone of an image).
 *
 * One tinybench iteration = 25,600 lookups, so timer overhead is negligible; we report
 * ns per lookup. The reference row reads precomputed names from an array: the floor for
 * "which object holds block i" in JavaScript, and what a name cache would cost.
 */
import { randomBytes } from "node:crypto";
import { Bench } from "tinybench";
import { MapEntries } from "../engine/mapper/entries.ts";
import { GiB, MiB, printTable, printTitle, round, shuffledIndices, type BenchContext, type BenchGroup } from "./common.ts";

const volumeSizeBytes = 100 * GiB;
const blockSizeBytes = 4 * MiB;
/** 25,600: the entries of a 100 GiB volume at the default 4 MiB block size. */
const entryCount = volumeSizeBytes / blockSizeBytes;
const lookupsPerIteration = entryCount;
const epoch = 7;

/** Results land here so V8 cannot drop the lookups as dead code. */
let sink = 0;

interface LookupTask {
  name: string;
  map: string;
  order: "sequential" | "random";
  run: () => void;
}

function buildTasks(): LookupTask[] {
  const volumeId = randomBytes(8);
  const otherVolumeId = randomBytes(8);
  const privateMap = MapEntries.zeroed(entryCount);
  const contentMap = MapEntries.zeroed(entryCount);
  for (let index = 0; index < entryCount; index++) {
    privateMap.setPrivate(index, volumeId, epoch);
    contentMap.setContent(index, randomBytes(32));
  }
  // A private map of an older epoch (after a snapshot): isWritableBy must compare the epoch and fail.
  const olderMap = MapEntries.zeroed(entryCount);
  for (let index = 0; index < entryCount; index++) olderMap.setPrivate(index, otherVolumeId, epoch - 1);

  const sequential = Array.from({ length: entryCount }, (_, index) => index);
  const random = shuffledIndices(entryCount, 0x5eed);
  const orders = { sequential, random } as const;
  const names = Array.from({ length: entryCount }, (_, index) => privateMap.objectName(index) as string);

  const tasks: LookupTask[] = [];
  for (const order of ["sequential", "random"] as const) {
    const indices = orders[order];
    const objectNameOf = (map: MapEntries) => () => {
      let length = 0;
      for (const index of indices) length += (map.objectName(index) as string).length;
      sink += length;
    };
    const writableBy = (map: MapEntries) => () => {
      let writable = 0;
      for (const index of indices) if (map.isWritableBy(index, volumeId, epoch)) writable++;
      sink += writable;
    };
    tasks.push(
      { name: "objectName", map: "private", order, run: objectNameOf(privateMap) },
      { name: "objectName", map: "content", order, run: objectNameOf(contentMap) },
      { name: "isWritableBy (true)", map: "private, this epoch", order, run: writableBy(privateMap) },
      { name: "isWritableBy (false)", map: "private, older epoch", order, run: writableBy(olderMap) },
      { name: "isWritableBy (false)", map: "content", order, run: writableBy(contentMap) },
      {
        name: "reference: names[i]",
        map: "precomputed strings",
        order,
        run: () => {
          let length = 0;
          for (const index of indices) length += (names[index] as string).length;
          sink += length;
        },
      },
    );
  }
  return tasks;
}

async function run(context: BenchContext): Promise<void> {
  printTitle(`map lookup: MapEntries of ${entryCount} entries (100 GiB at 4 MiB blocks), ${lookupsPerIteration} lookups per iteration`);
  const bench = context.quick ? new Bench({ time: 50, warmupTime: 10, iterations: 4, warmupIterations: 2 }) : new Bench({ time: 1000, warmupTime: 200 });
  const tasks = buildTasks();
  for (const task of tasks) bench.add(`${task.name} | ${task.map} | ${task.order}`, task.run);
  await bench.run();

  const referenceNs = new Map<string, number>();
  const rows = tasks.map((task, index) => {
    const result = (bench.tasks[index] as (typeof bench.tasks)[number]).result;
    if (result.state !== "completed") throw new Error(`map-lookup task ${task.name} ${result.state}`);
    const nsPerLookup = (result.latency.mean * 1e6) / lookupsPerIteration;
    if (task.name.startsWith("reference")) referenceNs.set(task.order, nsPerLookup);
    return { task, nsPerLookup, rmePercent: result.latency.rme, samples: result.latency.samplesCount };
  });
  printTable(
    rows.map(({ task, nsPerLookup, rmePercent, samples }) => ({
      lookup: task.name,
      map: task.map,
      order: task.order,
      "ns/lookup": round(nsPerLookup),
      "M lookups/s": round(1000 / nsPerLookup),
      "× reference": round(nsPerLookup / (referenceNs.get(task.order) ?? Number.NaN), 2),
      "±% (rme)": round(rmePercent, 2),
      iterations: samples,
    })),
  );
  if (sink === 42) console.log(""); // keep `sink` observable
}

export const mapLookupGroup: BenchGroup = {
  name: "map-lookup",
  description: "MapEntries.objectName / isWritableBy on a 25,600-entry map, sequential and random",
  run,
};
