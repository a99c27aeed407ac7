/**
 * Map entries: one fixed-size record per block, kept densely in one buffer (and one
 * object), so a flush rewrites only the dirty records at `index × entrySizeBytes`.
 *
 *   byte 0   1                         9          13                      33
 *        +---+-------------------------+----------+-----------------------+
 *   zero | 0 | 0 …                                                        |
 *   cont | 1 | block hash (32 bytes)                                      |
 *   priv | 2 | volume id (8 bytes)     | epoch u32| 0 …                   |
 *        +---+-------------------------+----------+-----------------------+
 *
 * 33 bytes per block (Archipelago v2 spent 128): a 1 TiB volume of 4 MiB blocks has an
 * 8.4 MiB map. An all-zero record is a zero entry, so a map object that is shorter than
 * its volume (a fresh or grown volume) reads as zeros past its end: nothing to write.
 */
import assert from "node:assert/strict";
import { EngineError } from "../errors.ts";

export const entrySizeBytes = 33;
export const hashSizeBytes = 32;
export const volumeIdSizeBytes = 8;
/** 2^24 entries = 64 TiB at 4 MiB blocks, a 528 MiB map held in memory while open. */
export const mapEntriesMax = 2 ** 24;

const tagZero = 0;
const tagContent = 1;
const tagPrivate = 2;

export type MapEntry =
  | { kind: "zero" }
  | { kind: "content"; hash: Buffer }
  | { kind: "private"; volumeId: string; epoch: number };

export class MapEntries {
  #bytes: Buffer;
  #count: number;

  private constructor(bytes: Buffer, count: number) {
    assert.equal(bytes.length, count * entrySizeBytes);
    this.#bytes = bytes;
    this.#count = count;
  }

  static zeroed(count: number): MapEntries {
    assertCount(count);
    return new MapEntries(Buffer.alloc(count * entrySizeBytes), count);
  }

  /** Wraps stored bytes (zero-padded to `count`), checking every record. */
  static decode(stored: Buffer, count: number, what: string): MapEntries {
    assertCount(count);
    const bytes = Buffer.alloc(count * entrySizeBytes);
    stored.copy(bytes, 0, 0, Math.min(stored.length, bytes.length));
    const entries = new MapEntries(bytes, count);
    for (let index = 0; index < count; index++) {
      const tag = bytes[index * entrySizeBytes];
      if (tag !== tagZero && tag !== tagContent && tag !== tagPrivate) {
        throw new EngineError("ECORRUPT", `${what} is corrupt: entry ${index} has tag ${tag}`);
      }
    }
    return entries;
  }

  get count(): number {
    return this.#count;
  }

  /** The raw records of `[first, first + n)`, a view (do not keep it across changes). */
  raw(first = 0, n = this.#count - first): Buffer {
    assert.ok(first >= 0 && n >= 0 && first + n <= this.#count);
    return this.#bytes.subarray(first * entrySizeBytes, (first + n) * entrySizeBytes);
  }

  clone(): MapEntries {
    return new MapEntries(Buffer.from(this.#bytes), this.#count);
  }

  /** Adds zero entries up to `count` (growing a volume). */
  grow(count: number): void {
    assertCount(count);
    assert.ok(count >= this.#count);
    const bytes = Buffer.alloc(count * entrySizeBytes);
    this.#bytes.copy(bytes);
    this.#bytes = bytes;
    this.#count = count;
  }

  isZero(index: number): boolean {
    return this.#tag(index) === tagZero;
  }

  /** True when the entry is a private block of exactly this volume and epoch: writable in place. */
  isWritableBy(index: number, volumeId: Buffer, epoch: number): boolean {
    const offset = index * entrySizeBytes;
    return (
      this.#tag(index) === tagPrivate &&
      this.#bytes.readUInt32BE(offset + 1 + volumeIdSizeBytes) === epoch &&
      this.#bytes.compare(volumeId, 0, volumeIdSizeBytes, offset + 1, offset + 1 + volumeIdSizeBytes) === 0
    );
  }

  get(index: number): MapEntry {
    const offset = index * entrySizeBytes;
    switch (this.#tag(index)) {
      case tagZero:
        return { kind: "zero" };
      case tagContent:
        return { kind: "content", hash: Buffer.from(this.#bytes.subarray(offset + 1, offset + 1 + hashSizeBytes)) };
      default:
        return {
          kind: "private",
          volumeId: this.#bytes.toString("hex", offset + 1, offset + 1 + volumeIdSizeBytes),
          epoch: this.#bytes.readUInt32BE(offset + 1 + volumeIdSizeBytes),
        };
    }
  }

  /** The object holding block `index`, or undefined for a zero entry. */
  objectName(index: number): string | undefined {
    const offset = index * entrySizeBytes;
    switch (this.#tag(index)) {
      case tagZero:
        return undefined;
      case tagContent:
        return `b.${this.#bytes.toString("hex", offset + 1, offset + 1 + hashSizeBytes)}`;
      default:
        return privateObjectName(
          this.#bytes.toString("hex", offset + 1, offset + 1 + volumeIdSizeBytes),
          this.#bytes.readUInt32BE(offset + 1 + volumeIdSizeBytes),
          index,
        );
    }
  }

  setZero(index: number): void {
    this.#record(index).fill(0);
  }

  setContent(index: number, hash: Buffer): void {
    assert.equal(hash.length, hashSizeBytes);
    const record = this.#record(index);
    record[0] = tagContent;
    hash.copy(record, 1);
  }

  setPrivate(index: number, volumeId: Buffer, epoch: number): void {
    assert.equal(volumeId.length, volumeIdSizeBytes);
    assert.ok(Number.isInteger(epoch) && epoch >= 0 && epoch <= 0xffff_ffff);
    const record = this.#record(index);
    record.fill(0);
    record[0] = tagPrivate;
    volumeId.copy(record, 1);
    record.writeUInt32BE(epoch, 1 + volumeIdSizeBytes);
  }

  /** Copies entry `index` from another map (clone, hash repointing). */
  setFrom(index: number, other: MapEntries, otherIndex = index): void {
    other.#record(otherIndex).copy(this.#record(index));
  }

  equals(index: number, other: MapEntries, otherIndex = index): boolean {
    return this.#record(index).equals(other.#record(otherIndex));
  }

  #tag(index: number): number {
    assert.ok(Number.isInteger(index) && index >= 0 && index < this.#count, `entry ${index} out of range`);
    return this.#bytes[index * entrySizeBytes] as number;
  }

  #record(index: number): Buffer {
    assert.ok(Number.isInteger(index) && index >= 0 && index < this.#count, `entry ${index} out of range`);
    return this.#bytes.subarray(index * entrySizeBytes, (index + 1) * entrySizeBytes);
  }
}

function assertCount(count: number): void {
  if (!Number.isSafeInteger(count) || count < 0 || count > mapEntriesMax) {
    throw new EngineError("EINVALID", `a map of ${count} blocks exceeds the limit of ${mapEntriesMax}`);
  }
}

export function privateObjectName(volumeIdHex: string, epoch: number, index: number): string {
  return `p.${volumeIdHex}.${epoch.toString(16).padStart(8, "0")}.${index.toString(16)}`;
}

export function blockCount(sizeBytes: number, blockSizeBytes: number): number {
  return Math.ceil(sizeBytes / blockSizeBytes);
}

/** Groups ascending indices into [first, count] runs of consecutive indices (one write per run). */
export function runs(sorted: readonly number[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const index of sorted) {
    const last = out.at(-1);
    if (last !== undefined && last[0] + last[1] === index) last[1]++;
    else out.push([index, 1]);
  }
  return out;
}
