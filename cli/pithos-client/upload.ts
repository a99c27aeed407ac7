/**
 * Uploading a file the Pithos+ way (synnefo.md B.3, B.6 — kamaki's algorithm): only the
 * blocks the server lacks cross the wire.
 *
 *   HEAD container (PUT it if missing) ──► block size B, hash algorithm
 *   hash the file, block by block ──► hashmap {bytes, hashes}
 *   PUT ?hashmap ──201──► done (every block already stored: an "instant" upload)
 *        └─409 [missing]──► POST each missing block once (≤ parallel at once), checking the
 *                           hash the server computed ──► PUT ?hashmap again (≤ uploadRoundsMax)
 *
 * Resumable by construction: the blocks an interrupted upload sent are stored, so the next
 * run's first PUT lists only the rest as missing. A block that appears several times in the
 * file is sent once (the server asks for each missing hash once).
 */
import { open, type FileHandle } from "node:fs/promises";
import { lookup as mimeLookup } from "mime-types";
import type { HashPool } from "../../engine/blocker/hash-pool.ts";
import { LocalFileError, localFileError } from "../output.ts";
import { hashmapRequestBody, type ContainerLayout, type PithosClient } from "./client.ts";
import { forEachLimit } from "./concurrency.ts";
import { RemoteError } from "./errors.ts";
import { BlockBuffers, blockLength, hashFileBlocks, objectHashOf, readFully, regularFileSize, type LocalHashmap } from "./local-hashmap.ts";

/**
 * Hashmap PUTs per upload: the first, the one after sending the missing blocks, and two
 * more in case blocks vanish in between (a concurrent garbage collection). kamaki allows 7
 * rounds without progress; a server that keeps asking for blocks it was just sent is broken,
 * and 4 rounds say so sooner.
 */
export const uploadRoundsMax = 4;

/** Blocks sent at once by default: kamaki's CLI sends 5; 4 matches the hash pool's threads. */
export const uploadParallelDefault = 4;

export interface UploadOptions {
  pool: HashPool;
  parallel?: number;
  /** The object's Content-Type; by default guessed from its name (mime-types), else application/octet-stream. */
  contentType?: string;
  /** A hashmap already computed for this file and layout (sync computes it to compare). */
  hashmap?: LocalHashmap;
  /** The container's layout, when the caller already asked (sync): no HEAD per file. */
  layout?: ContainerLayout;
  onHashProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Called once per round that sends blocks: the bytes to send, then progress. */
  onSendStart?: (totalBytes: number) => void;
  onSendProgress?: (sentBytes: number) => void;
}

export interface UploadResult {
  container: string;
  object: string;
  bytes: number;
  blocks: number;
  /** Blocks (distinct hashes) the server lacked and we sent. */
  blocksSent: number;
  /** Block bytes sent (each block without its trailing NULs). */
  bytesSent: number;
  /** Bytes of the hashmap PUT bodies, all rounds. */
  hashmapBytes: number;
  hashmapRequests: number;
  objectHash: string;
  etag: string | undefined;
  version: string | undefined;
  seconds: number;
}

export async function uploadFile(client: PithosClient, path: string, container: string, object: string, options: UploadOptions): Promise<UploadResult> {
  const started = performance.now();
  const layout = options.layout ?? (await client.ensureContainer(container));
  const file = await open(path, "r").catch((error: unknown) => {
    throw localFileError("open", path, error);
  });
  try {
    const sizeBytes = await regularFileSize(file, path, "upload");
    if (options.hashmap !== undefined && options.hashmap.bytes !== sizeBytes) {
      throw new LocalFileError(`cannot upload ${path}: it changed while being uploaded (now ${sizeBytes} bytes); run the upload again`);
    }
    const hashmap = options.hashmap ?? {
      bytes: sizeBytes,
      hashes: await hashFileBlocks(file, path, sizeBytes, layout, { pool: options.pool, onProgress: (done) => options.onHashProgress?.(done, sizeBytes) }),
    };
    const sent = await putWithMissingBlocks(client, file, path, container, object, layout, hashmap, options);
    return {
      container,
      object,
      bytes: hashmap.bytes,
      blocks: hashmap.bytes === 0 ? 0 : hashmap.hashes.length,
      ...sent,
      objectHash: objectHashOf(layout, hashmap),
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await file.close();
  }
}

interface SendCounts {
  blocksSent: number;
  bytesSent: number;
  hashmapBytes: number;
  hashmapRequests: number;
  etag: string | undefined;
  version: string | undefined;
}

async function putWithMissingBlocks(
  client: PithosClient,
  file: FileHandle,
  path: string,
  container: string,
  object: string,
  layout: ContainerLayout,
  hashmap: LocalHashmap,
  options: UploadOptions,
): Promise<SendCounts> {
  const headers = { "content-type": options.contentType ?? (mimeLookup(object) || "application/octet-stream") };
  const hashmapBodyBytes = Buffer.byteLength(hashmapRequestBody(hashmap));
  // The first block of each hash: where a missing hash is read from.
  const firstIndex = new Map<string, number>();
  hashmap.hashes.forEach((hash, index) => {
    if (!firstIndex.has(hash)) firstIndex.set(hash, index);
  });
  const buffers = new BlockBuffers(layout.blockSizeBytes);
  const counts: SendCounts = { blocksSent: 0, bytesSent: 0, hashmapBytes: 0, hashmapRequests: 0, etag: undefined, version: undefined };
  for (let round = 1; round <= uploadRoundsMax; round++) {
    const result = await client.putHashmap(container, object, hashmap, headers);
    counts.hashmapRequests++;
    counts.hashmapBytes += hashmapBodyBytes;
    if (result.created) return { ...counts, etag: result.etag, version: result.version };
    if (round === uploadRoundsMax) break;
    const missing = result.missing.map((hash) => {
      const index = firstIndex.get(hash);
      if (index === undefined) throw new RemoteError("EPROTOCOL", `upload ${container}/${object}: the server asks for block ${hash}, which the file does not have`);
      return { hash, index };
    });
    const total = missing.reduce((sum, block) => sum + blockLength(block.index, hashmap.bytes, layout.blockSizeBytes), 0);
    options.onSendStart?.(total);
    let roundBytes = 0;
    await forEachLimit(missing, options.parallel ?? uploadParallelDefault, async ({ hash, index }) => {
      const sentBytes = await sendBlock({ client, pool: options.pool, buffers, file, path, container, layout }, hashmap.bytes, index, hash);
      counts.blocksSent++;
      counts.bytesSent += sentBytes;
      roundBytes += blockLength(index, hashmap.bytes, layout.blockSizeBytes);
      options.onSendProgress?.(roundBytes);
    });
  }
  throw new RemoteError("EINTEGRITY", `upload ${container}/${object}: the server still lacks blocks after ${uploadRoundsMax} hashmap requests`);
}

interface BlockSource {
  client: PithosClient;
  pool: HashPool;
  buffers: BlockBuffers;
  file: FileHandle;
  path: string;
  container: string;
  layout: ContainerLayout;
}

/**
 * Reads block `index` again, checks it still has the hash the hashmap says (the file may
 * have changed since it was hashed), sends it without its trailing NULs (the server hashes
 * it the same way), and checks the hash the server computed. Returns the bytes sent.
 */
async function sendBlock(source: BlockSource, sizeBytes: number, index: number, hash: string): Promise<number> {
  const { client, pool, buffers, file, path, container, layout } = source;
  const block = buffers.take(blockLength(index, sizeBytes, layout.blockSizeBytes));
  await readFully(file, path, block, index * layout.blockSizeBytes);
  const hashed = await pool.hashBlock(layout.hashAlgorithm, block);
  if (hashed.hash.toString("hex") !== hash) {
    throw new LocalFileError(`cannot upload ${path}: it changed while being uploaded (block ${index}); run the upload again`);
  }
  const data = hashed.data.subarray(0, hashed.strippedBytes);
  // The request is complete (its body sent, its reply read) when this returns: the buffer is free again.
  const stored = await client.uploadBlock(container, data).finally(() => buffers.give(hashed.data));
  if (stored.length !== 1 || stored[0] !== hash) {
    throw new RemoteError("EINTEGRITY", `upload a block to ${container}: the server stored it as ${stored.join(",") || "nothing"}, expected ${hash}`);
  }
  return data.length;
}
