/**
 * Hash (publish): turn a frozen map's private blocks into content-addressed ones.
 *
 * Each private block is read, hashed by the Pithos+ rule and stored as `b.<hash>` unless
 * that block already exists (dedup); its entry is rewritten to name the shared block.
 * Progress is persisted every `hashCheckpointBlocks` blocks, so an interrupted hash
 * resumes where it stopped: done entries are content entries and are skipped.
 *
 * Before the first rewrite the map's original entries are saved (`o.<mapId>`): diff uses
 * them to see that a hashed snapshot's block is the same block its volume still names
 * privately.
 */
import { blockHash, merkleRoot, putBlock } from "../blocker/content.ts";
import { EngineError, isEngineError } from "../errors.ts";
import { runs, type MapEntries } from "./entries.ts";
import type { MapHeader } from "./headers.ts";
import { mapOriginalEntriesObject } from "./headers.ts";
import type { MapStore } from "./map-store.ts";

/** Blocks hashed between two durable checkpoints: at most 64 blocks of work are redone after a crash. */
export const hashCheckpointBlocks = 64;
/**
 * Blocks read and hashed at once: enough to overlap the store's latency with hashing on
 * the other core, while holding at most 4 × 4 MiB in memory.
 */
export const hashParallelBlocks = 4;

export interface HashProgress {
  doneBlocks: number;
  totalBlocks: number;
  /** Blocks that were not already stored (the rest deduplicated). */
  storedBlocks: number;
}

export interface HashResult extends HashProgress {
  header: MapHeader;
  /** Entries of the source volume repointed at the new shared blocks (0 if it was busy or gone). */
  repointedBlocks: number;
}

export async function hashMap(maps: MapStore, name: string, onProgress?: (progress: HashProgress) => void): Promise<HashResult> {
  const directoryEntry = await maps.lookup(name);
  const header = await maps.loadHeader(directoryEntry.mapId);
  if (!header.frozen) {
    throw new EngineError("ENOT_FROZEN", `${name} is a writable volume: snapshot it and hash the snapshot`, { name });
  }
  // One hasher at a time per map; the lock also keeps a delete from racing us.
  const lock = await maps.lockMap(header, `hash ${name}`);
  try {
    return await hashLocked(maps, header, onProgress);
  } finally {
    await lock.release();
  }
}

async function hashLocked(maps: MapStore, header: MapHeader, onProgress?: (progress: HashProgress) => void): Promise<HashResult> {
  const objects = maps.objects;
  const algorithm = maps.header.hashAlgorithm;
  const entries = await maps.loadEntries(header);
  const original = entries.clone();
  const pending: number[] = [];
  for (let index = 0; index < entries.count; index++) if (entries.get(index).kind === "private") pending.push(index);
  const progress: HashProgress = { doneBlocks: entries.count - pending.length, totalBlocks: entries.count, storedBlocks: 0 };
  onProgress?.({ ...progress });

  if (pending.length > 0 && (await objects.stat(mapOriginalEntriesObject(header.mapId))) === undefined) {
    await maps.writeEntries(header.mapId, entries, 0, entries.count, mapOriginalEntriesObject(header.mapId));
  }
  for (let start = 0; start < pending.length; start += hashCheckpointBlocks) {
    const batch = pending.slice(start, start + hashCheckpointBlocks);
    for (let offset = 0; offset < batch.length; offset += hashParallelBlocks) {
      await Promise.all(
        batch.slice(offset, offset + hashParallelBlocks).map(async (index) => {
          const object = entries.objectName(index) as string;
          const blockBytes = Math.min(header.blockSizeBytes, header.sizeBytes - index * header.blockSizeBytes);
          const data = await objects.read(object, 0, blockBytes);
          const stored = await putBlock(objects, algorithm, data);
          if (stored.zero) entries.setZero(index);
          else entries.setContent(index, stored.hash);
          if (stored.created) progress.storedBlocks++;
          progress.doneBlocks++;
        }),
      );
    }
    // New blocks durable before the entries that name them.
    await objects.barrier();
    const first = batch[0] as number;
    const last = batch.at(-1) as number;
    await maps.writeEntries(header.mapId, entries, first, last - first + 1);
    await objects.barrier();
    onProgress?.({ ...progress });
  }

  const hashes: Buffer[] = [];
  const zeroHash = blockHash(algorithm, Buffer.alloc(0));
  for (let index = 0; index < entries.count; index++) {
    const entry = entries.get(index);
    hashes.push(entry.kind === "content" ? entry.hash : zeroHash);
  }
  const updated: MapHeader = { ...header, contentHash: merkleRoot(algorithm, hashes).toString("hex") };
  await maps.writeHeader(updated);
  await objects.barrier();
  const repointedBlocks = await repointSourceVolume(maps, updated, original, entries);
  return { ...progress, header: updated, repointedBlocks };
}

/**
 * The volume a snapshot was taken from still names, for every block it has not rewritten
 * since, the same private objects the snapshot named before hashing. Pointing those entries
 * at the new content-addressed blocks lets gc free the private copies, so hashing really
 * returns space. It needs the volume's writer lock; a volume that is open (served) is left
 * alone and keeps its private copies until it rewrites the blocks or is deleted.
 */
async function repointSourceVolume(maps: MapStore, snapshot: MapHeader, original: MapEntries, hashed: MapEntries): Promise<number> {
  if (snapshot.parentMapId === null) return 0;
  let source: MapHeader;
  try {
    source = await maps.loadHeader(snapshot.parentMapId);
    // Only a named, writable volume: a deleted one has nothing left to repoint.
    if (source.frozen || (await maps.lookup(source.name)).mapId !== source.mapId) return 0;
  } catch (error) {
    if (isEngineError(error, "ENOT_FOUND") || isEngineError(error, "ECORRUPT")) return 0;
    throw error;
  }
  let lock;
  try {
    lock = await maps.lockMap(source, `repoint ${source.name} after hashing ${snapshot.name}`);
  } catch (error) {
    if (isEngineError(error, "EVOLUME_LOCKED")) return 0;
    throw error;
  }
  try {
    const entries = await maps.loadEntries(await maps.loadHeader(source.mapId));
    const changed: number[] = [];
    const count = Math.min(entries.count, original.count);
    for (let index = 0; index < count; index++) {
      if (original.equals(index, hashed, index) || !entries.equals(index, original, index)) continue;
      entries.setFrom(index, hashed, index);
      changed.push(index);
    }
    // The shared blocks are durable already (hash made them so before naming them).
    for (const [first, n] of runs(changed)) await maps.writeEntries(source.mapId, entries, first, n);
    await maps.objects.barrier();
    return changed.length;
  } finally {
    await lock.release();
  }
}
