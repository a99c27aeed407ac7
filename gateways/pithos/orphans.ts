/**
 * Orphan file maps: a `pithos.<uuid>` map in the engine that no version row names. service.ts
 * writes a version's map (engine) before it records the version (database), so a crash, a
 * lost database connection or a failed clean-up in between leaves a map nothing will ever
 * read or delete — and the engine's gc keeps every block a named map references. This sweep
 * deletes them; the next engine gc frees their blocks (those no other map shares).
 *
 *   engine.list() ─► pithos.* maps ─► older than the grace? ─► named by a version row? ─► keep
 *                                          │ no: keep (in flight)      │ no: delete the map
 *
 * The grace protects a write in flight: its map is named (directory entry, `createdAtMs` set
 * when the map was created) a few queries before its version row is recorded. A version row
 * never comes to name an existing map it did not name at creation — only a metadata change or
 * a move reuses a map, and only the map of a version that still names it — so a map found
 * unnamed and older than the grace stays an orphan. `createdAtMs` is the writing node's clock:
 * the default hour dwarfs any skew between API nodes.
 */
import { isEngineError } from "../../engine/errors.ts";
import { mapNamesInUse, pithosMapNamesPerQueryMax } from "../../db/index.ts";
import { fileMapPrefix, type PithosService } from "./service.ts";

/**
 * Default grace: a version is recorded milliseconds after its map is named (seconds under a
 * busy database's lock waits); an hour is the engine gc's grace too (mapper/gc.ts), so one
 * `okeanos gc` treats maps and blocks alike.
 */
export const orphanGraceDefaultMs = 60 * 60 * 1000;

export interface SweepOrphanMapsOptions {
  /** Keep unnamed maps created less than this long ago (default orphanGraceDefaultMs). */
  olderThanMs?: number;
  /** Count, delete nothing. */
  dryRun?: boolean;
  /**
   * Sweep even when the database names none of the store's file maps. Without it that case
   * is refused: the database is most likely not this store's, and every file would go.
   */
  force?: boolean;
  /** The clock (tests). */
  nowMs?: number;
}

export interface SweepOrphanMapsResult {
  /** `pithos.*` maps in the store. */
  fileMaps: number;
  /** Named by a version row (current, history or deleted). */
  referencedMaps: number;
  /** Named by no version but younger than the grace: maybe a write in flight. */
  keptRecentMaps: number;
  /** Orphans deleted (with dryRun: that would be). */
  removedMaps: number;
  /** Orphans locked by another process (being deleted already, or in use): left for the next sweep. */
  lockedMaps: number;
  olderThanMs: number;
  dryRun: boolean;
}

/** The sweep would delete every file map it looked at (SweepOrphanMapsOptions.force). */
export class OrphanSweepRefused extends Error {
  override readonly name = "OrphanSweepRefused";
  /** The maps a forced sweep would delete. */
  readonly orphanMaps: number;

  constructor(message: string, orphanMaps: number) {
    super(message);
    this.orphanMaps = orphanMaps;
  }
}

export async function sweepOrphanMaps(service: PithosService, options: SweepOrphanMapsOptions = {}): Promise<SweepOrphanMapsResult> {
  const olderThanMs = options.olderThanMs ?? orphanGraceDefaultMs;
  if (!Number.isSafeInteger(olderThanMs) || olderThanMs < 0) throw new RangeError(`olderThanMs must be a non-negative integer, not ${olderThanMs}`);
  const cutoffMs = (options.nowMs ?? Date.now()) - olderThanMs;
  const dryRun = options.dryRun === true;
  const fileMaps = (await service.engine.list()).filter((entry) => entry.name.startsWith(fileMapPrefix));
  const used = await mapNamesInUse(
    service.db,
    fileMaps.map((entry) => entry.name),
  );
  const unnamed = fileMaps.filter((entry) => !used.has(entry.name));
  const orphans = unnamed.filter((entry) => entry.createdAtMs <= cutoffMs).map((entry) => entry.name);
  const result: SweepOrphanMapsResult = {
    fileMaps: fileMaps.length,
    referencedMaps: used.size,
    keptRecentMaps: unnamed.length - orphans.length,
    removedMaps: 0,
    lockedMaps: 0,
    olderThanMs,
    dryRun,
  };
  if (orphans.length > 0 && used.size === 0 && options.force !== true) {
    throw new OrphanSweepRefused(`the database names none of the store's ${fileMaps.length} file maps: is it this store's database?`, orphans.length);
  }
  if (dryRun) {
    result.removedMaps = orphans.length;
    return result;
  }
  for (let first = 0; first < orphans.length; first += pithosMapNamesPerQueryMax) {
    const batch = orphans.slice(first, first + pithosMapNamesPerQueryMax);
    // Checked again just before deleting: cheap, and it narrows the window to this batch.
    const nowUsed = await mapNamesInUse(service.db, batch);
    for (const name of batch) {
      if (nowUsed.has(name)) {
        result.referencedMaps++;
        continue;
      }
      const outcome = await deleteMap(service, name);
      if (outcome === "removed") result.removedMaps++;
      else if (outcome === "locked") result.lockedMaps++;
    }
  }
  return result;
}

async function deleteMap(service: PithosService, name: string): Promise<"removed" | "gone" | "locked"> {
  try {
    await service.engine.delete(name);
    return "removed";
  } catch (error) {
    if (isEngineError(error, "ENOT_FOUND")) return "gone";
    if (isEngineError(error, "EVOLUME_LOCKED")) return "locked";
    throw error;
  }
}
