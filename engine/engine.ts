/**
 * The engine's front door: one object per store, with every volume, snapshot and image
 * operation the CLI, the NBD server and the gateways need. It owns the object store it
 * was given and closes it.
 */
import { EngineError } from "./errors.ts";
import type { ObjectStore } from "./blocker/object-store.ts";
import type { HashAlgorithm, PutBlockResult } from "./blocker/content.ts";
import type { HashPool } from "./blocker/hash-pool.ts";
import { blockCount } from "./mapper/entries.ts";
import type { DirectoryEntry, MapHeader } from "./mapper/headers.ts";
import { MapStore } from "./mapper/map-store.ts";
import type { HashProgress, HashResult } from "./mapper/hash.ts";
import type { DiffResult } from "./mapper/diff.ts";
import type { GcOptions, GcResult } from "./mapper/gc.ts";
import type { StoreStats } from "./mapper/stats.ts";
import { Volume, type VolumeOpenOptions } from "./volume.ts";
import type { CreateFileResult, FileHashmap, FileReader, WriteFileOptions, WriteFileResult } from "./files.ts";
import type { LockHolder } from "./blocker/object-store.ts";

/**
 * The modules behind the operations a volume command never uses (files, hashing, diff, gc,
 * stats, the hash threads) load on their first call: a CLI command is a process of its own,
 * and these imports (node:stream, node:worker_threads and the rest) were a tenth of a
 * `volume snapshot`'s start-up. Each loads once; later calls reuse the module.
 */
let filesModule: typeof import("./files.ts") | undefined;
const files = async (): Promise<typeof import("./files.ts")> => (filesModule ??= await import("./files.ts"));

export interface MapInfo {
  header: MapHeader;
  blocks: number;
  zeroBlocks: number;
  contentBlocks: number;
  privateBlocks: number;
  /** Who has the map open for writing (or is hashing it), if anyone. */
  lockHolder: LockHolder | undefined;
}

export interface InitOptions {
  blockSizeBytes?: number;
  hashAlgorithm?: HashAlgorithm;
}

export class Engine {
  readonly maps: MapStore;
  /** Hashes file blocks off the event loop: made on first use, its threads start then too. */
  #hashPool: Promise<HashPool> | undefined;

  private constructor(maps: MapStore) {
    this.maps = maps;
  }

  static async init(objects: ObjectStore, options: InitOptions = {}): Promise<Engine> {
    return new Engine(await MapStore.init(objects, options));
  }

  static async open(objects: ObjectStore): Promise<Engine> {
    return new Engine(await MapStore.open(objects));
  }

  get objects(): ObjectStore {
    return this.maps.objects;
  }

  get blockSizeBytes(): number {
    return this.maps.blockSizeBytes;
  }

  get hashAlgorithm(): HashAlgorithm {
    return this.maps.header.hashAlgorithm;
  }

  async createVolume(name: string, sizeBytes: number): Promise<MapHeader> {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw new EngineError("EINVALID", `invalid volume size ${sizeBytes}`);
    blockCount(sizeBytes, this.blockSizeBytes);
    const { header } = await this.maps.createMap({ name, kind: "volume", frozen: false, sizeBytes });
    return header;
  }

  list(): Promise<DirectoryEntry[]> {
    return this.maps.list();
  }

  async info(name: string): Promise<MapInfo> {
    const { header, entries } = await this.maps.loadMap(name);
    let zeroBlocks = 0;
    let contentBlocks = 0;
    for (let index = 0; index < entries.count; index++) {
      if (entries.isZero(index)) zeroBlocks++;
      else if (entries.get(index).kind === "content") contentBlocks++;
    }
    return {
      header,
      blocks: entries.count,
      zeroBlocks,
      contentBlocks,
      privateBlocks: entries.count - zeroBlocks - contentBlocks,
      lockHolder: await this.objects.lockHolder(this.maps.lockObject(header.mapId)),
    };
  }

  openVolume(name: string, options: VolumeOpenOptions = {}): Promise<Volume> {
    return Volume.open(this.maps, name, options);
  }

  async resize(name: string, sizeBytes: number): Promise<void> {
    await this.#withWritable(name, (volume) => volume.resize(sizeBytes));
  }

  /** Snapshot of a volume not open in this process (it is opened, snapshotted, closed). */
  async snapshot(volumeName: string, snapshotName: string): Promise<MapHeader> {
    return this.#withWritable(volumeName, (volume) => volume.snapshot(snapshotName));
  }

  /** A new writable volume sharing every block of a snapshot or image: O(map), no data copied. */
  clone(sourceName: string, newName: string, options: { sizeBytes?: number } = {}): Promise<MapHeader> {
    // The source's blocks stay referenced from reading it until the clone names them (mapper/gc.ts).
    return this.maps.references.session(() => this.#clone(sourceName, newName, options));
  }

  async #clone(sourceName: string, newName: string, options: { sizeBytes?: number }): Promise<MapHeader> {
    const { header: source, entries } = await this.maps.loadMap(sourceName);
    if (!source.frozen) {
      throw new EngineError("ENOT_FROZEN", `${sourceName} is a writable volume; clone a snapshot of it instead`, { name: sourceName });
    }
    const sizeBytes = options.sizeBytes ?? source.sizeBytes;
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < source.sizeBytes) {
      throw new EngineError("EINVALID", `a clone of ${sourceName} needs at least ${source.sizeBytes} bytes, not ${sizeBytes}`);
    }
    const { header } = await this.maps.createMap({
      name: newName,
      kind: "volume",
      frozen: false,
      sizeBytes,
      parentMapId: source.mapId,
      entries,
    });
    return header;
  }

  async hash(name: string, onProgress?: (progress: HashProgress) => void): Promise<HashResult> {
    const { hashMap } = await import("./mapper/hash.ts");
    return hashMap(this.maps, name, onProgress);
  }

  async diff(nameA: string, nameB: string): Promise<DiffResult> {
    const { diffMaps } = await import("./mapper/diff.ts");
    return diffMaps(this.maps, nameA, nameB);
  }

  /** Unnames a map and removes it; its blocks are freed by gc. Refused while it is open for writing. */
  async delete(name: string): Promise<void> {
    const entry = await this.maps.lookup(name);
    const header = await this.maps.loadHeader(entry.mapId);
    const lock = await this.maps.lockMap(header, `delete ${name}`);
    try {
      await this.maps.removeMap(entry);
    } finally {
      await lock.release();
    }
  }

  async gc(options: GcOptions = {}): Promise<GcResult> {
    const { collectGarbage } = await import("./mapper/gc.ts");
    return collectGarbage(this.maps, options);
  }

  async stats(): Promise<StoreStats> {
    const { storeStats } = await import("./mapper/stats.ts");
    return storeStats(this.maps);
  }

  // ── files (Pithos+ object versions; files.ts) ──────────────────────────────

  /** A frozen "file" map of stored blocks; if any are missing, names nothing and lists them. */
  async createFile(name: string, sizeBytes: number, hashes: readonly Buffer[]): Promise<CreateFileResult> {
    return (await files()).createFile(this.maps, name, sizeBytes, hashes);
  }

  /** Block hashes and Merkle root of a frozen map whose blocks are all content-addressed. */
  async fileHashmap(name: string): Promise<FileHashmap> {
    return (await files()).fileHashmap(this.maps, name);
  }

  /** A new "file" map naming the same blocks: O(map), no block object created. */
  async copyFile(source: string, dest: string): Promise<MapHeader> {
    return (await files()).copyFile(this.maps, source, dest);
  }

  /** Reads any frozen map (file, snapshot, image) by byte range. */
  async openFile(name: string): Promise<FileReader> {
    return (await files()).openFile(this.maps, name);
  }

  /** The distinct hashes, in first-appearance order, that name no stored block. */
  async missingBlocks(hashes: readonly Buffer[]): Promise<Buffer[]> {
    return (await files()).missingBlocks(this.maps, hashes);
  }

  /** Stores one block content-addressed, hashing off the event loop; `data` may be detached (files.ts storeBlock). */
  async storeBlock(data: Uint8Array): Promise<PutBlockResult> {
    return (await files()).storeBlock(this.maps, await this.#hashThreads(), data);
  }

  /** Streams `source` into blocks and names a "file" map of them (files.ts writeFile). */
  async writeFile(name: string, source: AsyncIterable<Uint8Array>, options: WriteFileOptions = {}): Promise<WriteFileResult> {
    return (await files()).writeFile(this.maps, await this.#hashThreads(), name, source, options);
  }

  async close(): Promise<void> {
    try {
      await (await this.#hashPool)?.close();
      await this.maps.references.close();
    } finally {
      await this.objects.close();
    }
  }

  #hashThreads(): Promise<HashPool> {
    this.#hashPool ??= import("./blocker/hash-pool.ts").then(({ HashPool }) => new HashPool());
    return this.#hashPool;
  }

  async #withWritable<T>(name: string, action: (volume: Volume) => Promise<T>): Promise<T> {
    const volume = await this.openVolume(name);
    try {
      if (volume.readOnly) throw new EngineError("EREAD_ONLY", `${name} is a frozen ${volume.header.kind}`, { name });
      return await action(volume);
    } finally {
      await volume.close();
    }
  }
}
