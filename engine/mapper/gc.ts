/**
 * Garbage collection: mark what live maps reference, sweep the rest after a grace period.
 *
 * Mark: every named map's header, entries and pre-hash entries, and every object its
 * entries name. A volume open for writing may reference objects of its current epoch
 * that its stored map does not name yet (written, not yet flushed): those are protected
 * by prefix. Sweep: any unmarked, unprotected object of ours older than the grace period.
 * Private blocks can never gain references once their epoch is over, so they are swept
 * without more ado. Content blocks (`b.<hash>`) can: an upload or a hash finds an old,
 * unreferenced block already stored and names it in a new or rewritten map (dedup), and
 * the grace does not protect it (its mtime is old). For them, the reference gate
 * (references.ts):
 *
 *   referrer   [──── l.refs shared: look at blocks / source map … map durable, pin it ────]
 *   gc         [X: g.run] mark … [X: g.run still ours? read pins, re-read pinned maps, remove ≤256] [X …] … end
 *
 * Referrers: every operation that makes a map reference a block holds l.refs shared from
 * before it looks at the block (createExclusive or stat finding it there, or the source map
 * it copies) until the map naming it is durable — writeFile, createFile, copyFile, clone —
 * and pins that map (createMap does) if g.run names a run. Operations that rewrite a
 * map in place (hash, repoint, a volume's writer importing blocks) do so under the map's
 * writer lock, and lockMap pins the map when the lock is taken.
 *
 * Claim: gc removes b only if, at that moment, no named map references b, and no
 * referrer can still make one reference it without first seeing b missing.
 * gc removes b under its exclusive hold X_k of l.refs, having seen b unmarked at mark and
 * not referenced by any map pinned so far. Take any map M referencing b at that moment.
 * - M was last made or changed by a referrer session that ended before X_1 (g.run
 *   written): M was durable before the mark listed it, so mark read b from it — unless its
 *   writer lock was held when mark looked, and then gc sweeps no content block at all.
 *   (Mark checks a map's lock *before* reading its entries: a lock released after the
 *   check was taken after it, so after X_1, and pinned.)
 * - M was made, or locked, after X_1 and before X_k: the session read g.run and pinned M.
 *   Under X_k no session runs, so every such pin is listed; gc re-reads M (a map whose lock
 *   is still held makes gc stop sweeping content blocks for this run), and finds b.
 * - No session overlaps X_k. One that starts after it and looks at b finds it missing:
 *   writeFile stores it again, createFile reports it missing (Pithos's 409), a copy or
 *   clone reads a source map that, named at X_k, did not reference b (by the cases above).
 * So no map ever names a missing block. Two gcs: one that begins replaces g.run and clears
 * the pins, and a run that finds g.run not its own under X_k stops sweeping content blocks
 * (its pins may be gone); a run ends by removing g.run if still its own, then its own pins.
 * Shared holders never wait on each other; a
 * referrer waits for at most one batch. gc waits up to `lockWaitMs` per hold and, if
 * uploads keep l.refs held longer (readers go first on flock and cls_lock), skips content
 * blocks for this run (`contentSweepSkipped`) rather than stall the uploads. A crashed gc
 * leaves g.run behind; referrers then pin (one empty object per map) until the next gc
 * clears it. On rados a shared hold is a lease: a referrer paused for longer than it
 * (30 s) between looking at a block and naming its map is outside the argument.
 */
import { isEngineError } from "../errors.ts";
import { objectKind, type ObjectKind } from "./object-kinds.ts";
import { directoryObject, mapEntriesObject, mapHeaderObject, mapOriginalEntriesObject, storeHeaderObject, type MapHeader } from "./headers.ts";
import type { MapStore } from "./map-store.ts";

/** Default grace: longer than any flush interval a client could plausibly leave open. */
export const gcGraceDefaultMs = 60 * 60 * 1000;
/**
 * Content blocks removed per exclusive hold: referrers wait for one batch, ~256 removals
 * (tens of ms on a local disk, well under a second on RADOS at one op in flight) plus a
 * listing of the run's pins.
 */
export const gcSweepBatchObjects = 256;
/** How long gc waits for referrers to let it take l.refs exclusively, each time. */
export const gcLockWaitDefaultMs = 10_000;

export interface GcOptions {
  graceMs?: number;
  dryRun?: boolean;
  /** Per exclusive hold of l.refs (default gcLockWaitDefaultMs). */
  lockWaitMs?: number;
  /** Called between the mark and the sweep (tests pause gc there). */
  onMarked?: () => Promise<void>;
}

export interface GcResult {
  liveMaps: number;
  referencedObjects: number;
  examinedObjects: number;
  removedObjects: number;
  removedBytes: number;
  /** Unreferenced but younger than the grace period. */
  keptRecentObjects: number;
  /** True when content blocks were (partly) left alone: a writer or hasher holds a lock, or uploads kept gc out. */
  contentSweepSkipped: boolean;
  /** Why, when contentSweepSkipped. */
  contentSweepSkippedReason?: string;
  removedByKind: Partial<Record<ObjectKind, number>>;
  dryRun: boolean;
}

interface Marks {
  referenced: Set<string>;
  protectedPrefixes: string[];
}

export async function collectGarbage(maps: MapStore, options: GcOptions = {}): Promise<GcResult> {
  const graceMs = options.graceMs ?? gcGraceDefaultMs;
  const lockWaitMs = options.lockWaitMs ?? gcLockWaitDefaultMs;
  const dryRun = options.dryRun === true;
  const objects = maps.objects;
  const gate = maps.references;
  let skipped: string | undefined;

  let runId: string | undefined;
  const begin = await gate.exclusive(lockWaitMs);
  if ("busy" in begin) {
    skipped = begin.busy;
  } else {
    try {
      runId = await gate.beginRun();
    } finally {
      await begin.release();
    }
  }

  try {
    const marks: Marks = { referenced: new Set<string>([storeHeaderObject]), protectedPrefixes: [] };
    const named = await maps.list();
    let lockedMaps = 0;
    for (const entry of named) {
      marks.referenced.add(directoryObject(entry.name));
      // The lock before the entries: see the header (a lock released after this check was taken after g.run).
      const locked = (await objects.lockHolder(maps.lockObject(entry.mapId))) !== undefined;
      const header = await markMap(maps, entry.mapId, marks);
      if (locked && header !== undefined) {
        lockedMaps++;
        if (!header.frozen) marks.protectedPrefixes.push(`p.${header.volumeId}.${header.epoch.toString(16).padStart(8, "0")}.`);
      }
    }
    if (lockedMaps > 0) skipped ??= `${lockedMaps} map(s) locked by a writer or hasher`;
    await options.onMarked?.();

    const result: GcResult = {
      liveMaps: named.length,
      referencedObjects: marks.referenced.size,
      examinedObjects: 0,
      removedObjects: 0,
      removedBytes: 0,
      keptRecentObjects: 0,
      contentSweepSkipped: false,
      removedByKind: {},
      dryRun,
    };
    const cutoffMs = Date.now() - graceMs;
    const count = (object: string, sizeBytes: number): void => {
      result.removedObjects++;
      result.removedBytes += sizeBytes;
      const kind = objectKind(object);
      result.removedByKind[kind] = (result.removedByKind[kind] ?? 0) + 1;
    };
    const candidates = async (prefix: string): Promise<Array<{ object: string; sizeBytes: number }>> => {
      const found: Array<{ object: string; sizeBytes: number }> = [];
      for await (const object of objects.list(prefix)) {
        result.examinedObjects++;
        if (marks.referenced.has(object) || marks.protectedPrefixes.some((p) => object.startsWith(p))) continue;
        const stat = await objects.stat(object);
        if (stat === undefined) continue;
        if (stat.mtimeMs > cutoffMs) result.keptRecentObjects++;
        else found.push({ object, sizeBytes: stat.sizeBytes });
      }
      return found;
    };

    // Content blocks first, so maps pinned meanwhile protect their own objects below too.
    if (skipped === undefined && runId !== undefined) {
      skipped = await sweepContent(maps, runId, marks, await candidates("b."), { dryRun, lockWaitMs, count });
    }
    if (skipped !== undefined) {
      result.contentSweepSkipped = true;
      result.contentSweepSkippedReason = skipped;
    }
    for (const prefix of ["p.", "m.", "e.", "o.", "d."]) {
      for (const { object, sizeBytes } of await candidates(prefix)) {
        if (marks.referenced.has(object)) continue;
        if (!dryRun && !(await objects.remove(object))) continue;
        count(object, sizeBytes);
      }
    }
    if (!dryRun) await objects.barrier();
    result.referencedObjects = marks.referenced.size;
    return result;
  } finally {
    if (runId !== undefined) await gate.endRun(runId);
  }
}

interface SweepOptions {
  dryRun: boolean;
  lockWaitMs: number;
  count(object: string, sizeBytes: number): void;
}

/** Removes unreferenced content blocks, a batch per exclusive hold; says why it stopped early, if it did. */
async function sweepContent(maps: MapStore, runId: string, marks: Marks, found: Array<{ object: string; sizeBytes: number }>, options: SweepOptions): Promise<string | undefined> {
  const gate = maps.references;
  const seenPins = new Set<string>();
  for (let start = 0; start < found.length; start += gcSweepBatchObjects) {
    const held = await gate.exclusive(options.lockWaitMs);
    if ("busy" in held) return held.busy;
    try {
      // Another gc began since (and cleared our pins): it sweeps; we stop.
      if (!(await gate.isCurrentRun(runId))) return "another gc began meanwhile";
      for (const [pin, mapId] of await gate.pins(runId)) {
        if (seenPins.has(pin)) continue;
        seenPins.add(pin);
        // Held: its holder may be about to write references we cannot see yet.
        if ((await maps.objects.lockHolder(maps.lockObject(mapId))) !== undefined) return `map ${mapId} was locked during gc`;
        const header = await markMap(maps, mapId, marks);
        if (header !== undefined) marks.referenced.add(directoryObject(header.name));
      }
      for (const { object, sizeBytes } of found.slice(start, start + gcSweepBatchObjects)) {
        if (marks.referenced.has(object)) continue;
        if (!options.dryRun && !(await maps.objects.remove(object))) continue;
        options.count(object, sizeBytes);
      }
    } finally {
      await held.release();
    }
  }
  return undefined;
}

/** Marks a map's objects and every object its entries name; undefined if it is gone. */
async function markMap(maps: MapStore, mapId: string, marks: Marks): Promise<MapHeader | undefined> {
  marks.referenced.add(mapHeaderObject(mapId));
  marks.referenced.add(mapEntriesObject(mapId));
  marks.referenced.add(mapOriginalEntriesObject(mapId));
  // Gone: deleted since it was listed or pinned (the name goes first, then the header).
  if ((await maps.objects.stat(mapHeaderObject(mapId))) === undefined) return undefined;
  let header: MapHeader;
  try {
    header = await maps.loadHeader(mapId);
  } catch (error) {
    if (isEngineError(error, "ENOT_FOUND")) return undefined;
    throw error;
  }
  const entries = await maps.loadEntries(header);
  for (let index = 0; index < entries.count; index++) {
    const object = entries.objectName(index);
    if (object !== undefined) marks.referenced.add(object);
  }
  return header;
}
