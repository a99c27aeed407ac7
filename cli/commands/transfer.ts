/**
 * `okeanos volume import|export`: raw disk images in and out of the store.
 *
 * import: file ──read block by block──► all-zero? skip (already a zero entry)
 *                                      └► volume.importBlock (content-addressed, deduplicated)
 * export: volume.blockStatus ──non-zero extents──► read ──► pwrite at the same offset
 *         (the file is truncated to the volume's size first, so zero ranges stay holes)
 */
import { open, type FileHandle } from "node:fs/promises";
import type { Command } from "commander";
import type { Engine } from "../../engine/engine.ts";
import type { Volume } from "../../engine/volume.ts";
import { isAllZero } from "../../engine/blocker/content.ts";
import { examples, report, withEngine, type GlobalOptions } from "../context.ts";
import { LocalFileError, localFileError, progressBar, UsageError, type Report } from "../output.ts";
import { formatBytes } from "../units.ts";

/**
 * Blocks imported at once: hashing one block (blake3, ~1 ms per 4 MiB) overlaps with
 * storing others and with reading the next from the file; 4 × 4 MiB bounds the memory held.
 */
export const importParallelBlocks = 4;

/**
 * Bytes read from the volume per request when exporting: 16 MiB is 4 default blocks, which
 * Volume.read fetches in parallel (larger blocks are read one at a time); with small
 * blocks, 64 blocks per request keep each request's buffer small.
 */
const exportChunkBytes = 16 * 1024 * 1024;
const exportChunkBlocksMax = 64;

export function exportChunkBytesFor(blockSizeBytes: number): number {
  return Math.min(exportChunkBlocksMax * blockSizeBytes, Math.max(blockSizeBytes, exportChunkBytes));
}

export function registerTransferCommands(volume: Command): void {
  volume
    .command("import <file> <name>")
    .description("create a volume of FILE's size holding FILE's bytes (a raw disk image); all-zero blocks take no space")
    .addHelpText("after", examples("okeanos volume import debian-12.raw debian-12", "qemu-img convert -O raw disk.qcow2 disk.raw && okeanos volume import disk.raw vm1"))
    .action((file: string, name: string, _options: unknown, command: Command) => report(command, (global) => importFile(global, file, name)));

  volume
    .command("export <name> <file>")
    .description("write a volume or snapshot to FILE as a raw image (created or truncated); zero ranges stay holes")
    .addHelpText("after", examples("okeanos volume export vm1-monday vm1-monday.raw", "okeanos volume export vm1 /tmp/vm1.raw && qemu-img info /tmp/vm1.raw"))
    .action((name: string, file: string, _options: unknown, command: Command) => report(command, (global) => exportFile(global, name, file)));
}

// ── import ─────────────────────────────────────────────────────────────────

async function importFile(global: GlobalOptions, file: string, name: string): Promise<Report> {
  const input = await open(file, "r").catch((error: unknown) => {
    throw localFileError("open", file, error);
  });
  try {
    const info = await input.stat();
    if (!info.isFile()) throw new LocalFileError(`cannot import ${file}: not a regular file`);
    if (info.size === 0) throw new UsageError(`cannot import ${file}: it is empty, and a volume needs at least one byte`);
    return await withEngine(global, async (engine) => {
      await engine.createVolume(name, info.size);
      try {
        const counts = await importInto(engine, name, input, file, info.size);
        return {
          text:
            `Imported ${file} into ${name} (${formatBytes(info.size)}): ` +
            `${counts.dataBlocks} data blocks imported (each stored once, by content), ${counts.zeroBlocks} zero blocks skipped`,
          json: { name, file, sizeBytes: info.size, blockSizeBytes: engine.blockSizeBytes, ...counts },
        };
      } catch (error) {
        // Leave nothing half-imported under the name: the user retries the same command.
        await engine.delete(name).catch(() => undefined);
        throw error;
      }
    });
  } finally {
    await input.close();
  }
}

async function importInto(engine: Engine, name: string, input: FileHandle, file: string, sizeBytes: number): Promise<{ dataBlocks: number; zeroBlocks: number }> {
  const volume = await engine.openVolume(name);
  const blockSizeBytes = engine.blockSizeBytes;
  const blocks = Math.ceil(sizeBytes / blockSizeBytes);
  const progress = progressBar(`importing ${name}`, sizeBytes, "bytes");
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  let dataBlocks = 0;
  try {
    for (let index = 0; index < blocks && failure === undefined; index++) {
      const offsetBytes = index * blockSizeBytes;
      const data = await readExactly(input, file, offsetBytes, Math.min(blockSizeBytes, sizeBytes - offsetBytes));
      if (!isAllZero(data)) {
        dataBlocks++;
        const task: Promise<void> = volume.importBlock(index, data).then(
          () => void inFlight.delete(task),
          (error: unknown) => {
            inFlight.delete(task);
            failure ??= error;
          },
        );
        inFlight.add(task);
        if (inFlight.size >= importParallelBlocks) await Promise.race(inFlight);
      }
      progress.update(offsetBytes + data.length);
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure;
    await volume.flush();
  } finally {
    await Promise.all(inFlight);
    progress.stop();
    await volume.close();
  }
  return { dataBlocks, zeroBlocks: blocks - dataBlocks };
}

async function readExactly(input: FileHandle, file: string, positionBytes: number, lengthBytes: number): Promise<Buffer> {
  const data = Buffer.allocUnsafe(lengthBytes);
  let done = 0;
  while (done < lengthBytes) {
    const { bytesRead } = await input.read(data, done, lengthBytes - done, positionBytes + done).catch((error: unknown) => {
      throw localFileError("read", file, error);
    });
    if (bytesRead === 0) throw new LocalFileError(`cannot import ${file}: it shrank while being read`);
    done += bytesRead;
  }
  return data;
}

// ── export ─────────────────────────────────────────────────────────────────

async function exportFile(global: GlobalOptions, name: string, file: string): Promise<Report> {
  return withEngine(global, async (engine) => {
    // Read-only: needs no lock, works on snapshots, and sees a writable volume as of its last flush.
    const volume = await engine.openVolume(name, { readOnly: true });
    try {
      const output = await open(file, "w").catch((error: unknown) => {
        throw localFileError("create", file, error);
      });
      try {
        const writtenBytes = await exportInto(volume, output, file);
        await output.datasync().catch((error: unknown) => {
          throw localFileError("sync", file, error);
        });
        return {
          text:
            `Exported ${name} to ${file} (${formatBytes(volume.sizeBytes)}; ` +
            (writtenBytes === volume.sizeBytes ? "all data)" : `${formatBytes(writtenBytes)} of data, the rest left as holes)`),
          json: { name, file, sizeBytes: volume.sizeBytes, writtenBytes },
        };
      } finally {
        await output.close();
      }
    } finally {
      await volume.close();
    }
  });
}

/** Writes every non-zero block of `volume` at its offset; returns the bytes written. */
async function exportInto(volume: Volume, output: FileHandle, file: string): Promise<number> {
  await output.truncate(volume.sizeBytes).catch((error: unknown) => {
    throw localFileError("resize", file, error);
  });
  const chunks = dataChunks(volume, exportChunkBytesFor(volume.blockSizeBytes));
  // Progress is the position in the volume: zero ranges are passed over at once.
  const progress = progressBar(`exporting ${volume.name}`, volume.sizeBytes, "bytes");
  let writtenBytes = 0;
  // One read ahead: the next chunk is fetched from the store while this one is written.
  const readAhead = (): { offsetBytes: number; data: Promise<Buffer> } | undefined => {
    const chunk = chunks.next();
    return chunk.done === true ? undefined : { offsetBytes: chunk.value[0], data: volume.read(...chunk.value) };
  };
  let next = readAhead();
  try {
    while (next !== undefined) {
      const current = next;
      const data = await current.data;
      next = readAhead();
      writtenBytes += await writeNonZeroBlocks(output, file, data, current.offsetBytes, volume.blockSizeBytes);
      progress.update(current.offsetBytes + data.length);
    }
  } finally {
    // A write that failed leaves a read in flight: settle it so its error is not unhandled.
    await next?.data.catch(() => undefined);
    progress.stop();
  }
  return writtenBytes;
}

/**
 * Blocks whose status is asked at once: blockStatus returns one extent per run, but walks
 * every block of the range it is given; 64 Ki blocks (256 GiB of 4 MiB blocks) bound that work
 * and its memory for any volume size.
 */
const statusWindowBlocks = 65536;

/** The non-zero ranges of `volume`, in pieces of at most `chunkBytes`, in order. */
function* dataChunks(volume: Volume, chunkBytes: number): Generator<[offsetBytes: number, lengthBytes: number]> {
  const windowBytes = statusWindowBlocks * volume.blockSizeBytes;
  for (let windowStart = 0; windowStart < volume.sizeBytes; windowStart += windowBytes) {
    for (const extent of volume.blockStatus(windowStart, Math.min(windowBytes, volume.sizeBytes - windowStart))) {
      if (extent.zero) continue;
      const end = extent.offsetBytes + extent.lengthBytes;
      for (let offset = extent.offsetBytes; offset < end; offset += chunkBytes) yield [offset, Math.min(chunkBytes, end - offset)];
    }
  }
}

/**
 * Writes the runs of non-zero blocks of `data` (which starts at block boundary
 * `offsetBytes`); blocks that happen to hold only zeros stay holes too.
 */
async function writeNonZeroBlocks(output: FileHandle, file: string, data: Buffer, offsetBytes: number, blockSizeBytes: number): Promise<number> {
  let written = 0;
  let runStart = -1;
  const flushRun = async (end: number): Promise<void> => {
    if (runStart < 0) return;
    const run = data.subarray(runStart, end);
    let done = 0;
    while (done < run.length) {
      const { bytesWritten } = await output.write(run, done, run.length - done, offsetBytes + runStart + done).catch((error: unknown) => {
        throw localFileError("write", file, error);
      });
      done += bytesWritten;
    }
    written += run.length;
    runStart = -1;
  };
  for (let start = 0; start < data.length; start += blockSizeBytes) {
    const end = Math.min(data.length, start + blockSizeBytes);
    if (isAllZero(data.subarray(start, end))) await flushRun(start);
    else if (runStart < 0) runStart = start;
  }
  await flushRun(data.length);
  return written;
}
