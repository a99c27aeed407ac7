/**
 * Diff: which blocks differ between two maps, from the maps alone (no data is read).
 *
 * Two entries name the same data when their records are equal. Hashing renames a
 * snapshot's private blocks to content-addressed ones while its volume (and its older
 * clones) still name the private originals, so a hashed map's pre-hash entries
 * (`o.<mapId>`) count as equal too. Unrelated maps compare correctly but coarsely: blocks
 * with equal content are only recognised when both are content-addressed.
 *
 * A volume open for writing elsewhere is compared as of its last flush.
 */
import type { MapEntries } from "./entries.ts";
import type { MapStore } from "./map-store.ts";

export interface ChangedRange {
  offsetBytes: number;
  lengthBytes: number;
}

export interface DiffResult {
  /** Changed byte ranges in ascending order, adjacent blocks merged. */
  ranges: ChangedRange[];
  changedBlocks: number;
  totalBlocks: number;
  blockSizeBytes: number;
}

interface Side {
  entries: MapEntries;
  original: MapEntries | undefined;
}

export async function diffMaps(maps: MapStore, nameA: string, nameB: string): Promise<DiffResult> {
  const [a, b] = await Promise.all([loadSide(maps, nameA), loadSide(maps, nameB)]);
  const blockSizeBytes = maps.blockSizeBytes;
  const sizeBytes = Math.max(a.sizeBytes, b.sizeBytes);
  const totalBlocks = Math.max(a.side.entries.count, b.side.entries.count);
  const ranges: ChangedRange[] = [];
  let changedBlocks = 0;
  for (let index = 0; index < totalBlocks; index++) {
    if (sameBlock(a.side, b.side, index)) continue;
    changedBlocks++;
    const offsetBytes = index * blockSizeBytes;
    const lengthBytes = Math.min(blockSizeBytes, sizeBytes - offsetBytes);
    const last = ranges.at(-1);
    if (last !== undefined && last.offsetBytes + last.lengthBytes === offsetBytes) last.lengthBytes += lengthBytes;
    else ranges.push({ offsetBytes, lengthBytes });
  }
  return { ranges, changedBlocks, totalBlocks, blockSizeBytes };
}

async function loadSide(maps: MapStore, name: string): Promise<{ side: Side; sizeBytes: number }> {
  const { header, entries } = await maps.loadMap(name);
  return { side: { entries, original: await maps.loadOriginalEntries(header) }, sizeBytes: header.sizeBytes };
}

function sameBlock(a: Side, b: Side, index: number): boolean {
  const inA = index < a.entries.count;
  const inB = index < b.entries.count;
  // Past the end of the shorter map, the other map's block is unchanged if it is zero.
  if (!inA) return b.entries.isZero(index);
  if (!inB) return a.entries.isZero(index);
  for (const left of [a.entries, a.original]) {
    for (const right of [b.entries, b.original]) {
      if (left !== undefined && right !== undefined && left.equals(index, right)) return true;
    }
  }
  return false;
}
