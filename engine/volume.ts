/**
 * Byte-range I/O over a map: the engine's volume.
 *
 * A request is split at block boundaries; each piece resolves its map entry:
 *
 *   entry     read                 write
 *   zero      zeros, no I/O        new private object of this epoch (copy nothing)
 *   content   read the shared      copy-on-write: copy the block to a private object
 *   frozen    block / object       of this epoch, then write into it; point the entry at it
 *   private   read in place        write in place
 *   (this epoch)
 *
 * Copy-on-write and every other entry change of a block are serialised per block; writes
 * to a block already private to this epoch run concurrently. An entry changes in memory
 * only after its object write completed, so a read that starts after a write completes
 * sees it. flush = barrier on data objects, then write the dirty entries, then barrier:
 * a durable entry never points at a non-durable object (DESIGN.md, durability).
 */
import assert from "node:assert/strict";
import { hostname } from "node:os";
import { EngineError } from "./errors.ts";
import type { ObjectLock } from "./blocker/object-store.ts";
import { putBlock } from "./blocker/content.ts";
import { blockCount, MapEntries, privateObjectName, runs } from "./mapper/entries.ts";
import type { MapHeader } from "./mapper/headers.ts";
import { volumeLeaseMs, type MapStore } from "./mapper/map-store.ts";

/** What a Volume has done since it was opened: the per-volume I/O metrics of `okeanos serve`. */
export interface VolumeIoCounters {
  reads: number;
  readBytes: number;
  writes: number;
  writeBytes: number;
  /** WRITE_ZEROES and TRIM requests, and the bytes they covered. */
  zeroes: number;
  zeroBytes: number;
  flushes: number;
}

export function emptyIoCounters(): VolumeIoCounters {
  return { reads: 0, readBytes: 0, writes: 0, writeBytes: 0, zeroes: 0, zeroBytes: 0, flushes: 0 };
}

export interface VolumeOpenOptions {
  /** Read-only opens take no lock and see the map as it was when opened. */
  readOnly?: boolean;
  /** Recorded in the lock, shown to anyone refused it. */
  owner?: string;
}

export interface WriteOptions {
  /** Force unit access: durable when the call returns (NBD_CMD_FLAG_FUA). */
  fua?: boolean;
}

export interface WriteZeroesOptions extends WriteOptions {
  /** Keep the range allocated (NBD_CMD_FLAG_NO_HOLE): write zeros instead of dropping blocks. */
  noHole?: boolean;
}

/** A run of blocks with the same allocation, as NBD base:allocation reports it. */
export interface Extent {
  offsetBytes: number;
  lengthBytes: number;
  /** Reads as zeros without any I/O (a zero entry). */
  zero: boolean;
  /** Backed by a stored object. */
  allocated: boolean;
}

/**
 * Copy-up needs no atomic replacement: until a flush records it, no durable entry names the
 * new private object (or, after a trim or import, a legal crash state results either way).
 */
const privateReplace = { atomic: false } as const;

interface Piece {
  index: number;
  offsetInBlockBytes: number;
  lengthBytes: number;
  /** Offset of this piece within the request. */
  requestOffsetBytes: number;
}

export class Volume {
  readonly readOnly: boolean;
  readonly #maps: MapStore;
  #header: MapHeader;
  #entries: MapEntries;
  readonly #volumeIdBytes: Buffer;
  readonly #lock: ObjectLock | undefined;
  readonly #renewTimer: NodeJS.Timeout | undefined;
  /** Indices whose in-memory entry differs from the stored one. */
  readonly #dirty = new Set<number>();
  /** Tail of the per-block chains that serialise entry changes. */
  readonly #blockChains = new Map<number, Promise<void>>();
  #flushChain: Promise<void> = Promise.resolve();
  #inFlight = 0;
  #drained: (() => void) | undefined;
  /** Set while a snapshot or resize holds I/O back. */
  #gate: Promise<void> | undefined;
  #closed = false;
  /** Set when the lease could not be renewed: another writer may own the volume now. */
  #fenced: Error | undefined;

  private constructor(maps: MapStore, header: MapHeader, entries: MapEntries, lock: ObjectLock | undefined) {
    this.#maps = maps;
    this.#header = header;
    this.#entries = entries;
    this.#volumeIdBytes = Buffer.from(header.volumeId, "hex");
    this.#lock = lock;
    this.readOnly = lock === undefined;
    if (lock !== undefined) {
      this.#renewTimer = setInterval(() => void this.#renewLease(), volumeLeaseMs / 3);
      this.#renewTimer.unref();
    }
  }

  static async open(maps: MapStore, name: string, options: VolumeOpenOptions = {}): Promise<Volume> {
    const directoryEntry = await maps.lookup(name);
    const header = await maps.loadHeader(directoryEntry.mapId);
    const readOnly = options.readOnly === true || header.frozen;
    if (readOnly) return new Volume(maps, header, await maps.loadEntries(header), undefined);
    const lock = await maps.lockMap(header, options.owner ?? defaultOwner());
    try {
      // Reload under the lock: the previous writer may have changed the map.
      const lockedHeader = await maps.loadHeader(directoryEntry.mapId);
      return new Volume(maps, lockedHeader, await maps.loadEntries(lockedHeader), lock);
    } catch (error) {
      await lock.release();
      throw error;
    }
  }

  /** Completed requests and bytes since open (plain counters: a few adds per request). */
  readonly io: VolumeIoCounters = emptyIoCounters();

  get name(): string {
    return this.#header.name;
  }

  get sizeBytes(): number {
    return this.#header.sizeBytes;
  }

  get blockSizeBytes(): number {
    return this.#header.blockSizeBytes;
  }

  get header(): Readonly<MapHeader> {
    return { ...this.#header };
  }

  get entries(): MapEntries {
    return this.#entries;
  }

  // ── I/O ──────────────────────────────────────────────────────────────────

  /**
   * Reads `[offset, offset + length)`. With `target` (at least `lengthBytes` long) the bytes
   * land in its start and that view is returned: callers that reuse buffers (the NBD server's
   * pool) allocate nothing per request. If the read fails, block reads may still be writing
   * into `target`: do not reuse it.
   */
  async read(offsetBytes: number, lengthBytes: number, target?: Buffer): Promise<Buffer> {
    this.#checkRange(offsetBytes, lengthBytes);
    if (target !== undefined && target.length < lengthBytes) {
      throw new EngineError("EINVALID", `read target of ${target.length} bytes is shorter than ${lengthBytes}`);
    }
    await this.#enter();
    try {
      const out = target === undefined ? Buffer.allocUnsafe(lengthBytes) : target.subarray(0, lengthBytes);
      await eachLimited(this.#pieces(offsetBytes, lengthBytes), (piece) => this.#readPiece(piece, out));
      this.io.reads++;
      this.io.readBytes += lengthBytes;
      return out;
    } finally {
      this.#leave();
    }
  }

  async write(offsetBytes: number, data: Uint8Array, options: WriteOptions = {}): Promise<void> {
    this.#checkWritable();
    this.#checkRange(offsetBytes, data.length);
    await this.#enter();
    try {
      await eachLimited(this.#pieces(offsetBytes, data.length), (piece) =>
        this.#writePiece(piece, data.subarray(piece.requestOffsetBytes, piece.requestOffsetBytes + piece.lengthBytes)),
      );
      this.io.writes++;
      this.io.writeBytes += data.length;
    } finally {
      this.#leave();
    }
    if (options.fua === true) await this.flush();
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions = {}): Promise<void> {
    this.#checkWritable();
    this.#checkRange(offsetBytes, lengthBytes);
    await this.#enter();
    try {
      await eachLimited(this.#pieces(offsetBytes, lengthBytes), (piece) => this.#zeroPiece(piece, options.noHole === true));
      this.io.zeroes++;
      this.io.zeroBytes += lengthBytes;
    } finally {
      this.#leave();
    }
    if (options.fua === true) await this.flush();
  }

  /**
   * Discards a range. We make trimmed bytes read as zeros (whole blocks become zero
   * entries, partial blocks are zeroed) so that reads stay deterministic.
   */
  async trim(offsetBytes: number, lengthBytes: number, options: WriteOptions = {}): Promise<void> {
    await this.writeZeroes(offsetBytes, lengthBytes, { fua: options.fua === true });
  }

  /** Makes every write completed before the call durable. */
  async flush(): Promise<void> {
    this.#checkOpen();
    if (this.readOnly) return;
    while (this.#gate !== undefined) await this.#gate;
    await this.#flushChained();
    this.io.flushes++;
  }

  /** Allocation of `[offset, offset + length)` from the map alone: no data is read. */
  blockStatus(offsetBytes: number, lengthBytes: number): Extent[] {
    this.#checkRange(offsetBytes, lengthBytes);
    const extents: Extent[] = [];
    for (const piece of this.#pieces(offsetBytes, lengthBytes)) {
      const zero = this.#entries.isZero(piece.index);
      const last = extents.at(-1);
      if (last !== undefined && last.zero === zero) {
        last.lengthBytes += piece.lengthBytes;
      } else {
        extents.push({ offsetBytes: offsetBytes + piece.requestOffsetBytes, lengthBytes: piece.lengthBytes, zero, allocated: !zero });
      }
    }
    return extents;
  }

  /**
   * Stores whole block `index` content-addressed (deduplicated) instead of privately:
   * the import path, so imported data is shared from the start. `data` is the block, or
   * the volume's tail for the last block.
   */
  async importBlock(index: number, data: Uint8Array): Promise<void> {
    this.#checkWritable();
    const blockStart = index * this.blockSizeBytes;
    const expectedBytes = Math.min(this.blockSizeBytes, this.sizeBytes - blockStart);
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.#entries.count || data.length !== expectedBytes) {
      throw new EngineError("EINVALID", `importBlock(${index}) needs exactly ${expectedBytes} bytes, got ${data.length}`);
    }
    await this.#enter();
    try {
      const stored = await putBlock(this.#maps.objects, this.#maps.header.hashAlgorithm, data);
      await this.#withBlock(index, async () => {
        if (stored.zero) this.#entries.setZero(index);
        else this.#entries.setContent(index, stored.hash);
        this.#dirty.add(index);
      });
    } finally {
      this.#leave();
    }
  }

  // ── map operations on the open volume ────────────────────────────────────

  /**
   * Crash-consistent snapshot, taken between requests: I/O is held back, flushed, the
   * epoch bumped (durably, *before* the snapshot exists, so no write can ever land in a
   * block the snapshot shares), then the entries are copied into a frozen map.
   */
  async snapshot(snapshotName: string): Promise<MapHeader> {
    this.#checkWritable();
    return this.#exclusive(async () => {
      if (await this.#maps.exists(snapshotName)) throw new EngineError("EEXISTS", `${snapshotName} already exists`, { name: snapshotName });
      await this.#flushNow();
      const frozenEntries = this.#entries.clone();
      const frozenEpoch = this.#header.epoch;
      this.#header = { ...this.#header, epoch: frozenEpoch + 1 };
      await this.#maps.writeHeader(this.#header);
      await this.#maps.objects.barrier();
      const snapshot = await this.#maps.createMap({
        name: snapshotName,
        kind: "snapshot",
        frozen: true,
        sizeBytes: this.sizeBytes,
        volumeId: this.#header.volumeId,
        epoch: frozenEpoch,
        parentMapId: this.#header.mapId,
        entries: frozenEntries,
      });
      return snapshot.header;
    });
  }

  /** Grows the volume; shrinking is refused (it would silently drop data). */
  async resize(sizeBytes: number): Promise<void> {
    this.#checkWritable();
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw new EngineError("EINVALID", `invalid size ${sizeBytes}`);
    if (sizeBytes < this.sizeBytes) {
      throw new EngineError("EINVALID", `${this.name} is ${this.sizeBytes} bytes; shrinking to ${sizeBytes} is not supported`);
    }
    if (sizeBytes === this.sizeBytes) return;
    await this.#exclusive(async () => {
      const oldSizeBytes = this.sizeBytes;
      this.#entries.grow(blockCount(sizeBytes, this.blockSizeBytes));
      this.#header = { ...this.#header, sizeBytes };
      // The old last block may be partial: whatever its object holds past the old end
      // must read as zeros now that those bytes are inside the volume.
      const tailEnd = Math.min(sizeBytes, Math.ceil(oldSizeBytes / this.blockSizeBytes) * this.blockSizeBytes);
      if (tailEnd > oldSizeBytes) {
        for (const piece of this.#pieces(oldSizeBytes, tailEnd - oldSizeBytes)) await this.#zeroPiece(piece, false);
      }
      await this.#flushNow();
      await this.#maps.writeHeader(this.#header);
      await this.#maps.objects.barrier();
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      if (!this.readOnly && this.#fenced === undefined) await this.flush();
    } finally {
      this.#closed = true;
      if (this.#renewTimer !== undefined) clearInterval(this.#renewTimer);
      await this.#lock?.release();
    }
  }

  // ── pieces ───────────────────────────────────────────────────────────────

  #pieces(offsetBytes: number, lengthBytes: number): Piece[] {
    const blockSizeBytes = this.blockSizeBytes;
    const pieces: Piece[] = [];
    let position = offsetBytes;
    const end = offsetBytes + lengthBytes;
    while (position < end) {
      const index = Math.floor(position / blockSizeBytes);
      const offsetInBlockBytes = position - index * blockSizeBytes;
      const pieceBytes = Math.min(end - position, blockSizeBytes - offsetInBlockBytes);
      pieces.push({ index, offsetInBlockBytes, lengthBytes: pieceBytes, requestOffsetBytes: position - offsetBytes });
      position += pieceBytes;
    }
    return pieces;
  }

  async #readPiece(piece: Piece, out: Buffer): Promise<void> {
    const object = this.#entries.objectName(piece.index);
    const target = out.subarray(piece.requestOffsetBytes, piece.requestOffsetBytes + piece.lengthBytes);
    if (object === undefined) {
      target.fill(0);
      return;
    }
    await this.#maps.objects.readInto(object, piece.offsetInBlockBytes, target);
  }

  async #writePiece(piece: Piece, data: Uint8Array): Promise<void> {
    const objects = this.#maps.objects;
    if (this.#isWritable(piece.index)) {
      await objects.write(this.#privateName(piece.index), piece.offsetInBlockBytes, data);
      return;
    }
    await this.#withBlock(piece.index, async () => {
      const target = this.#privateName(piece.index);
      if (this.#isWritable(piece.index)) {
        await objects.write(target, piece.offsetInBlockBytes, data);
        return;
      }
      const source = this.#entries.objectName(piece.index);
      const wholeBlock = piece.offsetInBlockBytes === 0 && piece.lengthBytes === this.#blockBytes(piece.index);
      if (source === undefined || wholeBlock) {
        // writeFull replaces: a stale object of this name (left by a crash before a
        // flush, or by a trim) must not show through the new block's unwritten bytes.
        // The stored map may still name this object (trim or import, then this write,
        // all since the last flush); rewriting it is still safe: after a crash the
        // block then reads as if those unflushed requests had all completed.
        await objects.writeFull(target, data, piece.offsetInBlockBytes, privateReplace);
      } else {
        await objects.copy(source, target, privateReplace);
        await objects.write(target, piece.offsetInBlockBytes, data);
      }
      this.#entries.setPrivate(piece.index, this.#volumeIdBytes, this.#header.epoch);
      this.#dirty.add(piece.index);
    });
  }

  async #zeroPiece(piece: Piece, noHole: boolean): Promise<void> {
    const wholeBlock = piece.offsetInBlockBytes === 0 && piece.lengthBytes === this.#blockBytes(piece.index);
    if (!noHole && wholeBlock) {
      await this.#withBlock(piece.index, async () => {
        if (this.#entries.isZero(piece.index)) return;
        // The old object is left for gc: a durable map may still name it until the next flush.
        this.#entries.setZero(piece.index);
        this.#dirty.add(piece.index);
      });
      return;
    }
    if (!noHole && this.#entries.isZero(piece.index)) return;
    await this.#writePiece(piece, Buffer.alloc(piece.lengthBytes));
  }

  #blockBytes(index: number): number {
    return Math.min(this.blockSizeBytes, this.sizeBytes - index * this.blockSizeBytes);
  }

  #isWritable(index: number): boolean {
    return this.#entries.isWritableBy(index, this.#volumeIdBytes, this.#header.epoch);
  }

  #privateName(index: number): string {
    return privateObjectName(this.#header.volumeId, this.#header.epoch, index);
  }

  async #withBlock<T>(index: number, action: () => Promise<T>): Promise<T> {
    const previous = this.#blockChains.get(index) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    this.#blockChains.set(index, tail);
    await previous;
    try {
      return await action();
    } finally {
      release();
      if (this.#blockChains.get(index) === tail) this.#blockChains.delete(index);
    }
  }

  // ── flush, gate, lease ───────────────────────────────────────────────────

  /** Flushes after every flush already queued: it covers all changes made before the call. */
  async #flushChained(): Promise<void> {
    const run = this.#flushChain.then(() => this.#flushNow());
    this.#flushChain = run.catch(() => undefined);
    await run;
  }

  async #flushNow(): Promise<void> {
    if (this.#fenced !== undefined) throw this.#fenced;
    const objects = this.#maps.objects;
    const dirty = [...this.#dirty].sort((a, b) => a - b);
    this.#dirty.clear();
    try {
      await objects.barrier();
      for (const [first, n] of runs(dirty)) await this.#maps.writeEntries(this.#header.mapId, this.#entries, first, n);
      await objects.barrier();
    } catch (error) {
      for (const index of dirty) this.#dirty.add(index);
      throw error;
    }
  }

  async #enter(): Promise<void> {
    while (this.#gate !== undefined) await this.#gate;
    this.#checkOpen();
    this.#inFlight++;
  }

  #leave(): void {
    this.#inFlight--;
    assert.ok(this.#inFlight >= 0);
    if (this.#inFlight === 0) this.#drained?.();
  }

  /** Runs `action` with no request in flight and new requests held back. */
  async #exclusive<T>(action: () => Promise<T>): Promise<T> {
    while (this.#gate !== undefined) await this.#gate;
    let open!: () => void;
    this.#gate = new Promise<void>((resolve) => (open = resolve));
    try {
      if (this.#inFlight > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
      this.#drained = undefined;
      await this.#flushChain;
      return await action();
    } finally {
      this.#gate = undefined;
      open();
    }
  }

  async #renewLease(): Promise<void> {
    try {
      await this.#lock?.renew();
    } catch (error) {
      this.#fenced = new EngineError("EVOLUME_LOCKED", `lost the lock on ${this.name}; refusing further writes`, {}, { cause: error });
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new EngineError("ECLOSED", `${this.name} is closed`);
  }

  #checkWritable(): void {
    this.#checkOpen();
    if (this.readOnly) throw new EngineError("EREAD_ONLY", `${this.name} is open read-only`);
    if (this.#fenced !== undefined) throw this.#fenced;
  }

  #checkRange(offsetBytes: number, lengthBytes: number): void {
    this.#checkOpen();
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || !Number.isSafeInteger(lengthBytes) || lengthBytes < 0) {
      throw new EngineError("EINVALID", `invalid range offset ${offsetBytes} length ${lengthBytes}`);
    }
    if (offsetBytes + lengthBytes > this.sizeBytes) {
      throw new EngineError("ERANGE_PAST_END", `range ${offsetBytes}+${lengthBytes} reaches past the end of ${this.name} (${this.sizeBytes} bytes)`);
    }
  }
}

/**
 * Object operations one request keeps in flight: enough to overlap a 32 MiB request's
 * block I/O, while a request on a 4 KiB-block store cannot open thousands of files at once.
 */
export const piecesInFlightMax = 16;

/** Runs `action` on every item, at most `piecesInFlightMax` at a time; fails on the first failure. */
async function eachLimited<T>(items: readonly T[], action: (item: T) => Promise<void>): Promise<void> {
  if (items.length === 1) return action(items[0] as T);
  let next = 0;
  const worker = async () => {
    while (next < items.length) await action(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(piecesInFlightMax, items.length) }, worker));
}

export function defaultOwner(): string {
  return `okeanos@${hostname()}:${process.pid}`;
}
