/**
 * BLOCK_STATUS extents for each meta context we offer (proto.md "Metadata querying",
 * "NBD_CMD_BLOCK_STATUS"), as pure functions of the map or of a precomputed diff.
 *
 * Rules every function here keeps (clients rely on them; nbdcopy and qemu-img convert skip
 * ZERO ranges, so a wrong ZERO silently corrupts copies):
 * - extents are contiguous from the requested offset and never reach past the requested
 *   range (which the caller has clamped to the export);
 * - at least one extent when the range is not empty; at most `extentsMax`;
 * - ZERO only on a zero map entry, which reads as zeros without I/O.
 */
import type { ChangedRange } from "../mapper/diff.ts";
import type { Volume } from "../volume.ts";
import { blockStatusScanBlocksMax, blockStatusWindowBlocks } from "./limits.ts";
import { AllocationFlag, DirtyFlag } from "./protocol.ts";
import type { WireExtent } from "./wire.ts";

/** What allocationExtents needs of a volume. */
export type AllocationSource = Pick<Volume, "blockStatus" | "blockSizeBytes">;

/**
 * base:allocation: a zero map entry is HOLE|ZERO (unallocated, reads as zeros); everything
 * else is data (flags 0), even a block whose bytes happen to be zero: we only know what the
 * map says. The map is scanned in windows, stopping once `extentsMax` extents are complete or
 * blockStatusScanBlocksMax blocks were seen; the client asks again for the rest.
 */
export function allocationExtents(volume: AllocationSource, offsetBytes: number, lengthBytes: number, extentsMax: number): WireExtent[] {
  const blockSizeBytes = volume.blockSizeBytes;
  const endBytes = offsetBytes + lengthBytes;
  const firstBlock = Math.floor(offsetBytes / blockSizeBytes);
  const scanEndBytes = Math.min(endBytes, (firstBlock + blockStatusScanBlocksMax) * blockSizeBytes);
  const extents: WireExtent[] = [];
  let position = offsetBytes;
  // One extent more than we keep: the last kept one is then known to be complete.
  while (position < scanEndBytes && extents.length <= extentsMax) {
    const windowEndBytes = Math.min(scanEndBytes, (Math.floor(position / blockSizeBytes) + blockStatusWindowBlocks) * blockSizeBytes);
    for (const extent of volume.blockStatus(position, windowEndBytes - position)) {
      appendExtent(extents, extent.lengthBytes, extent.zero ? AllocationFlag.HOLE | AllocationFlag.ZERO : 0);
    }
    position = windowEndBytes;
  }
  extents.length = Math.min(extents.length, extentsMax);
  return extents;
}

/**
 * qemu:dirty-bitmap:SNAP over `ranges` (sorted, disjoint, from Engine.diff): DIRTY where the
 * export's block differs from the snapshot's, 0 elsewhere.
 */
export function dirtyExtents(ranges: readonly ChangedRange[], offsetBytes: number, lengthBytes: number, extentsMax: number): WireExtent[] {
  const endBytes = offsetBytes + lengthBytes;
  const extents: WireExtent[] = [];
  let index = firstRangeEndingAfter(ranges, offsetBytes);
  let position = offsetBytes;
  while (position < endBytes && extents.length <= extentsMax) {
    const range = ranges[index];
    if (range === undefined || range.offsetBytes >= endBytes) {
      appendExtent(extents, endBytes - position, 0);
      break;
    }
    if (range.offsetBytes > position) {
      appendExtent(extents, range.offsetBytes - position, 0);
      position = range.offsetBytes;
      continue;
    }
    const dirtyEndBytes = Math.min(range.offsetBytes + range.lengthBytes, endBytes);
    appendExtent(extents, dirtyEndBytes - position, DirtyFlag.DIRTY);
    position = dirtyEndBytes;
    index++;
  }
  extents.length = Math.min(extents.length, extentsMax);
  return extents;
}

/** Total bytes the extents describe. */
export function extentsBytes(extents: readonly WireExtent[]): number {
  let total = 0;
  for (const extent of extents) total += extent.lengthBytes;
  return total;
}

function appendExtent(extents: WireExtent[], lengthBytes: number, flags: number): void {
  if (lengthBytes === 0) return;
  const last = extents.at(-1);
  if (last !== undefined && last.flags === flags) last.lengthBytes += lengthBytes;
  else extents.push({ lengthBytes, flags });
}

/** Binary search: the index of the first range whose end is past `offsetBytes`. */
function firstRangeEndingAfter(ranges: readonly ChangedRange[], offsetBytes: number): number {
  let low = 0;
  let high = ranges.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    const range = ranges[middle] as ChangedRange;
    if (range.offsetBytes + range.lengthBytes <= offsetBytes) low = middle + 1;
    else high = middle;
  }
  return low;
}
