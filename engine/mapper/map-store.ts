/**
 * The mapper's persistence: the store header, the directory of names, and map objects.
 *
 * Crash rules: a map's header and entries are written and made durable *before* its
 * directory entry is created, and the directory entry is removed (durably) *before* its
 * map objects; so a name never points at a missing map. A crash in between leaves an
 * unnamed map, which gc removes after its grace period.
 *
 * gc rules (gc.ts): createMap runs as a reference session and pins the new map; lockMap
 * pins the map it locked, so a gc under way re-reads it (references.ts).
 */
import { randomBytes, randomUUID } from "node:crypto";
import { EngineError, isEngineError } from "../errors.ts";
import type { ObjectLock, ObjectStore } from "../blocker/object-store.ts";
import type { HashAlgorithm } from "../blocker/content.ts";
import { blockCount, entrySizeBytes, MapEntries } from "./entries.ts";
import { ReferenceGate, type ReferenceSession } from "./references.ts";
import {
  blockSizeDefaultBytes,
  decodeDirectoryEntry,
  decodeMapHeader,
  decodeStoreHeader,
  directoryObject,
  encodeDirectoryEntry,
  encodeMapHeader,
  encodeStoreHeader,
  mapEntriesObject,
  mapHeaderObject,
  mapOriginalEntriesObject,
  storeHeaderObject,
  validateBlockSize,
  validateVolumeName,
  type DirectoryEntry,
  type MapHeader,
  type MapKind,
  type StoreHeader,
} from "./headers.ts";

/** Map and header objects are small; read them whole with one bounded request. */
const headerReadMaxBytes = 64 * 1024;
/**
 * A writer renews its volume lease this often; RADOS-style leases expire after
 * `volumeLeaseMs` without renewal. File locks (flock) end with the process instead.
 */
export const volumeLeaseMs = 30_000;

export interface LoadedMap {
  header: MapHeader;
  entries: MapEntries;
}

export interface NewMap {
  name: string;
  kind: MapKind;
  frozen: boolean;
  sizeBytes: number;
  volumeId?: string;
  epoch?: number;
  parentMapId?: string | null;
  contentHash?: string | null;
  entries?: MapEntries;
}

export class MapStore {
  readonly objects: ObjectStore;
  readonly header: StoreHeader;
  /** Keeps gc from sweeping blocks that maps being made reference (references.ts, gc.ts). */
  readonly references: ReferenceGate;

  private constructor(objects: ObjectStore, header: StoreHeader) {
    this.objects = objects;
    this.header = header;
    this.references = new ReferenceGate(objects);
  }

  static async init(objects: ObjectStore, options: { blockSizeBytes?: number; hashAlgorithm?: HashAlgorithm } = {}): Promise<MapStore> {
    const blockSizeBytes = options.blockSizeBytes ?? blockSizeDefaultBytes;
    validateBlockSize(blockSizeBytes);
    const header: StoreHeader = {
      storeId: randomUUID(),
      blockSizeBytes,
      hashAlgorithm: options.hashAlgorithm ?? "blake3",
      createdAtMs: Date.now(),
    };
    const created = await objects.createExclusive(storeHeaderObject, encodeStoreHeader(header));
    if (!created) throw new EngineError("EEXISTS", `a store is already initialised at ${objects.uri}`);
    await objects.barrier();
    return new MapStore(objects, header);
  }

  static async open(objects: ObjectStore): Promise<MapStore> {
    const stat = await objects.stat(storeHeaderObject);
    if (stat === undefined) {
      throw new EngineError("ENO_STORE", `no store at ${objects.uri}: run \`okeanos store init\` first`);
    }
    const data = await objects.read(storeHeaderObject, 0, Math.min(stat.sizeBytes, headerReadMaxBytes));
    return new MapStore(objects, decodeStoreHeader(data));
  }

  get blockSizeBytes(): number {
    return this.header.blockSizeBytes;
  }

  // ── directory ────────────────────────────────────────────────────────────

  async lookup(name: string): Promise<DirectoryEntry> {
    validateVolumeName(name);
    const data = await this.#readSmall(directoryObject(name));
    if (data === undefined) throw new EngineError("ENOT_FOUND", `no volume, snapshot or image named ${name}`, { name });
    const entry = decodeDirectoryEntry(data, name);
    if (entry.name !== name) throw new EngineError("ECORRUPT", `directory entry ${name} names ${entry.name}`);
    return entry;
  }

  async exists(name: string): Promise<boolean> {
    validateVolumeName(name);
    return (await this.objects.stat(directoryObject(name))) !== undefined;
  }

  /** Every named map, sorted by name. */
  async list(): Promise<DirectoryEntry[]> {
    const entries: DirectoryEntry[] = [];
    for await (const object of this.objects.list("d.")) {
      const name = object.slice(2);
      try {
        entries.push(await this.lookup(name));
      } catch (error) {
        // A name removed while we listed is simply gone.
        if (!isEngineError(error, "ENOT_FOUND")) throw error;
      }
    }
    return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  // ── maps ─────────────────────────────────────────────────────────────────

  async loadHeader(mapId: string): Promise<MapHeader> {
    const data = await this.#readSmall(mapHeaderObject(mapId));
    if (data === undefined) throw new EngineError("ECORRUPT", `map ${mapId} is named but its header ${mapHeaderObject(mapId)} is missing`);
    const header = decodeMapHeader(data, mapId);
    if (header.blockSizeBytes !== this.blockSizeBytes) {
      throw new EngineError("ECORRUPT", `map ${mapId} has block size ${header.blockSizeBytes}, the store ${this.blockSizeBytes}`);
    }
    return header;
  }

  async loadEntries(header: MapHeader, object = mapEntriesObject(header.mapId)): Promise<MapEntries> {
    const count = blockCount(header.sizeBytes, header.blockSizeBytes);
    const stat = await this.objects.stat(object);
    const storedBytes = Math.min(stat?.sizeBytes ?? 0, count * entrySizeBytes);
    const stored = storedBytes === 0 ? Buffer.alloc(0) : await this.#readLarge(object, storedBytes);
    return MapEntries.decode(stored, count, `map entries ${object}`);
  }

  /** The entries a hashed map had before hashing, if it was hashed. */
  async loadOriginalEntries(header: MapHeader): Promise<MapEntries | undefined> {
    const object = mapOriginalEntriesObject(header.mapId);
    if ((await this.objects.stat(object)) === undefined) return undefined;
    return this.loadEntries(header, object);
  }

  async loadMap(name: string): Promise<LoadedMap> {
    const entry = await this.lookup(name);
    const header = await this.loadHeader(entry.mapId);
    return { header, entries: await this.loadEntries(header) };
  }

  async writeHeader(header: MapHeader): Promise<void> {
    // writeFull is atomic: a crash leaves the old header or the new, never half of each.
    await this.objects.writeFull(mapHeaderObject(header.mapId), encodeMapHeader(header));
  }

  /** Writes entries `[first, first + n)` in place. Not durable until the next barrier. */
  async writeEntries(mapId: string, entries: MapEntries, first: number, n: number, object = mapEntriesObject(mapId)): Promise<void> {
    if (n === 0) return;
    await this.#writeLarge(object, first * entrySizeBytes, entries.raw(first, n));
  }

  /**
   * Creates a map and names it; durable on return. A reference session (nested in the
   * caller's, which must span from looking at the blocks or source map to here).
   */
  async createMap(spec: NewMap): Promise<LoadedMap> {
    return this.references.session((session) => this.#createMap(spec, session));
  }

  async #createMap(spec: NewMap, session: ReferenceSession): Promise<LoadedMap> {
    validateVolumeName(spec.name);
    if (!Number.isSafeInteger(spec.sizeBytes) || spec.sizeBytes < 0) throw new EngineError("EINVALID", `invalid size ${spec.sizeBytes}`);
    if (await this.exists(spec.name)) throw new EngineError("EEXISTS", `${spec.name} already exists`, { name: spec.name });
    const count = blockCount(spec.sizeBytes, this.blockSizeBytes);
    const entries = spec.entries ?? MapEntries.zeroed(count);
    if (entries.count !== count) entries.grow(count);
    const header: MapHeader = {
      mapId: randomBytes(12).toString("hex"),
      name: spec.name,
      kind: spec.kind,
      frozen: spec.frozen,
      sizeBytes: spec.sizeBytes,
      blockSizeBytes: this.blockSizeBytes,
      volumeId: spec.volumeId ?? newVolumeId(),
      epoch: spec.epoch ?? 1,
      parentMapId: spec.parentMapId ?? null,
      createdAtMs: Date.now(),
      contentHash: spec.contentHash ?? null,
    };
    await session.pin(header.mapId);
    if (spec.entries !== undefined) await this.writeEntries(header.mapId, entries, 0, count);
    await this.writeHeader(header);
    await this.objects.barrier();
    const directoryEntry: DirectoryEntry = { name: spec.name, mapId: header.mapId, kind: spec.kind, createdAtMs: header.createdAtMs };
    if (!(await this.objects.createExclusive(directoryObject(spec.name), encodeDirectoryEntry(directoryEntry)))) {
      throw new EngineError("EEXISTS", `${spec.name} already exists`, { name: spec.name });
    }
    await this.objects.barrier();
    return { header, entries };
  }

  /** Unnames a map and removes its map objects; the blocks are left for gc. */
  async removeMap(entry: DirectoryEntry): Promise<void> {
    await this.objects.remove(directoryObject(entry.name));
    await this.objects.barrier();
    for (const object of [mapEntriesObject(entry.mapId), mapOriginalEntriesObject(entry.mapId), mapHeaderObject(entry.mapId)]) {
      await this.objects.remove(object);
    }
  }

  lockObject(mapId: string): string {
    return `l.${mapId}`;
  }

  /**
   * Takes a map's exclusive writer lock; EVOLUME_LOCKED names the holder. The map is pinned
   * for a gc under way: whatever the holder makes it reference, gc re-reads it (gc.ts).
   */
  async lockMap(header: MapHeader, owner: string): Promise<ObjectLock> {
    let lock: ObjectLock;
    try {
      lock = await this.objects.lock(this.lockObject(header.mapId), owner, volumeLeaseMs);
    } catch (error) {
      if (isEngineError(error, "EVOLUME_LOCKED")) {
        const holder = error.details["holder"] as { owner?: string; pid?: number; host?: string } | undefined;
        const who = holder ? `${holder.owner ?? "?"} (pid ${holder.pid ?? "?"} on ${holder.host ?? "?"})` : "another process";
        throw new EngineError("EVOLUME_LOCKED", `${header.name} is open for writing by ${who}`, { ...error.details, name: header.name }, { cause: error });
      }
      throw error;
    }
    try {
      await this.references.session((session) => session.pin(header.mapId));
    } catch (error) {
      await lock.release();
      throw error;
    }
    return lock;
  }

  async #readSmall(object: string): Promise<Buffer | undefined> {
    const stat = await this.objects.stat(object);
    if (stat === undefined) return undefined;
    try {
      return await this.objects.read(object, 0, Math.min(stat.sizeBytes, headerReadMaxBytes));
    } catch (error) {
      if (isEngineError(error, "ENOT_FOUND")) return undefined;
      throw error;
    }
  }

  /** Reads a (possibly large) object in pieces the object-store request limit allows. */
  async #readLarge(object: string, lengthBytes: number): Promise<Buffer> {
    const out = Buffer.alloc(lengthBytes);
    for (let offset = 0; offset < lengthBytes; offset += mapIoPieceBytes) {
      const piece = await this.objects.read(object, offset, Math.min(mapIoPieceBytes, lengthBytes - offset));
      piece.copy(out, offset);
    }
    return out;
  }

  async #writeLarge(object: string, offsetBytes: number, data: Buffer): Promise<void> {
    for (let done = 0; done < data.length; done += mapIoPieceBytes) {
      await this.objects.write(object, offsetBytes + done, data.subarray(done, Math.min(data.length, done + mapIoPieceBytes)));
    }
  }
}

/** Map I/O in 32 MiB pieces, half the object store's 64 MiB request limit. */
const mapIoPieceBytes = 32 * 1024 * 1024;

export function newVolumeId(): string {
  return randomBytes(8).toString("hex");
}
