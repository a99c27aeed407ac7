/**
 * Downloading an object block by block, fetching only the blocks the local file lacks
 * (synnefo.md B.6, kamaki's download with resume):
 *
 *   GET ?hashmap ──► {bytes, hashes}, X-Object-Version (pins every Range GET that follows)
 *   working file: LOCAL itself when it exists (a delta update, in place),
 *                 else LOCAL.part (created, or resumed when an interrupted download left it)
 *   truncate it to `bytes`; hash its blocks (those it had before); equal hash ──► kept
 *   the others: H("") ──► zeros written, nothing fetched
 *               else one Range GET per distinct hash (≤ parallel at once), the block's hash
 *               checked before it is written at every offset that has it
 *   datasync; LOCAL.part ──rename──► LOCAL
 *
 * Why in place for an existing LOCAL: a delta download of a large file then writes only the
 * changed blocks, instead of copying the unchanged ones to a new file. An interrupted delta
 * leaves LOCAL mixed (old and new blocks), and running the download again completes it;
 * a new file is never visible under its name before it is whole.
 */
import { open, rename, stat, type FileHandle } from "node:fs/promises";
import type { Stats } from "node:fs";
import { zeroBlockHash } from "../../engine/blocker/content.ts";
import type { HashPool } from "../../engine/blocker/hash-pool.ts";
import { LocalFileError, localFileError } from "../output.ts";
import type { PithosClient, RemoteHashmap } from "./client.ts";
import { forEachLimit } from "./concurrency.ts";
import { RemoteError } from "./errors.ts";
import { BlockBuffers, blockCount, blockLength, hashFileBlocks, objectHashOf } from "./local-hashmap.ts";

/** Range GETs in flight by default: each holds one block in memory. */
export const downloadParallelDefault = 4;

/** Suffix of the file a new download is written to until it is complete. */
export const partSuffix = ".part";

export interface DownloadOptions {
  pool: HashPool;
  parallel?: number;
  onScanProgress?: (doneBytes: number, totalBytes: number) => void;
  onFetchStart?: (totalBytes: number) => void;
  onFetchProgress?: (doneBytes: number) => void;
}

export type WorkingFileKind = "new" | "part" | "existing";

export interface DownloadResult {
  container: string;
  object: string;
  path: string;
  bytes: number;
  blocks: number;
  /** Distinct blocks fetched (a block repeated in the object is fetched once). */
  blocksFetched: number;
  bytesFetched: number;
  /** Blocks the local file already had right. */
  blocksKept: number;
  /** All-zero blocks written locally, without a request. */
  zeroBlocksWritten: number;
  /** new: LOCAL did not exist; part: resumed LOCAL.part; existing: LOCAL updated in place. */
  workingFile: WorkingFileKind;
  objectHash: string;
  seconds: number;
}

export async function downloadObject(client: PithosClient, container: string, object: string, path: string, options: DownloadOptions): Promise<DownloadResult> {
  const started = performance.now();
  const remote = await client.getHashmap(container, object);
  const objectHash = objectHashOf(remote, remote);
  if (remote.objectHash !== undefined && remote.objectHash !== objectHash) {
    throw new RemoteError("EINTEGRITY", `hashmap of ${container}/${object}: its Merkle root ${objectHash} is not the X-Object-Hash ${remote.objectHash}`);
  }
  const working = await workingFile(path);
  const file = await open(working.path, working.kind === "new" ? "w+" : "r+").catch((error: unknown) => {
    throw localFileError("open", working.path, error);
  });
  let counts: FetchCounts;
  try {
    const previousBytes = (await file.stat()).size;
    await file.truncate(remote.bytes).catch((error: unknown) => {
      throw localFileError("resize", working.path, error);
    });
    const plan = await planBlocks(file, working.path, previousBytes, remote, options);
    counts = await fetchBlocks(client, file, working.path, container, object, remote, plan, options);
    await file.datasync().catch((error: unknown) => {
      throw localFileError("sync", working.path, error);
    });
  } finally {
    await file.close();
  }
  if (working.path !== path) {
    await rename(working.path, path).catch((error: unknown) => {
      throw localFileError("rename", working.path, error);
    });
  }
  const blocks = remote.bytes === 0 ? 0 : remote.hashes.length;
  return {
    container,
    object,
    path,
    bytes: remote.bytes,
    blocks,
    ...counts,
    blocksKept: blocks - counts.zeroBlocksWritten - counts.blocksWrittenFetched,
    workingFile: working.kind,
    objectHash,
    seconds: (performance.now() - started) / 1000,
  };
}

/** LOCAL when it is a file; else LOCAL.part (resumed if present). */
export async function workingFile(path: string): Promise<{ path: string; kind: WorkingFileKind }> {
  const found = await statOrUndefined(path);
  if (found !== undefined) {
    if (!found.isFile()) throw new LocalFileError(`cannot download to ${path}: not a regular file`);
    return { path, kind: "existing" };
  }
  const part = `${path}${partSuffix}`;
  const partFound = await statOrUndefined(part);
  if (partFound !== undefined && !partFound.isFile()) throw new LocalFileError(`cannot download to ${part}: not a regular file`);
  return { path: part, kind: partFound === undefined ? "new" : "part" };
}

async function statOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw localFileError("read", path, error);
  }
}

export interface BlockPlan {
  /** Block indices that need zeros written (the remote block is all zeros, ours is not). */
  zeroIndices: number[];
  /** Distinct remote hash → the block indices that need it, in order. */
  fetches: Map<string, number[]>;
}

/**
 * Which blocks to write. The file is already `remote.bytes` long; bytes past
 * `previousBytes` read as zeros, so blocks wholly past it need no hashing.
 */
export async function planBlocks(file: FileHandle, path: string, previousBytes: number, remote: RemoteHashmap, options: Pick<DownloadOptions, "pool" | "onScanProgress">): Promise<BlockPlan> {
  const { blockSizeBytes } = remote;
  const zero = zeroBlockHash(remote.hashAlgorithm).toString("hex");
  const blocks = blockCount(remote.bytes, blockSizeBytes);
  const scanBytes = Math.min(remote.bytes, blockCount(previousBytes, blockSizeBytes) * blockSizeBytes);
  const local = scanBytes === 0 ? [] : await hashFileBlocks(file, path, scanBytes, remote, { pool: options.pool, onProgress: (done) => options.onScanProgress?.(done, scanBytes) });
  const plan: BlockPlan = { zeroIndices: [], fetches: new Map() };
  for (let index = 0; index < blocks; index++) {
    const wanted = remote.hashes[index] as string;
    if ((local[index] ?? zero) === wanted) continue;
    if (wanted === zero) {
      plan.zeroIndices.push(index);
      continue;
    }
    const indices = plan.fetches.get(wanted);
    if (indices === undefined) plan.fetches.set(wanted, [index]);
    else indices.push(index);
  }
  return plan;
}

interface FetchCounts {
  blocksFetched: number;
  bytesFetched: number;
  zeroBlocksWritten: number;
  /** Blocks written with fetched data (more than blocksFetched when a block repeats). */
  blocksWrittenFetched: number;
}

async function fetchBlocks(
  client: PithosClient,
  file: FileHandle,
  path: string,
  container: string,
  object: string,
  remote: RemoteHashmap,
  plan: BlockPlan,
  options: DownloadOptions,
): Promise<FetchCounts> {
  const { blockSizeBytes, bytes } = remote;
  const counts: FetchCounts = { blocksFetched: 0, bytesFetched: 0, zeroBlocksWritten: 0, blocksWrittenFetched: 0 };
  for (const index of plan.zeroIndices) {
    await writeFully(file, path, Buffer.alloc(blockLength(index, bytes, blockSizeBytes)), index * blockSizeBytes);
    counts.zeroBlocksWritten++;
  }
  const fetches = [...plan.fetches];
  const total = fetches.reduce((sum, [, indices]) => sum + blockLength(indices[0] as number, bytes, blockSizeBytes), 0);
  options.onFetchStart?.(total);
  let done = 0;
  const buffers = new BlockBuffers(blockSizeBytes);
  await forEachLimit(fetches, options.parallel ?? downloadParallelDefault, async ([hash, indices]) => {
    const first = indices[0] as number;
    const start = first * blockSizeBytes;
    const lengthBytes = blockLength(first, bytes, blockSizeBytes);
    const into = buffers.take(lengthBytes);
    const received = await client.getRange(container, object, start, start + lengthBytes, { ...(remote.version !== undefined && { version: remote.version }), into });
    const hashed = await options.pool.hashBlock(remote.hashAlgorithm, received);
    if (hashed.hash.toString("hex") !== hash) {
      throw new RemoteError("EINTEGRITY", `download ${container}/${object}: block ${first} does not have the hash the hashmap lists (${hash}); it was not written, run the download again`);
    }
    counts.blocksFetched++;
    counts.bytesFetched += hashed.data.length;
    for (const index of indices) {
      await writeFully(file, path, blockAt(hashed.data, hashed.strippedBytes, blockLength(index, bytes, blockSizeBytes)), index * blockSizeBytes);
      counts.blocksWrittenFetched++;
    }
    done += hashed.data.length;
    options.onFetchProgress?.(done);
    buffers.give(hashed.data);
  });
  return counts;
}

/**
 * The content of a block of `lengthBytes` whose stripped data is `data[0, strippedBytes)`:
 * blocks that share a hash differ only in trailing NULs (a short last block and a full one).
 */
function blockAt(data: Buffer, strippedBytes: number, lengthBytes: number): Buffer {
  if (data.length === lengthBytes) return data;
  const block = Buffer.alloc(lengthBytes);
  data.copy(block, 0, 0, Math.min(strippedBytes, lengthBytes));
  return block;
}

async function writeFully(file: FileHandle, path: string, data: Buffer, positionBytes: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await file.write(data, done, data.length - done, positionBytes + done).catch((error: unknown) => {
      throw localFileError("write", path, error);
    });
    done += bytesWritten;
  }
}
