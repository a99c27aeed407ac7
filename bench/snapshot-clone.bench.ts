/**
 * Snapshot and clone time against logical size and written data, on the file backend.
 *
 * A snapshot copies the map (33 bytes per block) and bumps the epoch; a clone copies a
 * frozen map under a new name. Neither touches block data, so both should grow with the
 * map (logical size / block size) and stay flat in the data written. The rows:
 *
 *   1, 10, 100 GiB volumes with 1 GiB written      → time vs map size
 *   a second 100 GiB volume with 4 GiB written      → time vs written data
 *   1 TiB grown clone of a snapshot of the latter   → the map-size trend, 10× further
 *                                                     (nothing written of its own)
 *
 * Data is written as whole 4 MiB blocks of distinct non-zero content spread evenly over
 * the volume (100 GiB, 1 GiB written = every 100th block), then flushed before timing;
 * 7 GiB in all. Every volume is built first, then each operation is timed round-robin
 * over all of them, so a change in the machine's load hits every row alike.
 *
 *   volume.snapshot   on the open volume (what the NBD server does): flush, bump epoch
 *                     durably, write the frozen map, name it
 *   engine.clone      load the snapshot's map, write it as a new volume, name it
 *   engine.snapshot   the CLI path: open (lock + load map) + snapshot + close
 */
import { randomFillSync } from "node:crypto";
import { join } from "node:path";
import { Engine } from "../engine/engine.ts";
import { FileObjectStore } from "../engine/blocker/file.ts";
import { entrySizeBytes } from "../engine/mapper/entries.ts";
import type { Volume } from "../engine/volume.ts";
import {
  GiB,
  MiB,
  assertFreeSpace,
  fileSystemName,
  formatBytes,
  median,
  megabytesPerSecond,
  printTable,
  printTitle,
  round,
  withTempDir,
  type BenchContext,
  type BenchGroup,
} from "./common.ts";

const blockSizeBytes = 4 * MiB;
/** Whole-block writes in flight while filling: keeps the disk busy during each block's fdatasync. */
const fillQueueDepth = 4;

interface Scale {
  /** Data written into each of the 1, 10, 100 GiB volumes. */
  writtenBytes: number;
  /** Data in the second 100 GiB volume, the "more written" row. */
  moreWrittenBytes: number;
  /** Timed rounds of each operation (median and minimum reported). */
  repetitions: number;
}

const fullScale: Scale = { writtenBytes: 1 * GiB, moreWrittenBytes: 4 * GiB, repetitions: 9 };
const quickScale: Scale = { writtenBytes: 64 * MiB, moreWrittenBytes: 256 * MiB, repetitions: 2 };

interface Row {
  volume: string;
  logicalBytes: number;
  writtenBytes: number;
  writeMBps: number | undefined;
  flushMs: number | undefined;
  volumeSnapshotMs: number[];
  cloneMs: number[];
  engineSnapshotMs: number[];
}

/** `count` block indices spread evenly over `totalBlocks`. */
function spreadBlocks(totalBlocks: number, count: number): number[] {
  return Array.from({ length: count }, (_, index) => Math.floor((index * totalBlocks) / count));
}

/** Writes whole distinct blocks at `blocks`, `fillQueueDepth` at a time; returns MB/s. */
async function writeBlocks(volume: Volume, blocks: readonly number[]): Promise<number> {
  const template = randomFillSync(Buffer.allocUnsafe(blockSizeBytes));
  let next = 0;
  const startedMs = performance.now();
  const worker = async (): Promise<void> => {
    // One buffer per worker: a block's bytes must not change while its write is in flight.
    const block = Buffer.from(template);
    while (next < blocks.length) {
      const index = blocks[next++] as number;
      block.writeUInt32LE(index, 0); // distinct content per block
      block.writeUInt32LE(next, 4);
      await volume.write(index * blockSizeBytes, block);
    }
  };
  await Promise.all(Array.from({ length: fillQueueDepth }, worker));
  return megabytesPerSecond(blocks.length * blockSizeBytes, performance.now() - startedMs);
}

interface Subject {
  row: Row;
  /** Open for the volume.snapshot rounds, closed before the engine.snapshot rounds. */
  volume: Volume | undefined;
}

/**
 * Times `action` for every subject, round-robin, `repetitions` rounds: drift in the machine's
 * load (2 shared cores) then spreads over every row instead of landing on one.
 */
async function roundRobin(subjects: readonly Subject[], repetitions: number, action: (subject: Subject, repetition: number) => Promise<unknown>, into: (row: Row) => number[]): Promise<void> {
  for (let repetition = 0; repetition < repetitions; repetition++) {
    for (const subject of subjects) {
      const startedMs = performance.now();
      await action(subject, repetition);
      into(subject.row).push(performance.now() - startedMs);
    }
  }
}

function tableRow(row: Row): Record<string, unknown> {
  const entries = Math.ceil(row.logicalBytes / blockSizeBytes);
  const ms = (values: number[]): string => `${round(median(values))} / ${round(Math.min(...values))}`;
  return {
    volume: row.volume,
    logical: formatBytes(row.logicalBytes),
    written: row.writtenBytes === 0 ? "0 (shares its source's)" : formatBytes(row.writtenBytes),
    "map entries": entries,
    "map KiB": round((entries * entrySizeBytes) / 1024),
    "fill MB/s": row.writeMBps === undefined ? "—" : round(row.writeMBps),
    "flush ms": row.flushMs === undefined ? "—" : round(row.flushMs),
    "volume.snapshot ms (median / min)": ms(row.volumeSnapshotMs),
    "engine.clone ms (median / min)": ms(row.cloneMs),
    "engine.snapshot ms (open+snap+close; median / min)": ms(row.engineSnapshotMs),
  };
}

async function run(context: BenchContext): Promise<void> {
  const scale = context.quick ? quickScale : fullScale;
  await withTempDir(context.tempParentDir, "snapshot-clone", async (dir) => {
    const totalWrittenBytes = 3 * scale.writtenBytes + scale.moreWrittenBytes;
    await assertFreeSpace(dir, totalWrittenBytes);
    printTitle("snapshot / clone: time vs logical size and vs written data (file backend)");
    console.log(`dir ${dir} (${await fileSystemName(dir)}); writes ${formatBytes(totalWrittenBytes)} in all; ${scale.repetitions} runs per cell`);
    const engine = await Engine.init(await FileObjectStore.open(join(dir, "store")), { blockSizeBytes, hashAlgorithm: "blake3" });
    const subjects: Subject[] = [];
    try {
      // Setup: fill every volume (timed only for information), flushed before any measurement.
      const volumes = [
        { name: "v1g", logicalBytes: 1 * GiB, writtenBytes: scale.writtenBytes },
        { name: "v10g", logicalBytes: 10 * GiB, writtenBytes: scale.writtenBytes },
        { name: "v100g", logicalBytes: 100 * GiB, writtenBytes: scale.writtenBytes },
        { name: "v100g-more", logicalBytes: 100 * GiB, writtenBytes: scale.moreWrittenBytes },
      ];
      for (const { name, logicalBytes, writtenBytes } of volumes) {
        await engine.createVolume(name, logicalBytes);
        const volume = await engine.openVolume(name);
        const writeMBps = await writeBlocks(volume, spreadBlocks(logicalBytes / blockSizeBytes, writtenBytes / blockSizeBytes));
        const startedMs = performance.now();
        await volume.flush();
        const flushMs = performance.now() - startedMs;
        subjects.push({ row: { volume: name, logicalBytes, writtenBytes, writeMBps, flushMs, volumeSnapshotMs: [], cloneMs: [], engineSnapshotMs: [] }, volume });
        process.stdout.write(".");
      }
      // 1 TiB: a grown clone of a snapshot of the last volume, so no more data is written.
      const source = subjects.at(-1) as Subject;
      await (source.volume as Volume).snapshot("v1t-source");
      await engine.clone("v1t-source", "v1t", { sizeBytes: 1024 * GiB });
      const big: Row = { volume: `v1t (clone of ${source.row.volume})`, logicalBytes: 1024 * GiB, writtenBytes: 0, writeMBps: undefined, flushMs: undefined, volumeSnapshotMs: [], cloneMs: [], engineSnapshotMs: [] };
      subjects.push({ row: big, volume: await engine.openVolume("v1t") });

      const nameOf = (subject: Subject): string => (subject.volume as Volume).name;
      await roundRobin(subjects, scale.repetitions, (subject, repetition) => (subject.volume as Volume).snapshot(`${nameOf(subject)}-s${repetition}`), (row) => row.volumeSnapshotMs);
      process.stdout.write(".");
      await roundRobin(subjects, scale.repetitions, (subject, repetition) => engine.clone(`${nameOf(subject)}-s0`, `${nameOf(subject)}-c${repetition}`), (row) => row.cloneMs);
      process.stdout.write(".");
      const names = new Map(subjects.map((subject) => [subject, nameOf(subject)]));
      for (const subject of subjects) {
        await subject.volume?.close();
        subject.volume = undefined;
      }
      await roundRobin(subjects, scale.repetitions, (subject, repetition) => engine.snapshot(names.get(subject) as string, `${names.get(subject)}-e${repetition}`), (row) => row.engineSnapshotMs);
    } finally {
      process.stdout.write("\n");
      for (const subject of subjects) await subject.volume?.close();
      await engine.close();
    }
    const rows = subjects.map((subject) => subject.row);
    printTable(rows.map(tableRow));
    const first = rows[0];
    const last = rows.at(-1);
    if (first !== undefined && last !== undefined) {
      const entriesRatio = last.logicalBytes / first.logicalBytes;
      console.log(
        `volume.snapshot: ${round(median(last.volumeSnapshotMs) / median(first.volumeSnapshotMs), 3)}× the time for ${entriesRatio}× the map entries; ` +
          `engine.clone: ${round(median(last.cloneMs) / median(first.cloneMs), 3)}×`,
      );
    }
    const oneGiB = rows[2];
    const fourGiB = rows[3];
    if (oneGiB !== undefined && fourGiB !== undefined) {
      console.log(
        `100 GiB volume, ${formatBytes(fourGiB.writtenBytes)} vs ${formatBytes(oneGiB.writtenBytes)} written: volume.snapshot ${round(median(fourGiB.volumeSnapshotMs) / median(oneGiB.volumeSnapshotMs), 3)}×, ` +
          `engine.clone ${round(median(fourGiB.cloneMs) / median(oneGiB.cloneMs), 3)}× the time`,
      );
    }
  });
}

export const snapshotCloneGroup: BenchGroup = {
  name: "snapshot-clone",
  description: "snapshot and clone time for 1/10/100 GiB volumes (1 GiB written) and 100 GiB with 4 GiB written",
  run,
};
