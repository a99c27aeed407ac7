/**
 * Volume I/O on the file backend against its peer in the same run: the same access
 * pattern, the same offsets (seeded), on
 *
 *   okeanos   Volume.read / write / flush over FileObjectStore (one file per 4 MiB block)
 *   raw file  positional I/O on one raw file via fs/promises FileHandle, datasync() as
 *             flush: what qemu-nbd serving a raw image does underneath its NBD loop
 *
 * Queue depth N = N requests kept in flight by N async workers. Both sides go through the
 * page cache (no O_DIRECT: the engine does not use it, nor does qemu-nbd's default
 * cache=writeback), so reads of data just written are memory-speed on both sides.
 *
 * Phases, each run on okeanos and on the raw file (alternating which goes first):
 *   1. fill       1 MiB sequential writes over the whole fresh volume / sparse file, once
 *   2. timed      sequential 1 MiB and random 4 KiB reads and writes, QD 1 and 32, and
 *                 random writes with a flush every 64 writes
 *   3. per block  first write to a never-written block (okeanos allocates a block object),
 *                 and (okeanos only) the first write to a block shared with a snapshot
 *                 (copy-on-write of the whole 4 MiB block)
 */
import { randomFillSync } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { Engine } from "../engine/engine.ts";
import { FileObjectStore, fileHandleCacheMax } from "../engine/blocker/file.ts";
import type { Volume } from "../engine/volume.ts";
import { createRawFile, rawFileTarget, volumeTarget, type IoTarget } from "./io-targets.ts";
import {
  KiB,
  MiB,
  GiB,
  assertFreeSpace,
  fileSystemName,
  formatBytes,
  megabytesPerSecond,
  printTable,
  printTitle,
  quantile,
  round,
  seededRandom,
  shuffledIndices,
  withTempDir,
  type BenchContext,
  type BenchGroup,
} from "./common.ts";

const blockSizeBytes = 4 * MiB;
/** Flush cadence of the "with flush" rows: a guest fsync every 64 × 4 KiB writes (256 KiB). */
const flushEveryWrites = 64;

interface Scale {
  /** Volume and raw file size. 2 GiB = 512 blocks: more than the file store's 256 cached handles. */
  volumeSizeBytes: number;
  /** Random reads of the "hot" rows stay within this span (fits the handle cache). */
  hotSpanBytes: number;
  timedMs: number;
  /** Unmeasured run of the same pattern before each timed row. */
  warmupMs: number;
  /** Writes of the per-block phase (each to a distinct block). */
  perBlockWrites: number;
}

const fullScale: Scale = { volumeSizeBytes: 2 * GiB, hotSpanBytes: 512 * MiB, timedMs: 3000, warmupMs: 1500, perBlockWrites: 128 };
const quickScale: Scale = { volumeSizeBytes: 128 * MiB, hotSpanBytes: 32 * MiB, timedMs: 250, warmupMs: 100, perBlockWrites: 8 };

// ── patterns ───────────────────────────────────────────────────────────────

interface Pattern {
  name: string;
  operation: "read" | "write";
  ioBytes: number;
  queueDepth: number;
  flushEvery?: number;
}

/** Offsets to use, or undefined when the pattern is done. */
type OffsetSource = () => number | undefined;

function sequentialOffsets(spanBytes: number, ioBytes: number, limitOps = Infinity): OffsetSource {
  let cursor = 0;
  let issued = 0;
  return () => {
    if (issued++ >= limitOps) return undefined;
    const offset = cursor;
    cursor = (cursor + ioBytes) % spanBytes;
    return offset;
  };
}

function randomOffsets(spanBytes: number, ioBytes: number, seed: number): OffsetSource {
  const random = seededRandom(seed);
  const slots = Math.floor(spanBytes / ioBytes);
  return () => Math.floor(random() * slots) * ioBytes;
}

/** One 4 KiB-aligned offset inside each of `count` distinct random blocks. */
function perBlockOffsets(volumeSizeBytes: number, ioBytes: number, count: number, seed: number, skipBlocks = 0): number[] {
  const random = seededRandom(seed);
  const blocks = shuffledIndices(volumeSizeBytes / blockSizeBytes, seed).slice(skipBlocks, skipBlocks + count);
  return blocks.map((block) => block * blockSizeBytes + Math.floor(random() * (blockSizeBytes / ioBytes)) * ioBytes);
}

function listOffsets(offsets: readonly number[]): OffsetSource {
  let next = 0;
  return () => offsets[next++];
}

interface Measured {
  ops: number;
  bytes: number;
  elapsedMs: number;
  flushes: number;
  p50Us: number;
  p99Us: number;
}

/**
 * Runs `pattern` until `offsets` is exhausted or `durationMs` passes, `queueDepth` requests
 * in flight. Timed runs are preceded by an unmeasured warm-up of `warmupMs` on the same
 * offset stream: on this VM the first touch of fresh memory costs ~4 ms/MiB, which would
 * otherwise land on whichever run allocates first.
 */
async function measure(target: IoTarget, pattern: Pattern, offsets: OffsetSource, durationMs: number, data: Buffer, warmupMs = 0): Promise<Measured> {
  if (warmupMs > 0) {
    await issue(target, pattern, offsets, warmupMs, data, []);
    if (pattern.operation === "write") await target.flush();
  }
  const latenciesMs: number[] = [];
  const startedMs = performance.now();
  const flushes = await issue(target, pattern, offsets, durationMs, data, latenciesMs);
  const elapsedMs = performance.now() - startedMs;
  // Drain dirty pages outside the measurement, so the next pattern does not pay for them.
  if (pattern.operation === "write") await target.flush();
  const sorted = Float64Array.from(latenciesMs).sort();
  return {
    ops: latenciesMs.length,
    bytes: latenciesMs.length * pattern.ioBytes,
    elapsedMs,
    flushes,
    p50Us: quantile(sorted, 0.5) * 1000,
    p99Us: quantile(sorted, 0.99) * 1000,
  };
}

/** The request loop: `queueDepth` workers; each request's latency is pushed to `latenciesMs`. Returns the flushes done. */
async function issue(target: IoTarget, pattern: Pattern, offsets: OffsetSource, durationMs: number, data: Buffer, latenciesMs: number[]): Promise<number> {
  const payload = data.subarray(0, pattern.ioBytes);
  let flushes = 0;
  let writesSinceFlush = 0;
  const deadlineMs = performance.now() + durationMs;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadlineMs) {
      const offset = offsets();
      if (offset === undefined) return;
      const issuedMs = performance.now();
      if (pattern.operation === "write") await target.write(offset, payload);
      else await target.read(offset, pattern.ioBytes);
      latenciesMs.push(performance.now() - issuedMs);
      if (pattern.flushEvery !== undefined && ++writesSinceFlush >= pattern.flushEvery) {
        writesSinceFlush = 0;
        await target.flush();
        flushes++;
      }
    }
  };
  await Promise.all(Array.from({ length: pattern.queueDepth }, worker));
  return flushes;
}

interface Row {
  pattern: string;
  queueDepth: number;
  ours: Measured;
  peer: Measured | undefined;
}

function tableRow(row: Row): Record<string, unknown> {
  const ourMBps = megabytesPerSecond(row.ours.bytes, row.ours.elapsedMs);
  const peerMBps = row.peer === undefined ? Number.NaN : megabytesPerSecond(row.peer.bytes, row.peer.elapsedMs);
  const dash = (value: number): number | string => (Number.isNaN(value) ? "—" : round(value));
  return {
    pattern: row.pattern,
    QD: row.queueDepth,
    "okeanos IOPS": round((row.ours.ops * 1000) / row.ours.elapsedMs),
    "okeanos MB/s": round(ourMBps),
    "okeanos p50 µs": round(row.ours.p50Us),
    "okeanos p99 µs": round(row.ours.p99Us),
    "raw IOPS": row.peer === undefined ? "—" : round((row.peer.ops * 1000) / row.peer.elapsedMs),
    "raw MB/s": dash(peerMBps),
    "raw p50 µs": row.peer === undefined ? "—" : round(row.peer.p50Us),
    "raw p99 µs": row.peer === undefined ? "—" : round(row.peer.p99Us),
    "okeanos/raw": dash(round(ourMBps / peerMBps, 2)),
  };
}

// ── the run ────────────────────────────────────────────────────────────────

interface Setup {
  engine: Engine;
  dir: string;
  scale: Scale;
}

interface Pair {
  ours: IoTarget;
  peer: IoTarget;
  volume: Volume;
  rawFile: FileHandle;
}

async function openFreshPair(setup: Setup, name: string): Promise<Pair> {
  await setup.engine.createVolume(name, setup.scale.volumeSizeBytes);
  const volume = await setup.engine.openVolume(name);
  const rawFile = await createRawFile(join(setup.dir, `${name}.raw`), setup.scale.volumeSizeBytes);
  return { ours: volumeTarget(volume), peer: rawFileTarget(rawFile), volume, rawFile };
}

async function run(context: BenchContext): Promise<void> {
  const scale = context.quick ? quickScale : fullScale;
  await withTempDir(context.tempParentDir, "volume-io", async (dir) => {
    // The volume and the raw file, plus one 4 MiB copy per copy-on-write row's block.
    await assertFreeSpace(dir, 2 * scale.volumeSizeBytes + scale.perBlockWrites * blockSizeBytes);
    const store = await FileObjectStore.open(join(dir, "store"));
    const engine = await Engine.init(store, { blockSizeBytes, hashAlgorithm: "blake3" });
    const setup: Setup = { engine, dir, scale };
    printTitle(`volume I/O: okeanos file backend vs raw file, ${formatBytes(scale.volumeSizeBytes)} volume`);
    console.log(
      `dir ${dir} (${await fileSystemName(dir)}, reflink ${store.capabilities.serverSideCopy ? "yes" : "no"}); ` +
        `${scale.volumeSizeBytes / blockSizeBytes} blocks of 4 MiB vs ${fileHandleCacheMax} cached file handles; ` +
        `timed rows run ${scale.timedMs} ms after a ${scale.warmupMs} ms warm-up, page cache on`,
    );
    const data = randomFillSync(Buffer.allocUnsafe(MiB));
    const rows: Row[] = [];
    const allocationRows: Array<Record<string, unknown>> = [];
    try {
      const main = await openFreshPair(setup, "main");
      let peerFirst = false;
      const both = async (pattern: Pattern, offsets: () => OffsetSource, durationMs: number, label = pattern.name, ourTarget = main.ours): Promise<void> => {
        const warmupMs = Number.isFinite(durationMs) ? scale.warmupMs : 0;
        // Alternate who goes first, so neither side always inherits the other's leftovers.
        const peerEarly = peerFirst ? await measure(main.peer, pattern, offsets(), durationMs, data, warmupMs) : undefined;
        const ours = await measure(ourTarget, pattern, offsets(), durationMs, data, warmupMs);
        const peer = peerEarly ?? (await measure(main.peer, pattern, offsets(), durationMs, data, warmupMs));
        peerFirst = !peerFirst;
        rows.push({ pattern: label, queueDepth: pattern.queueDepth, ours, peer });
        process.stdout.write(".");
      };
      const size = scale.volumeSizeBytes;

      // 1. fill: every block allocated, every raw extent written.
      await both(
        { name: "seq write 1 MiB, fresh (allocating)", operation: "write", ioBytes: MiB, queueDepth: 1 },
        () => sequentialOffsets(size, MiB, size / MiB),
        Infinity,
      );

      // 2. timed patterns on the filled volume.
      for (const queueDepth of [1, 32]) {
        await both({ name: "seq write 1 MiB", operation: "write", ioBytes: MiB, queueDepth }, () => sequentialOffsets(size, MiB), scale.timedMs);
      }
      for (const queueDepth of [1, 32]) {
        await both({ name: "seq read 1 MiB", operation: "read", ioBytes: MiB, queueDepth }, () => sequentialOffsets(size, MiB), scale.timedMs);
      }
      for (const queueDepth of [1, 32]) {
        await both({ name: "rand write 4 KiB", operation: "write", ioBytes: 4 * KiB, queueDepth }, () => randomOffsets(size, 4 * KiB, 11 + queueDepth), scale.timedMs);
      }
      for (const queueDepth of [1, 32]) {
        await both(
          { name: `rand write 4 KiB, flush every ${flushEveryWrites}`, operation: "write", ioBytes: 4 * KiB, queueDepth, flushEvery: flushEveryWrites },
          () => randomOffsets(size, 4 * KiB, 23 + queueDepth),
          scale.timedMs,
        );
      }
      for (const queueDepth of [1, 32]) {
        await both({ name: "rand read 4 KiB", operation: "read", ioBytes: 4 * KiB, queueDepth }, () => randomOffsets(size, 4 * KiB, 37 + queueDepth), scale.timedMs);
      }
      for (const queueDepth of [1, 32]) {
        await both(
          { name: "rand read 4 KiB", operation: "read", ioBytes: 4 * KiB, queueDepth },
          () => randomOffsets(scale.hotSpanBytes, 4 * KiB, 41 + queueDepth),
          scale.timedMs,
          `rand read 4 KiB, first ${formatBytes(scale.hotSpanBytes)} only`,
        );
      }

      // The same random reads through a second, read-only store whose handle cache holds every block.
      const wideHandleCacheMax = 2 * (size / blockSizeBytes);
      const wideEngine = await Engine.open(await FileObjectStore.open(join(dir, "store"), { handleCacheMax: wideHandleCacheMax }));
      try {
        const wide = volumeTarget(await wideEngine.openVolume("main", { readOnly: true }));
        for (const queueDepth of [1, 32]) {
          await both(
            { name: "rand read 4 KiB", operation: "read", ioBytes: 4 * KiB, queueDepth },
            () => randomOffsets(size, 4 * KiB, 37 + queueDepth),
            scale.timedMs,
            `rand read 4 KiB, ${wideHandleCacheMax} cached handles`,
            wide,
          );
        }
        await wide.close();
      } finally {
        await wideEngine.close();
      }

      // Read-path allocation: the same 1 MiB reads, into a fresh buffer each vs one reused buffer.
      const readPattern: Pattern = { name: "seq read 1 MiB", operation: "read", ioBytes: MiB, queueDepth: 1 };
      const reusing = rawFileTarget(main.rawFile, { reuseReadBuffer: true });
      for (const [target, label] of [
        [main.ours, "okeanos Volume.read (store buffer + result buffer + copy)"],
        [main.peer, "raw file, new buffer per read"],
        [reusing, "raw file, one reused buffer"],
      ] as const) {
        const measured = await measure(target, readPattern, sequentialOffsets(size, MiB), scale.timedMs, data, scale.warmupMs);
        allocationRows.push({ target: label, "MB/s": round(megabytesPerSecond(measured.bytes, measured.elapsedMs)), "p50 µs": round(measured.p50Us), "p99 µs": round(measured.p99Us) });
      }
      process.stdout.write(".");

      // 3a. first write into never-written blocks, on fresh volumes / sparse files.
      for (const queueDepth of [1, 32]) {
        const fresh = await openFreshPair(setup, `fresh-qd${queueDepth}`);
        const pattern: Pattern = { name: "rand write 4 KiB, first write to a block", operation: "write", ioBytes: 4 * KiB, queueDepth };
        const offsets = perBlockOffsets(size, 4 * KiB, scale.perBlockWrites, 53);
        const ours = await measure(fresh.ours, pattern, listOffsets(offsets), Infinity, data);
        const peer = await measure(fresh.peer, pattern, listOffsets(offsets), Infinity, data);
        rows.push({ pattern: pattern.name, queueDepth, ours, peer });
        await fresh.ours.close();
        await fresh.peer.close();
        process.stdout.write(".");
      }

      // 3b. copy-on-write: first write to blocks a snapshot shares (okeanos only).
      await main.volume.snapshot("cow-base");
      for (const [step, queueDepth] of [1, 32].entries()) {
        const pattern: Pattern = { name: "rand write 4 KiB, first after snapshot (CoW)", operation: "write", ioBytes: 4 * KiB, queueDepth };
        const offsets = perBlockOffsets(size, 4 * KiB, scale.perBlockWrites / 2, 67, (step * scale.perBlockWrites) / 2);
        rows.push({ pattern: pattern.name, queueDepth, ours: await measure(main.ours, pattern, listOffsets(offsets), Infinity, data), peer: undefined });
        process.stdout.write(".");
      }
      await main.ours.close();
      await main.peer.close();
    } finally {
      process.stdout.write("\n");
      await engine.close();
    }
    printTable(rows.map(tableRow));
    console.log(
      "okeanos/raw = throughput ratio (> 1: okeanos faster). µs latencies are per request, queueing included. " +
        `Per-block rows write ${scale.perBlockWrites} (CoW: ${scale.perBlockWrites / 2}) distinct blocks, so they are short and noisy.`,
    );
    console.log("\nread-path buffer cost, seq read 1 MiB, QD 1:");
    printTable(allocationRows);
  });
}

export const volumeIoGroup: BenchGroup = {
  name: "volume-io",
  description: "Volume read/write on the file backend vs positional I/O on one raw file (the qemu-nbd floor)",
  run,
};
