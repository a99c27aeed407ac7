/**
 * Garbage collection: mark what live maps reference, sweep the rest after a grace period.
 *
 * Mark: every named map's header, entries and pre-hash entries, and every object its
 * entries name. A volume open for writing may reference objects of its current epoch
 * that its stored map does not name yet (written, not yet flushed): those are protected
 * by prefix. Sweep: any unmarked, unprotected object of ours older than the grace period.
 *
 * Content-addressed blocks can be *re*-referenced by a writer that finds an old block
 * already stored (dedup on hash or import), so they are only swept when no map is locked
 * (no writer or hasher is running); private blocks can never gain references once their
 * epoch is over, so they are always swept.
 */
import { isEngineError } from "../errors.ts";
import { objectKind, type ObjectKind } from "./object-kinds.ts";
import { directoryObject, mapEntriesObject, mapHeaderObject, mapOriginalEntriesObject, storeHeaderObject } from "./headers.ts";
import type { MapStore } from "./map-store.ts";

/** Default grace: longer than any flush interval a client could plausibly leave open. */
export const gcGraceDefaultMs = 60 * 60 * 1000;

export interface GcOptions {
  graceMs?: number;
  dryRun?: boolean;
}

export interface GcResult {
  liveMaps: number;
  referencedObjects: number;
  examinedObjects: number;
  removedObjects: number;
  removedBytes: number;
  /** Unreferenced but younger than the grace period. */
  keptRecentObjects: number;
  /** True when content blocks were left alone because a writer or hasher holds a lock. */
  contentSweepSkipped: boolean;
  removedByKind: Partial<Record<ObjectKind, number>>;
  dryRun: boolean;
}

export async function collectGarbage(maps: MapStore, options: GcOptions = {}): Promise<GcResult> {
  const graceMs = options.graceMs ?? gcGraceDefaultMs;
  const dryRun = options.dryRun === true;
  const objects = maps.objects;
  const referenced = new Set<string>([storeHeaderObject]);
  const protectedPrefixes: string[] = [];
  let lockedMaps = 0;

  const named = await maps.list();
  for (const entry of named) {
    referenced.add(directoryObject(entry.name));
    referenced.add(mapHeaderObject(entry.mapId));
    referenced.add(mapEntriesObject(entry.mapId));
    referenced.add(mapOriginalEntriesObject(entry.mapId));
    let header;
    try {
      header = await maps.loadHeader(entry.mapId);
    } catch (error) {
      if (isEngineError(error, "ENOT_FOUND")) continue;
      throw error;
    }
    const entries = await maps.loadEntries(header);
    for (let index = 0; index < entries.count; index++) {
      const object = entries.objectName(index);
      if (object !== undefined) referenced.add(object);
    }
    if ((await objects.lockHolder(maps.lockObject(header.mapId))) !== undefined) {
      lockedMaps++;
      if (!header.frozen) protectedPrefixes.push(`p.${header.volumeId}.${header.epoch.toString(16).padStart(8, "0")}.`);
    }
  }

  const result: GcResult = {
    liveMaps: named.length,
    referencedObjects: referenced.size,
    examinedObjects: 0,
    removedObjects: 0,
    removedBytes: 0,
    keptRecentObjects: 0,
    contentSweepSkipped: lockedMaps > 0,
    removedByKind: {},
    dryRun,
  };
  const cutoffMs = Date.now() - graceMs;
  for (const prefix of ["b.", "p.", "m.", "e.", "o.", "d."]) {
    if (prefix === "b." && lockedMaps > 0) continue;
    for await (const object of objects.list(prefix)) {
      result.examinedObjects++;
      if (referenced.has(object) || protectedPrefixes.some((p) => object.startsWith(p))) continue;
      const stat = await objects.stat(object);
      if (stat === undefined) continue;
      if (stat.mtimeMs > cutoffMs) {
        result.keptRecentObjects++;
        continue;
      }
      if (!dryRun && !(await objects.remove(object))) continue;
      result.removedObjects++;
      result.removedBytes += stat.sizeBytes;
      const kind = objectKind(object);
      result.removedByKind[kind] = (result.removedByKind[kind] ?? 0) + 1;
    }
  }
  if (!dryRun) await objects.barrier();
  return result;
}
