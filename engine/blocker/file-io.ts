/**
 * Positional file I/O and durability helpers for the file backend: whole-range reads and
 * writes over short transfers, fdatasync/fsync of files and directories, and the probe
 * for reflink support. No object naming here; see file.ts.
 */
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { copyFile, open, readdir, rm, type FileHandle } from "node:fs/promises";
import { join } from "node:path";

/** Fills `target` from `offsetBytes`; bytes past the end of the file read as zeros. */
export async function readAt(handle: FileHandle, offsetBytes: number, target: Buffer): Promise<void> {
  const lengthBytes = target.length;
  let doneBytes = 0;
  while (doneBytes < lengthBytes) {
    const { bytesRead } = await handle.read(target, doneBytes, lengthBytes - doneBytes, offsetBytes + doneBytes);
    if (bytesRead === 0) break; // end of file
    doneBytes += bytesRead;
  }
  target.fill(0, doneBytes);
}

/**
 * The most one pwrite writes. Linux (6.x) backs a large write with page-cache folios as large
 * as the write, and ext4 makes every later small write into such a folio walk all of its
 * buffer heads: a 4 KiB pwrite into a file written in 1 MiB pwrites cost 13–26 µs of CPU on
 * the benchmark machine, 8 µs in 256 KiB pieces, 4 µs in 4 KiB ones. Block files take both
 * (a guest's sequential writes, then its random ones), so large writes go in pieces: over
 * NBD, 4 KiB random writes 1.3× (QD1) and 1.6× (QD32), 1 MiB writes 0.91× (bench/RESULTS.md,
 * nbd "Run 8").
 */
export const writePieceBytesMax = 256 * 1024;

export async function writeAt(handle: FileHandle, data: Uint8Array, offsetBytes: number): Promise<void> {
  // An empty pwrite changes nothing, but an empty write still extends the object to its
  // offset, as the memory reference does.
  if (data.length === 0) return extendTo(handle, offsetBytes);
  let doneBytes = 0;
  // pwrite may write less than asked (signals, quotas).
  while (doneBytes < data.length) {
    const pieceBytes = Math.min(writePieceBytesMax, data.length - doneBytes);
    const { bytesWritten } = await handle.write(data, doneBytes, pieceBytes, offsetBytes + doneBytes);
    doneBytes += bytesWritten;
  }
}

async function extendTo(handle: FileHandle, sizeBytes: number): Promise<void> {
  if ((await handle.stat()).size < sizeBytes) await handle.truncate(sizeBytes);
}

/** Writes a new file of `offsetBytes` zeros (a hole) then `data`, durable before it is renamed or linked into place. */
export async function writeTemporary(path: string, data: Uint8Array, offsetBytes: number): Promise<void> {
  const handle = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o644);
  try {
    await writeAt(handle, data, offsetBytes);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

export async function syncFile(path: string): Promise<void> {
  const handle = await open(path, constants.O_RDONLY);
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

export async function syncDirectory(dir: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (error) {
    if (errnoOf(error) === "ENOENT") return;
    throw error;
  }
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function readdirIfPresent(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if (errnoOf(error) === "ENOENT") return [];
    throw error;
  }
}

/** Runs `action` on every item with at most `concurrency` in flight; rejects with the first error. */
export async function forEachLimited<T>(items: readonly T[], concurrency: number, action: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await action(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/**
 * Whether this file system clones files (btrfs, XFS with reflink, bcachefs): then copy()
 * shares extents instead of moving bytes, which is what serverSideCopy promises.
 */
export async function probeReflink(dir: string, scratchPrefix: string): Promise<boolean> {
  const tag = `${process.pid}.${randomBytes(4).toString("hex")}`;
  const source = join(dir, `${scratchPrefix}reflink-source.${tag}`);
  const target = join(dir, `${scratchPrefix}reflink-target.${tag}`);
  try {
    const handle = await open(source, "wx");
    // One byte: a clone of an empty file might succeed without asking the file system.
    await handle.write(Buffer.from("x"), 0, 1, 0).finally(() => handle.close());
    await copyFile(source, target, constants.COPYFILE_FICLONE_FORCE);
    return true;
  } catch {
    return false;
  } finally {
    await Promise.all([rm(source, { force: true }), rm(target, { force: true })]);
  }
}

export function errnoOf(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** A failed system call (it names one), as opposed to a programming error such as ERR_INVALID_ARG_TYPE. */
export function isSystemError(error: unknown): error is NodeJS.ErrnoException {
  return error instanceof Error && typeof (error as NodeJS.ErrnoException).syscall === "string";
}
