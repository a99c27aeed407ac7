/**
 * Store statistics: what is stored (objects and bytes by kind) against what the maps
 * describe (logical bytes of allocated blocks), and the ratio between them — the dedup
 * and sharing that content addressing, snapshots and clones buy.
 */
import { objectKind, type ObjectKind } from "./object-kinds.ts";
import type { MapKind } from "./headers.ts";
import type { MapStore } from "./map-store.ts";

export interface StoreStats {
  uri: string;
  blockSizeBytes: number;
  hashAlgorithm: string;
  volumes: number;
  snapshots: number;
  images: number;
  files: number;
  objects: number;
  storedBytes: number;
  byKind: Partial<Record<ObjectKind, { objects: number; bytes: number }>>;
  /** Bytes of non-zero blocks summed over every map: what a copy of each would cost. */
  logicalBytes: number;
  /** Bytes of block objects (content and private) actually stored. */
  storedBlockBytes: number;
  /** logicalBytes / storedBlockBytes (1 when nothing is shared; 0 when nothing is stored). */
  dedupRatio: number;
}

export async function storeStats(maps: MapStore): Promise<StoreStats> {
  const named = await maps.list();
  let logicalBytes = 0;
  const counts: Record<MapKind, number> = { volume: 0, snapshot: 0, image: 0, file: 0 };
  for (const entry of named) {
    counts[entry.kind]++;
    const header = await maps.loadHeader(entry.mapId);
    const entries = await maps.loadEntries(header);
    for (let index = 0; index < entries.count; index++) {
      if (!entries.isZero(index)) logicalBytes += Math.min(header.blockSizeBytes, header.sizeBytes - index * header.blockSizeBytes);
    }
  }
  const byKind: StoreStats["byKind"] = {};
  let objects = 0;
  let storedBytes = 0;
  for await (const name of maps.objects.list("")) {
    const stat = await maps.objects.stat(name);
    if (stat === undefined) continue;
    const kind = objectKind(name);
    const slot = (byKind[kind] ??= { objects: 0, bytes: 0 });
    slot.objects++;
    slot.bytes += stat.sizeBytes;
    objects++;
    storedBytes += stat.sizeBytes;
  }
  const storedBlockBytes = (byKind["content-block"]?.bytes ?? 0) + (byKind["private-block"]?.bytes ?? 0);
  return {
    uri: maps.objects.uri,
    blockSizeBytes: maps.blockSizeBytes,
    hashAlgorithm: maps.header.hashAlgorithm,
    volumes: counts.volume,
    snapshots: counts.snapshot,
    images: counts.image,
    files: counts.file,
    objects,
    storedBytes,
    byKind,
    logicalBytes,
    storedBlockBytes,
    dedupRatio: storedBlockBytes === 0 ? 0 : logicalBytes / storedBlockBytes,
  };
}
