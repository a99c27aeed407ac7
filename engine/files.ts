/**
 * Files: what the Pithos+ gateway builds on. A file version is a frozen map of kind "file"
 * whose entries are all content-addressed (`b.<hash>`) or zero blocks, and whose header
 * carries the Merkle root of its block hashes (X-Object-Hash; synnefo.md B.3, B.4).
 *
 *   createFile  hashes ──stat ≤32 in flight──► any missing? ──yes──► report them, name nothing
 *                                                   └─no──► name a frozen "file" map
 *   writeFile   source ──cut into blocks──► hash (HashPool) ──► b.<hash> (createExclusive)
 *                 ≤4 blocks in flight, their buffers reused; then barrier ──► name the map;
 *                 the stream's MD5 (computeMd5) on the hashing thread of the upload
 *   copyFile    same entries under a new name: O(map), no block touched
 *   openFile    FileReader: read(range) and stream(range), ≤4 blocks read ahead
 *
 * A block is stored stripped of its trailing NULs (content.ts), and every object store
 * reads past an object's end as zeros (object-store.ts contract, checked by conformance.ts
 * on every backend), so a stripped block reads back at its full length without padding here.
 */
import { Readable } from "node:stream";
import { EngineError, isEngineError } from "./errors.ts";
import { contentObjectName, hashLengthBytes, merkleRoot, zeroBlockHash, type HashAlgorithm, type PutBlockResult } from "./blocker/content.ts";
import type { HashedBlock, HashPool, Md5Session } from "./blocker/hash-pool.ts";
import { ioLengthMaxBytes } from "./blocker/object-store.ts";
import { blockCount, mapEntriesMax, MapEntries } from "./mapper/entries.ts";
import { validateVolumeName, type MapHeader } from "./mapper/headers.ts";
import type { MapStore } from "./mapper/map-store.ts";

/**
 * Existence checks in flight: a stat is one small metadata round trip (~0.05 ms on a local
 * file system, ~1 ms to a RADOS OSD), so 32 at once check a 10 GiB file's 2560 blocks in
 * ~80 ms on RADOS, while staying far below the file handles and OSD ops a store allows.
 */
export const blockStatsInFlight = 32;
/**
 * Blocks being hashed and stored at once by writeFile: one per hashing thread
 * (hashPoolSizeMax), and at 4 MiB blocks 16 MiB of memory per upload.
 */
export const fileWriteBlocksInFlight = 4;
/**
 * Blocks a reader fetches ahead of its consumer: enough to hide a store round trip behind
 * the consumer, at 4 MiB blocks 16 MiB of memory per stream.
 */
export const fileReadAheadBlocks = 4;
/** One read() returns at most this much: the object store's own request limit (64 MiB). */
export const fileReadLengthMaxBytes = ioLengthMaxBytes;

export interface FileHashmap {
  sizeBytes: number;
  blockSizeBytes: number;
  algorithm: HashAlgorithm;
  /** One per block (ceil(size/blockSize)); zero entries as H(""); an empty file has [] here. */
  hashes: Buffer[];
  /** Merkle root hex (content.ts merkleRoot) — Pithos's X-Object-Hash. */
  contentHash: string;
}

export type CreateFileResult = { created: true; header: MapHeader } | { created: false; missing: Buffer[] };

export interface WriteFileOptions {
  /** Also compute the MD5 of the whole stream (Pithos's ETag in MD5 mode, Swift's ETag). */
  computeMd5?: boolean;
  /** Refuse (EINVALID) a stream longer than this; nothing is named. */
  maxBytes?: number;
  /** Checked between chunks and blocks; an abort rejects with the signal's reason. */
  signal?: AbortSignal;
  /** After each block is stored; `stored` is false when it was all zeros or already stored. */
  onBlock?: (done: { index: number; stored: boolean }) => void;
  /**
   * How many bytes the stream is expected to hold (HTTP's Content-Length), when known. A
   * stream expected to be shorter than a block is collected in a buffer of its size: a 4 KiB
   * upload then allocates 4 KiB, not a 4 MiB block (whose external memory drives V8 into
   * frequent full collections). Only a hint: a longer stream still works.
   */
  expectedBytes?: number;
}

export interface WriteFileResult {
  header: MapHeader;
  sizeBytes: number;
  md5Hex: string | undefined;
  hashes: Buffer[];
  /** Blocks this write stored; the others were zeros or already stored (deduplicated). */
  storedBlocks: number;
}

export interface FileReader {
  readonly header: MapHeader;
  readonly sizeBytes: number;
  readonly contentHash: string | null;
  /** Bytes [offset, offset + length); ERANGE_PAST_END beyond the size (nothing is clamped). */
  read(offsetBytes: number, lengthBytes: number): Promise<Buffer>;
  /** The bytes [start, endExclusive) as a Node Readable, reading ahead a bounded number of blocks, honouring backpressure; destroy() stops it. */
  stream(startBytes: number, endExclusiveBytes: number): Readable;
}

// ── create, copy, hashmap ──────────────────────────────────────────────────

export async function createFile(maps: MapStore, name: string, sizeBytes: number, hashes: readonly Buffer[]): Promise<CreateFileResult> {
  validateVolumeName(name);
  const blockHashes = checkedHashmap(maps, sizeBytes, hashes);
  if (await maps.exists(name)) throw new EngineError("EEXISTS", `${name} already exists`, { name });
  // From finding the blocks stored until the map names them: gc must not sweep them between (gc.ts).
  return maps.references.session(async () => {
    const missing = await missingBlocks(maps, blockHashes);
    if (missing.length > 0) return { created: false, missing };
    return { created: true, header: await nameFile(maps, name, sizeBytes, blockHashes) };
  });
}

export async function fileHashmap(maps: MapStore, name: string): Promise<FileHashmap> {
  const { header, entries } = await maps.loadMap(name);
  const hashes = contentHashes(maps, header, entries);
  return {
    sizeBytes: header.sizeBytes,
    blockSizeBytes: header.blockSizeBytes,
    algorithm: maps.header.hashAlgorithm,
    hashes,
    contentHash: header.contentHash ?? merkleRoot(maps.header.hashAlgorithm, hashes).toString("hex"),
  };
}

/** A new "file" map naming the same blocks as `source` (a file, or a hashed snapshot or image). */
export async function copyFile(maps: MapStore, source: string, dest: string): Promise<MapHeader> {
  // The source's blocks stay referenced from reading it until the copy names them (gc.ts).
  return maps.references.session(() => copyLoaded(maps, source, dest));
}

async function copyLoaded(maps: MapStore, source: string, dest: string): Promise<MapHeader> {
  const { header, entries } = await maps.loadMap(source);
  const hashes = contentHashes(maps, header, entries);
  const { header: copy } = await maps.createMap({
    name: dest,
    kind: "file",
    frozen: true,
    sizeBytes: header.sizeBytes,
    parentMapId: header.mapId,
    contentHash: header.contentHash ?? merkleRoot(maps.header.hashAlgorithm, hashes).toString("hex"),
    entries,
  });
  return copy;
}

/** The distinct hashes, in first-appearance order, that name no stored block (H("") never does). */
export async function missingBlocks(maps: MapStore, hashes: readonly Buffer[]): Promise<Buffer[]> {
  const zero = zeroBlockHash(maps.header.hashAlgorithm);
  const distinct = new Map<string, Buffer>();
  for (const hash of hashes.map(checkHash)) {
    if (!zero.equals(hash)) distinct.set(hash.toString("hex"), hash);
  }
  const candidates = [...distinct.values()];
  const stored = new Array<boolean>(candidates.length);
  await forEachLimited(candidates.keys(), candidates.length, blockStatsInFlight, async (index) => {
    stored[index] = (await maps.objects.stat(contentObjectName(candidates[index] as Buffer))) !== undefined;
  });
  return candidates.filter((_, index) => stored[index] !== true);
}

/** The block hashes a Pithos hashmap names, checked: one per block, 32 bytes each. */
function checkedHashmap(maps: MapStore, sizeBytes: number, hashes: readonly Buffer[]): Buffer[] {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw new EngineError("EINVALID", `invalid file size ${sizeBytes}`);
  const blockSizeBytes = maps.blockSizeBytes;
  if (sizeBytes > fileSizeMaxBytes(blockSizeBytes)) {
    throw new EngineError("EINVALID", `a file of ${sizeBytes} bytes exceeds the limit of ${fileSizeMaxBytes(blockSizeBytes)}`);
  }
  const checked = hashes.map(checkHash);
  // Pithos lists an empty object as [H("")] (synnefo.md B.3); we store no block for it.
  if (sizeBytes === 0 && checked.length === 1 && zeroBlockHash(maps.header.hashAlgorithm).equals(checked[0] as Buffer)) return [];
  const expected = blockCount(sizeBytes, blockSizeBytes);
  if (checked.length !== expected) {
    throw new EngineError("EINVALID", `${sizeBytes} bytes in blocks of ${blockSizeBytes} need ${expected} hashes, not ${checked.length}`);
  }
  return checked;
}

function checkHash(hash: Uint8Array): Buffer {
  if (!(hash instanceof Uint8Array) || hash.length !== hashLengthBytes) {
    throw new EngineError("EINVALID", `a block hash has ${hashLengthBytes} bytes, not ${hash instanceof Uint8Array ? hash.length : typeof hash}`);
  }
  return Buffer.isBuffer(hash) ? hash : Buffer.from(hash.buffer, hash.byteOffset, hash.byteLength);
}

/** The largest file a map can describe: mapEntriesMax blocks (64 TiB at 4 MiB). */
export function fileSizeMaxBytes(blockSizeBytes: number): number {
  return mapEntriesMax * blockSizeBytes;
}

/** Names a frozen "file" map of these blocks, which must be stored (and durable by the barrier in createMap). */
async function nameFile(maps: MapStore, name: string, sizeBytes: number, hashes: readonly Buffer[]): Promise<MapHeader> {
  const algorithm = maps.header.hashAlgorithm;
  const zero = zeroBlockHash(algorithm);
  const entries = MapEntries.zeroed(hashes.length);
  hashes.forEach((hash, index) => {
    if (!zero.equals(hash)) entries.setContent(index, hash);
  });
  const { header } = await maps.createMap({
    name,
    kind: "file",
    frozen: true,
    sizeBytes,
    contentHash: merkleRoot(algorithm, hashes).toString("hex"),
    entries,
  });
  return header;
}

/** Every block's hash, zero entries as H(""); refuses maps that are writable or not hashed. */
function contentHashes(maps: MapStore, header: MapHeader, entries: MapEntries): Buffer[] {
  if (!header.frozen) {
    throw new EngineError("ENOT_FROZEN", `${header.name} is a writable volume: snapshot it and hash the snapshot`, { name: header.name });
  }
  const zero = zeroBlockHash(maps.header.hashAlgorithm);
  const hashes: Buffer[] = [];
  for (let index = 0; index < entries.count; index++) {
    const entry = entries.get(index);
    if (entry.kind === "private") {
      throw new EngineError("EINVALID", `${header.name} is not hashed: run \`okeanos volume hash ${header.name}\` first`, { name: header.name });
    }
    hashes.push(entry.kind === "content" ? entry.hash : zero);
  }
  return hashes;
}

// ── store and write ────────────────────────────────────────────────────────

/**
 * content.ts putBlock, hashing on the pool's threads. `data` (at most one block) is lent to
 * a thread: when it spans a whole ArrayBuffer it is moved there and back, and the caller's
 * view is left detached (empty) — do not use it after the call. Not durable until the next
 * barrier (createFile and writeFile make one before naming a map).
 */
export async function storeBlock(maps: MapStore, pool: HashPool, data: Uint8Array): Promise<PutBlockResult> {
  return (await hashAndStore(maps, pool, data)).stored;
}

/** What hashes blocks: the pool, or an upload's MD5 session on it. */
type BlockHasher = Pick<HashPool, "hashBlock">;

/** storeBlock, also giving back the block's memory (`data`'s, or the view that replaced it). */
async function hashAndStore(maps: MapStore, hasher: BlockHasher, data: Uint8Array): Promise<{ stored: PutBlockResult; memory: Buffer }> {
  if (data.length > maps.blockSizeBytes) {
    throw new EngineError("EINVALID", `a block has at most ${maps.blockSizeBytes} bytes, not ${data.length}`);
  }
  const hashed: HashedBlock = await hasher.hashBlock(maps.header.hashAlgorithm, data);
  if (hashed.strippedBytes === 0) return { stored: { hash: hashed.hash, zero: true, created: false }, memory: hashed.data };
  // createExclusive: an existing block has the same content by construction; never rewrite it.
  const created = await maps.objects.createExclusive(contentObjectName(hashed.hash), hashed.data.subarray(0, hashed.strippedBytes));
  return { stored: { hash: hashed.hash, zero: false, created }, memory: hashed.data };
}

export async function writeFile(
  maps: MapStore,
  pool: HashPool,
  name: string,
  source: AsyncIterable<Uint8Array>,
  options: WriteFileOptions = {},
): Promise<WriteFileResult> {
  validateVolumeName(name);
  const maxBytes = options.maxBytes ?? fileSizeMaxBytes(maps.blockSizeBytes);
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new EngineError("EINVALID", `invalid maxBytes ${maxBytes}`);
  // Before reading a byte: a taken name must not cost the client its whole upload.
  if (await maps.exists(name)) throw new EngineError("EEXISTS", `${name} already exists`, { name });
  options.signal?.throwIfAborted();
  // From the first block found stored (dedup) until the map names it: gc must not sweep it between (gc.ts).
  return maps.references.session(() => writeBlocks(maps, pool, name, source, maxBytes, options));
}

async function writeBlocks(maps: MapStore, pool: HashPool, name: string, source: AsyncIterable<Uint8Array>, maxBytes: number, options: WriteFileOptions): Promise<WriteFileResult> {
  const writer = new BlockWriter(maps, pool, Math.min(maxBytes, fileSizeMaxBytes(maps.blockSizeBytes)), options);
  try {
    for await (const chunk of source) {
      options.signal?.throwIfAborted();
      await writer.add(chunk);
    }
    await writer.end();
  } catch (error) {
    // No store of ours may still run when we return; what was stored is left for gc.
    await writer.settle();
    writer.discardMd5();
    throw error;
  }
  const md5Hex = await writer.md5Hex();
  // The blocks are durable before the map that names them (createMap's barrier comes
  // after the map is written, so this one is what orders blocks before entries).
  await maps.objects.barrier();
  const header = await nameFile(maps, name, writer.sizeBytes, writer.hashes);
  return { header, sizeBytes: writer.sizeBytes, md5Hex, hashes: writer.hashes, storedBlocks: writer.storedBlocks };
}

/**
 * Cuts a byte stream into blocks and stores them, at most fileWriteBlocksInFlight at once.
 * add() returns only when the next block has a slot, so the caller pulls no further ahead:
 * memory stays at the blocks in flight plus the one being filled plus one source chunk.
 * A stored block's buffer is filled again (fresh 4 MiB buffers cost a page fault per
 * 4 KiB page when first written): the store has copied it or is done with it once
 * createExclusive returns. With computeMd5 the blocks go through one MD5 session
 * (hash-pool.ts), whose thread sees them in order, so the MD5 never runs on the event loop.
 */
class BlockWriter {
  readonly hashes: Buffer[] = [];
  sizeBytes = 0;
  storedBlocks = 0;
  readonly #maps: MapStore;
  readonly #maxBytes: number;
  readonly #options: WriteFileOptions;
  readonly #md5: Md5Session | undefined;
  readonly #hasher: BlockHasher;
  /** Whole-block buffers free to fill again: at most the blocks in flight plus the one being filled. */
  readonly #free: Buffer[] = [];
  readonly #inFlight = new Set<Promise<void>>();
  #failure: { error: unknown } | undefined;
  #block: Buffer | undefined;
  #filledBytes = 0;
  #nextIndex = 0;

  constructor(maps: MapStore, pool: HashPool, maxBytes: number, options: WriteFileOptions) {
    this.#maps = maps;
    this.#maxBytes = maxBytes;
    this.#options = options;
    this.#md5 = options.computeMd5 === true ? pool.md5Session() : undefined;
    this.#hasher = this.#md5 ?? pool;
  }

  async add(chunk: Uint8Array): Promise<void> {
    if (this.sizeBytes + chunk.length > this.#maxBytes) {
      throw new EngineError("EINVALID", `the data exceeds the limit of ${this.#maxBytes} bytes`, { maxBytes: this.#maxBytes });
    }
    this.sizeBytes += chunk.length;
    const blockSizeBytes = this.#maps.blockSizeBytes;
    for (let offset = 0; offset < chunk.length; ) {
      // A block of its own (not a slice of Node's shared pool), so the pool can move it to a thread.
      this.#block ??= this.#free.pop() ?? Buffer.allocUnsafeSlow(this.#firstBlockBytes(blockSizeBytes));
      if (this.#filledBytes === this.#block.length) this.#block = this.#grown(blockSizeBytes);
      const copiedBytes = Math.min(this.#block.length - this.#filledBytes, chunk.length - offset);
      this.#block.set(chunk.subarray(offset, offset + copiedBytes), this.#filledBytes);
      this.#filledBytes += copiedBytes;
      offset += copiedBytes;
      if (this.#filledBytes === blockSizeBytes) await this.#dispatch();
    }
  }

  /** A whole block, unless the stream is expected to fit in less (only the first block is ever short). */
  #firstBlockBytes(blockSizeBytes: number): number {
    const expected = this.#options.expectedBytes;
    const small = this.#nextIndex === 0 && expected !== undefined && Number.isSafeInteger(expected) && expected > 0 && expected < blockSizeBytes;
    return small ? expected : blockSizeBytes;
  }

  /** The stream outgrew its expected size: the block so far, in a whole block's buffer. */
  #grown(blockSizeBytes: number): Buffer {
    const whole = Buffer.allocUnsafeSlow(blockSizeBytes);
    (this.#block as Buffer).copy(whole, 0, 0, this.#filledBytes);
    return whole;
  }

  /** Stores the short last block, if any, and waits for every block. */
  async end(): Promise<void> {
    if (this.#filledBytes > 0) await this.#dispatch();
    await this.settle();
    if (this.#failure !== undefined) throw this.#failure.error;
  }

  /** Waits for the blocks in flight (they never reject: failures are kept in #failure). */
  async settle(): Promise<void> {
    await Promise.all(this.#inFlight);
  }

  /** The stream's MD5 (after end()). */
  async md5Hex(): Promise<string | undefined> {
    return this.#md5?.md5Hex();
  }

  /** After a failure: lets the hashing thread forget the MD5 state (the digest is dropped). */
  discardMd5(): void {
    void this.#md5?.md5Hex().catch(() => undefined);
  }

  async #dispatch(): Promise<void> {
    const block = (this.#block as Buffer).subarray(0, this.#filledBytes);
    this.#block = undefined;
    this.#filledBytes = 0;
    while (this.#inFlight.size >= fileWriteBlocksInFlight) await Promise.race(this.#inFlight);
    if (this.#failure !== undefined) throw this.#failure.error;
    this.#options.signal?.throwIfAborted();
    const index = this.#nextIndex++;
    const task: Promise<void> = this.#store(index, block).then(
      () => void this.#inFlight.delete(task),
      (error: unknown) => {
        this.#inFlight.delete(task);
        this.#failure ??= { error };
      },
    );
    this.#inFlight.add(task);
  }

  async #store(index: number, block: Buffer): Promise<void> {
    const { stored, memory } = await hashAndStore(this.#maps, this.#hasher, block);
    this.hashes[index] = stored.hash;
    if (stored.created) this.storedBlocks++;
    this.#recycle(memory);
    this.#options.onBlock?.({ index, stored: stored.created });
  }

  /** Keeps a block's buffer for the next block if it is a whole block of its own (the short last block's copy is not). */
  #recycle(memory: Buffer): void {
    const whole = memory.buffer;
    if (!(whole instanceof ArrayBuffer) || whole.byteLength !== this.#maps.blockSizeBytes) return;
    if (this.#free.length < fileWriteBlocksInFlight + 1) this.#free.push(Buffer.from(whole));
  }
}

// ── read ───────────────────────────────────────────────────────────────────

/** Opens any frozen map (file, snapshot, image) for reading. */
export async function openFile(maps: MapStore, name: string): Promise<FileReader> {
  const { header, entries } = await maps.loadMap(name);
  if (!header.frozen) {
    throw new EngineError("ENOT_FROZEN", `${name} is a writable volume: read it as a volume, or snapshot it`, { name });
  }
  return new MapFileReader(maps, header, entries);
}

/** The part of one block a range covers. */
interface Piece {
  index: number;
  offsetInBlockBytes: number;
  lengthBytes: number;
  /** Where the piece starts in the range. */
  rangeOffsetBytes: number;
}

class MapFileReader implements FileReader {
  readonly header: MapHeader;
  readonly #maps: MapStore;
  readonly #entries: MapEntries;

  constructor(maps: MapStore, header: MapHeader, entries: MapEntries) {
    this.#maps = maps;
    this.header = header;
    this.#entries = entries;
  }

  get sizeBytes(): number {
    return this.header.sizeBytes;
  }

  get contentHash(): string | null {
    return this.header.contentHash;
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    this.#checkRange(offsetBytes, lengthBytes);
    if (lengthBytes > fileReadLengthMaxBytes) {
      throw new EngineError("EINVALID", `a read of ${lengthBytes} bytes exceeds the limit of ${fileReadLengthMaxBytes}: use stream()`);
    }
    const out = Buffer.allocUnsafe(lengthBytes);
    const pieces = [...this.#pieces(offsetBytes, offsetBytes + lengthBytes)];
    await forEachLimited(pieces.values(), pieces.length, fileReadAheadBlocks, (piece) =>
      this.#readPiece(piece, out.subarray(piece.rangeOffsetBytes, piece.rangeOffsetBytes + piece.lengthBytes)),
    );
    return out;
  }

  stream(startBytes: number, endExclusiveBytes: number): Readable {
    this.#checkRange(startBytes, endExclusiveBytes - startBytes);
    return new BlockStream(this.#pieces(startBytes, endExclusiveBytes), async (piece) => {
      const data = Buffer.allocUnsafe(piece.lengthBytes);
      await this.#readPiece(piece, data);
      return data;
    });
  }

  #checkRange(offsetBytes: number, lengthBytes: number): void {
    if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0) {
      throw new EngineError("EINVALID", `invalid range: offset ${offsetBytes}, length ${lengthBytes}`);
    }
    if (offsetBytes + lengthBytes > this.sizeBytes) {
      throw new EngineError("ERANGE_PAST_END", `${offsetBytes}+${lengthBytes} reaches past the end of ${this.header.name} (${this.sizeBytes} bytes)`, {
        name: this.header.name,
      });
    }
  }

  *#pieces(startBytes: number, endBytes: number): Generator<Piece> {
    const blockSizeBytes = this.header.blockSizeBytes;
    for (let position = startBytes; position < endBytes; ) {
      const index = Math.floor(position / blockSizeBytes);
      const offsetInBlockBytes = position - index * blockSizeBytes;
      const lengthBytes = Math.min(blockSizeBytes - offsetInBlockBytes, endBytes - position);
      yield { index, offsetInBlockBytes, lengthBytes, rangeOffsetBytes: position - startBytes };
      position += lengthBytes;
    }
  }

  /** Fills `target` with the piece: zeros for a zero entry (the store is not asked). */
  async #readPiece(piece: Piece, target: Buffer): Promise<void> {
    const object = this.#entries.objectName(piece.index);
    if (object === undefined) {
      target.fill(0);
      return;
    }
    try {
      await this.#maps.objects.readInto(object, piece.offsetInBlockBytes, target);
    } catch (error) {
      if (isEngineError(error, "ENOT_FOUND")) {
        throw new EngineError("ECORRUPT", `${this.header.name}: block ${piece.index} (${object}) is missing`, { name: this.header.name }, { cause: error });
      }
      throw error;
    }
  }
}

/**
 * A Readable over pieces read at most fileReadAheadBlocks ahead of the consumer.
 *
 *   _read ──► top up `ahead` to fileReadAheadBlocks reads ──► await the oldest ──► push
 *                                               push false (consumer busy) ──► stop until next _read
 *
 * highWaterMark 0: the stream's own buffer holds at most the piece just pushed, so what is
 * buffered is bounded by the read-ahead, whatever the block size.
 */
class BlockStream extends Readable {
  readonly #pieces: Iterator<Piece>;
  readonly #readPiece: (piece: Piece) => Promise<Buffer>;
  readonly #ahead: Array<Promise<Buffer>> = [];
  #piecesLeft = true;
  /** _read was called and not yet answered by a push. */
  #wanted = false;
  #pumping = false;

  constructor(pieces: Iterator<Piece>, readPiece: (piece: Piece) => Promise<Buffer>) {
    super({ highWaterMark: 0 });
    this.#pieces = pieces;
    this.#readPiece = readPiece;
  }

  override _read(): void {
    this.#wanted = true;
    // push() may call _read synchronously (a consumer reading in its 'data' handler): the
    // running pump sees #wanted and goes on, so no request is lost.
    if (!this.#pumping) void this.#pump();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#ahead.length = 0; // their results are dropped; their failures were already caught
    this.#piecesLeft = false;
    callback(error);
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      while (this.#wanted && !this.destroyed) {
        this.#wanted = false;
        this.#fill();
        const next = this.#ahead.shift();
        if (next === undefined) {
          this.push(null);
          return;
        }
        const data = await next;
        if (this.destroyed) return;
        if (this.push(data)) this.#wanted = true;
      }
    } catch (error) {
      this.destroy(error instanceof Error ? error : new Error(String(error)));
    } finally {
      this.#pumping = false;
    }
  }

  #fill(): void {
    while (this.#piecesLeft && this.#ahead.length < fileReadAheadBlocks) {
      const next = this.#pieces.next();
      if (next.done === true) {
        this.#piecesLeft = false;
        return;
      }
      const read = this.#readPiece(next.value);
      // Awaited in order later (or dropped on destroy): never an unhandled rejection meanwhile.
      void read.catch(() => undefined);
      this.#ahead.push(read);
    }
  }
}

/** Runs `action` on items (`count` of them) with at most `inFlightMax` running; rejects with the first failure, after all stop. */
async function forEachLimited<T>(items: Iterator<T>, count: number, inFlightMax: number, action: (item: T) => Promise<void>): Promise<void> {
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    for (let next = items.next(); next.done !== true && failure === undefined; next = items.next()) {
      try {
        await action(next.value);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlightMax, count) }, worker));
  if (failure !== undefined) throw failure.error;
}
