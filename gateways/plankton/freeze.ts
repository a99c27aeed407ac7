/**
 * Freezing a volume into an image (issue 7's duality, issue 8's createImage): the image is a
 * Pithos+ file whose map names the volume's blocks; no block is copied, only the blocks the
 * volume changed since it was last hashed are read and stored.
 *
 *   beginFreeze     a `queued` image with an empty file images/<id>, at once: Nova's
 *                   createImage answers with the id, and the SDK looks for it in the listing
 *   completeFreeze  queued ─► saving ─► snapshot freeze-<id> ─► hash ─► the snapshot's map
 *                   as a new version of images/<id> ─► snapshot deleted ─► active
 *   failFreeze      the snapshot and the image deleted (Nova's `delete_image_on_error`,
 *                   nova/compute/manager.py: a failed snapshot leaves no image behind)
 *
 * Every step of completeFreeze is idempotent and finds where a crashed run stopped: the
 * snapshot's name derives from the image id (so failFreeze finds it too); a frozen map of
 * that name means "snapshotted"; hashing resumes from its own checkpoints (engine/mapper/
 * hash.ts); a file version carrying `frozenFromMetaKey` means "stored"; the image's status
 * says the rest.
 */
import { getContainerById, isDbError, updateImage, type ImageWithFile, type PlanktonImageStatus } from "../../db/index.ts";
import type { Engine } from "../../engine/engine.ts";
import { isEngineError } from "../../engine/errors.ts";
import { imageNotFound, isPlanktonError, PlanktonError, toPlanktonError } from "./errors.ts";
import { newFileMapName } from "../pithos/service.ts";
import { checksumOf, type PlanktonService } from "./service.ts";

/**
 * Object metadata on the stored version (X-Object-Meta-Source-Volume): which volume the file
 * was frozen from, and — its presence — that the store step is done.
 */
export const frozenFromMetaKey = "Source-Volume";
const imageContentType = "application/octet-stream";

export interface BeginFreezeOptions {
  /** The user uuid who owns the image and whose quota pays for its new blocks. */
  owner: string;
  name: string;
  properties?: Record<string, string>;
}

export interface CompleteFreezeOptions {
  imageId: string;
  owner: string;
  /** The engine volume to freeze. */
  volume: string;
  /**
   * Takes a snapshot of `volume` named `snapshotName`. A volume open in a serving process is
   * snapshotted there, between requests after a flush (compute); the CLI asks the engine or
   * the serving process's control socket. Not called when that snapshot already exists.
   */
  snapshot: (snapshotName: string) => Promise<void>;
  onProgress?: (doneBlocks: number, totalBlocks: number) => void;
}

/** What completeFreeze did (callers that only await it may ignore it). */
export interface FreezeResult {
  image: ImageWithFile;
  /** Blocks of the image. */
  totalBlocks: number;
  /** Blocks hashing stored anew in this run (0 when an earlier run had stored the file). */
  storedBlocks: number;
  /** An earlier run had got as far as the snapshot or further. */
  resumed: boolean;
}

/** The snapshot a freeze works through: derived from the image id alone, a valid map name. */
export function freezeSnapshotName(imageId: string): string {
  return `freeze-${imageId}`;
}

/** Creates the image, `queued`, with an empty file `images/<id>`: no block written. */
export async function beginFreeze(plankton: PlanktonService, options: BeginFreezeOptions): Promise<{ imageId: string }> {
  const created = await plankton.create(options.owner, {
    name: options.name,
    // What Nova's snapshot of a raw disk is, and what `--from-volume` always stored.
    diskFormat: "raw",
    containerFormat: "bare",
    properties: options.properties ?? {},
  });
  return { imageId: created.image.uuid };
}

/**
 * Snapshots the volume, hashes the snapshot, stores its map as the image's file and makes the
 * image `active`. Run it again after a crash at any point and it finishes the job.
 */
export async function completeFreeze(plankton: PlanktonService, engine: Engine, options: CompleteFreezeOptions): Promise<FreezeResult> {
  const snapshotName = freezeSnapshotName(options.imageId);
  let entry = await plankton.refresh(options.imageId);
  if (entry.image.owner !== options.owner) throw new PlanktonError("EFORBIDDEN", `Image ${options.imageId} is not ${options.owner}'s.`);
  const blockSizeBytes = engine.blockSizeBytes;
  const blocksOf = (sizeBytes: number) => Math.ceil(sizeBytes / blockSizeBytes);

  if (entry.image.status === "active" && isFrozenFile(entry)) {
    // Done before; a snapshot left by a crash just before `active` cannot exist (it is
    // deleted first), but deleting is cheap and keeps this step obviously idempotent.
    await deleteIfPresent(engine, snapshotName);
    return { image: entry, totalBlocks: blocksOf(entry.file.version.sizeBytes), storedBlocks: 0, resumed: true };
  }
  if (entry.image.status !== "queued" && entry.image.status !== "saving") {
    throw new PlanktonError("ECONFLICT", `Image ${options.imageId} is ${entry.image.status}: it cannot be frozen into.`);
  }
  let resumed = entry.image.status === "saving";
  if (entry.image.status === "queued") {
    // Claims the image: a Glance upload needs `queued`, so from here on only a freeze writes it.
    await setStatus(plankton, options.imageId, { status: "saving" }, ["queued", "saving"]);
  }

  let storedBlocks = 0;
  if (!isFrozenFile(entry)) {
    if (await frozenMapExists(engine, snapshotName)) resumed = true;
    else await options.snapshot(snapshotName);
    const hashed = await engine.hash(snapshotName, (step) => options.onProgress?.(step.doneBlocks, step.totalBlocks));
    storedBlocks = hashed.storedBlocks;
    await storeAsFile(plankton, engine, entry, snapshotName, {
      modifiedBy: options.owner,
      meta: { [frozenFromMetaKey]: options.volume },
      // Only the blocks hashing stored anew are new on disk; the rest are the volume's.
      // A resumed hash counts only its own run's blocks: the owner is charged less, never twice.
      chargeBytes: Math.min(storedBlocks * blockSizeBytes, hashed.header.sizeBytes),
    });
    entry = await plankton.refresh(options.imageId);
  } else {
    resumed = true;
  }
  // The file holds its own copy of the map; the snapshot was only the way there.
  await deleteIfPresent(engine, snapshotName);
  // Size is the file's; the checksum, as for any registered file, is its MD5 ETag when it has
  // one — a map of hashes has none, and computing one would read every block of the volume.
  await setStatus(plankton, options.imageId, { status: "active", checksum: checksumOf(entry.file.version) }, ["saving"]);
  return { image: await plankton.refresh(options.imageId), totalBlocks: blocksOf(entry.file.version.sizeBytes), storedBlocks, resumed };
}

/**
 * A freeze that will not be finished: its snapshot and its image are deleted, as Nova does
 * with the image of a failed snapshot. An image already `active` is kept (the freeze did
 * finish); an image gone already is fine. A protected image cannot be deleted: it is `killed`.
 */
export async function failFreeze(plankton: PlanktonService, imageId: string): Promise<void> {
  await deleteIfPresent(plankton.pithos.engine, freezeSnapshotName(imageId));
  let entry: ImageWithFile;
  try {
    entry = await plankton.refresh(imageId);
  } catch (error) {
    if (isPlanktonError(error, "ENOT_FOUND")) return;
    throw error;
  }
  const { image } = entry;
  if (image.status === "active") return;
  if (image.protected) {
    await setStatus(plankton, imageId, { status: "killed" }, ["queued", "saving", "killed"]);
    return;
  }
  try {
    await plankton.delete(image.owner, imageId, { keepFile: false });
  } catch (error) {
    if (!isPlanktonError(error, "ENOT_FOUND")) throw error;
  }
}

/**
 * The snapshot's map as the new version of the image's file: PithosService.putFromMap, except
 * when the commit throws after it stored the version (its cleanup of the replaced empty map
 * failed): putFromMap would then drop the map the file now names. Here the file is read back,
 * and the new map is dropped only if the file does not name it; a replaced map left behind is
 * gc's.
 */
async function storeAsFile(
  plankton: PlanktonService,
  engine: Engine,
  entry: ImageWithFile,
  snapshotName: string,
  options: { modifiedBy: string; meta: Record<string, string>; chargeBytes: number },
): Promise<void> {
  const container = await getContainerById(plankton.db, entry.file.containerId);
  if (container === undefined) throw imageNotFound(entry.image.uuid);
  const hashmap = await engine.fileHashmap(snapshotName);
  const mapName = newFileMapName();
  await engine.copyFile(snapshotName, mapName);
  try {
    await plankton.pithos.commit(
      container,
      entry.file.path,
      { mapName, sizeBytes: hashmap.sizeBytes, contentHash: hashmap.contentHash, etag: hashmap.contentHash, contentType: imageContentType, meta: options.meta },
      // The file must still be the empty one beginFreeze made: no other writer meanwhile.
      { modifiedBy: options.modifiedBy, expectCurrentSerial: entry.file.version.serial, chargeBytes: options.chargeBytes },
    );
  } catch (error) {
    // Unsure whether the file names the map (the read fails too): keep it (a leak for gc), not drop it.
    const now = await plankton.refresh(entry.image.uuid);
    if (now.file.version.mapName === mapName) return;
    await plankton.pithos.dropMaps([mapName]);
    throw error;
  }
}

/** A status change the image must be ready for (another writer changed it: 409). */
async function setStatus(plankton: PlanktonService, imageId: string, fields: { status: PlanktonImageStatus; checksum?: string | null }, expectStatus: readonly PlanktonImageStatus[]): Promise<void> {
  try {
    await updateImage(plankton.db, imageId, fields, { expectStatus });
  } catch (error) {
    throw isDbError(error) ? toPlanktonError(error) : error;
  }
}

/** The store step is done: the file's current version is a frozen volume, not the empty file. */
function isFrozenFile(entry: ImageWithFile): boolean {
  return Object.hasOwn(entry.file.version.meta, frozenFromMetaKey);
}

async function frozenMapExists(engine: Engine, name: string): Promise<boolean> {
  try {
    const header = await engine.maps.loadHeader((await engine.maps.lookup(name)).mapId);
    if (!header.frozen) throw new PlanktonError("ECONFLICT", `${name} exists and is a writable volume, not a freeze's snapshot.`);
    return true;
  } catch (error) {
    if (isEngineError(error, "ENOT_FOUND")) return false;
    throw error;
  }
}

async function deleteIfPresent(engine: Engine, name: string): Promise<void> {
  try {
    await engine.delete(name);
  } catch (error) {
    if (!isEngineError(error, "ENOT_FOUND")) throw error;
  }
}
