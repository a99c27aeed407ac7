/**
 * Extents for BLOCK_STATUS and READ: contiguous from the offset, never past the range, at
 * least one, at most the limit, ZERO only on zero entries; and the buffer pool's reuse.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Extent } from "../volume.ts";
import { BufferPool } from "./buffer-pool.ts";
import { allocationExtents, dirtyExtents, extentsBytes, type AllocationSource } from "./extents.ts";
import { blockStatusScanBlocksMax } from "./limits.ts";
import { AllocationFlag } from "./protocol.ts";

const blockSizeBytes = 4096;
const zero = AllocationFlag.HOLE | AllocationFlag.ZERO;

/** A volume whose map is `zeroBlocks[i]` per block, answering blockStatus as Volume does. */
function fakeVolume(zeroBlocks: readonly boolean[]): AllocationSource & { calls: number } {
  const fake = {
    blockSizeBytes,
    calls: 0,
    blockStatus(offsetBytes: number, lengthBytes: number): Extent[] {
      fake.calls++;
      const extents: Extent[] = [];
      for (let position = offsetBytes; position < offsetBytes + lengthBytes; ) {
        const index = Math.floor(position / blockSizeBytes);
        const pieceBytes = Math.min(offsetBytes + lengthBytes - position, (index + 1) * blockSizeBytes - position);
        const isZero = zeroBlocks[index] === true;
        const last = extents.at(-1);
        if (last !== undefined && last.zero === isZero) last.lengthBytes += pieceBytes;
        else extents.push({ offsetBytes: position, lengthBytes: pieceBytes, zero: isZero, allocated: !isZero });
        position += pieceBytes;
      }
      return extents;
    },
  };
  return fake;
}

describe("allocationExtents", () => {
  it("merges runs, clamps to the range, and marks zero entries HOLE|ZERO", () => {
    const volume = fakeVolume([false, false, true, true, false]);
    expect(allocationExtents(volume, 100, 5 * blockSizeBytes - 200, 1024)).toEqual([
      { lengthBytes: 2 * blockSizeBytes - 100, flags: 0 },
      { lengthBytes: 2 * blockSizeBytes, flags: zero },
      { lengthBytes: blockSizeBytes - 100, flags: 0 },
    ]);
  });

  it("stops at the extent limit with the kept extents complete", () => {
    const volume = fakeVolume(Array.from({ length: 100 }, (_, index) => index % 2 === 0));
    const extents = allocationExtents(volume, 0, 100 * blockSizeBytes, 3);
    expect(extents).toEqual([
      { lengthBytes: blockSizeBytes, flags: zero },
      { lengthBytes: blockSizeBytes, flags: 0 },
      { lengthBytes: blockSizeBytes, flags: zero },
    ]);
    expect(allocationExtents(volume, 10, 100, 1)).toEqual([{ lengthBytes: 100, flags: zero }]);
  });

  it("scans at most blockStatusScanBlocksMax blocks, in windows", () => {
    const volume = fakeVolume([]);
    const extents = allocationExtents(volume, 0, 2 ** 32 - blockSizeBytes, 1024);
    expect(extents).toEqual([{ lengthBytes: blockStatusScanBlocksMax * blockSizeBytes, flags: 0 }]);
    expect(volume.calls).toBeGreaterThan(1);
  });

  it("property: contiguous, within the range, 1..max extents, ZERO only where the map is zero", () => {
    fc.assert(
      fc.property(fc.array(fc.boolean(), { minLength: 1, maxLength: 64 }), fc.nat(), fc.nat(), fc.integer({ min: 1, max: 8 }), (map, a, b, extentsMax) => {
        const sizeBytes = map.length * blockSizeBytes;
        const offsetBytes = a % sizeBytes;
        const lengthBytes = 1 + (b % (sizeBytes - offsetBytes));
        const extents = allocationExtents(fakeVolume(map), offsetBytes, lengthBytes, extentsMax);
        expect(extents.length).toBeGreaterThanOrEqual(1);
        expect(extents.length).toBeLessThanOrEqual(extentsMax);
        expect(extentsBytes(extents)).toBeLessThanOrEqual(lengthBytes);
        let position = offsetBytes;
        for (const extent of extents) {
          expect(extent.lengthBytes).toBeGreaterThan(0);
          for (let at = position; at < position + extent.lengthBytes; at += 512) {
            if (extent.flags & AllocationFlag.ZERO) expect(map[Math.floor(at / blockSizeBytes)]).toBe(true);
          }
          position += extent.lengthBytes;
        }
        if (extents.length < extentsMax) expect(extentsBytes(extents)).toBe(lengthBytes);
      }),
    );
  });
});

describe("dirtyExtents", () => {
  const ranges = [
    { offsetBytes: 4096, lengthBytes: 4096 },
    { offsetBytes: 16384, lengthBytes: 8192 },
  ];

  it("alternates clean and dirty from the offset, clamped to the range", () => {
    expect(dirtyExtents(ranges, 0, 32768, 100)).toEqual([
      { lengthBytes: 4096, flags: 0 },
      { lengthBytes: 4096, flags: 1 },
      { lengthBytes: 8192, flags: 0 },
      { lengthBytes: 8192, flags: 1 },
      { lengthBytes: 8192, flags: 0 },
    ]);
    expect(dirtyExtents(ranges, 5000, 12000, 100)).toEqual([
      { lengthBytes: 3192, flags: 1 },
      { lengthBytes: 8192, flags: 0 },
      { lengthBytes: 616, flags: 1 },
    ]);
    expect(dirtyExtents(ranges, 20000, 100, 1)).toEqual([{ lengthBytes: 100, flags: 1 }]);
    expect(dirtyExtents([], 7, 9, 1)).toEqual([{ lengthBytes: 9, flags: 0 }]);
    expect(dirtyExtents(ranges, 0, 32768, 2)).toEqual([
      { lengthBytes: 4096, flags: 0 },
      { lengthBytes: 4096, flags: 1 },
    ]);
  });
});

describe("BufferPool", () => {
  it("reuses buffers by size class and keeps at most its idle budget", () => {
    const pool = new BufferPool(64 * 1024);
    const first = pool.take(5000);
    expect(first.length).toBe(5000);
    pool.give(first);
    const second = pool.take(8192);
    expect(second.buffer).toBe(first.buffer);
    expect(pool.stats).toMatchObject({ allocations: 1, reuses: 1, idleBytes: 0 });
    const big = pool.take(128 * 1024);
    pool.give(big); // over the idle budget: dropped
    pool.give(second);
    expect(pool.stats.idleBytes).toBe(8192);
    expect(() => pool.give(second)).toThrow(/twice/);
    expect(() => pool.give(Buffer.alloc(10))).toThrow(/not a pooled buffer/);
  });
});
