/**
 * The store header, map headers and directory entries: their fields, their limits, and
 * their encodings (framing.ts). Decoding checks every field, so a damaged object is
 * reported as ECORRUPT and never half-trusted.
 */
import { EngineError } from "../errors.ts";
import type { HashAlgorithm } from "../blocker/content.ts";
import { decodeFramed, encodeFramed, field, isBoolean, isRecord, isSafeNonNegativeInteger, isString } from "./framing.ts";

export const storeHeaderObject = "okeanos.store";
const storeMagic = "OKSTORE";
const mapMagic = "OKMAP";
const directoryMagic = "OKDIR";
export const formatVersion = 1;

/** 4 KiB: the smallest block a guest file system writes; smaller blocks only grow the map. */
export const blockSizeMinBytes = 4096;
/** 32 MiB: a copy-up of a larger block would stall a guest's small write for too long. */
export const blockSizeMaxBytes = 32 * 1024 * 1024;
/** Pithos+ and Archipelago use 4 MiB blocks; sha256 stores need it for hashmap compatibility. */
export const blockSizeDefaultBytes = 4 * 1024 * 1024;

export interface StoreHeader {
  storeId: string;
  blockSizeBytes: number;
  hashAlgorithm: HashAlgorithm;
  createdAtMs: number;
}

export function validateBlockSize(blockSizeBytes: number): void {
  const isPowerOfTwo = Number.isSafeInteger(blockSizeBytes) && blockSizeBytes > 0 && (blockSizeBytes & (blockSizeBytes - 1)) === 0;
  if (!isPowerOfTwo || blockSizeBytes < blockSizeMinBytes || blockSizeBytes > blockSizeMaxBytes) {
    throw new EngineError("EINVALID", `block size must be a power of two from 4K to 32M, not ${blockSizeBytes}`);
  }
}

export function encodeStoreHeader(header: StoreHeader): Buffer {
  return encodeFramed(storeMagic, formatVersion, { ...header });
}

export function decodeStoreHeader(data: Buffer): StoreHeader {
  const what = `store header (${storeHeaderObject})`;
  const { payload } = decodeFramed(storeMagic, formatVersion, data, what);
  if (!isRecord(payload)) throw new EngineError("ECORRUPT", `${what} is corrupt: payload is not a record`);
  const hashAlgorithm = field(payload, "hashAlgorithm", (v): v is HashAlgorithm => v === "blake3" || v === "sha256", what);
  const blockSizeBytes = field(payload, "blockSizeBytes", isSafeNonNegativeInteger, what);
  try {
    validateBlockSize(blockSizeBytes);
  } catch {
    throw new EngineError("ECORRUPT", `${what} is corrupt: block size ${blockSizeBytes}`);
  }
  return {
    storeId: field(payload, "storeId", isString, what),
    blockSizeBytes,
    hashAlgorithm,
    createdAtMs: field(payload, "createdAtMs", isSafeNonNegativeInteger, what),
  };
}

/**
 * A volume is writable; snapshots, images and files are frozen maps. A file (a Pithos+
 * object version, engine/files.ts) is created from content-addressed blocks: all its
 * entries are content or zero entries, and its content hash is set from the start.
 */
export type MapKind = "volume" | "snapshot" | "image" | "file";
const mapKinds: readonly MapKind[] = ["volume", "snapshot", "image", "file"];

export interface MapHeader {
  mapId: string;
  name: string;
  kind: MapKind;
  /** Frozen maps never change their entries except by hashing (same content, new names). */
  frozen: boolean;
  sizeBytes: number;
  blockSizeBytes: number;
  /**
   * Names the private blocks this map writes: `p.<volumeId>.<epoch>.<index>`. For a frozen
   * map it is the volume it was taken from (informational).
   */
  volumeId: string;
  /** Bumped by every snapshot: private blocks of an older epoch are frozen (shared). */
  epoch: number;
  /** The map this one was snapshotted or cloned from, if any. */
  parentMapId: string | null;
  createdAtMs: number;
  /** Set when every entry is content-addressed: the Pithos+ object hash (Merkle root), hex. */
  contentHash: string | null;
}

export function mapHeaderObject(mapId: string): string {
  return `m.${mapId}`;
}

export function mapEntriesObject(mapId: string): string {
  return `e.${mapId}`;
}

/** The entries a map had before hashing: lets diff match blocks across the rename. */
export function mapOriginalEntriesObject(mapId: string): string {
  return `o.${mapId}`;
}

export function encodeMapHeader(header: MapHeader): Buffer {
  return encodeFramed(mapMagic, formatVersion, { ...header });
}

export function decodeMapHeader(data: Buffer, mapId: string): MapHeader {
  const what = `map header ${mapHeaderObject(mapId)}`;
  const { payload } = decodeFramed(mapMagic, formatVersion, data, what);
  if (!isRecord(payload)) throw new EngineError("ECORRUPT", `${what} is corrupt: payload is not a record`);
  const isNullableString = (v: unknown): v is string | null => v === null || typeof v === "string";
  const header: MapHeader = {
    mapId: field(payload, "mapId", isString, what),
    name: field(payload, "name", isString, what),
    kind: field(payload, "kind", (v): v is MapKind => mapKinds.includes(v as MapKind), what),
    frozen: field(payload, "frozen", isBoolean, what),
    sizeBytes: field(payload, "sizeBytes", isSafeNonNegativeInteger, what),
    blockSizeBytes: field(payload, "blockSizeBytes", isSafeNonNegativeInteger, what),
    volumeId: field(payload, "volumeId", (v): v is string => typeof v === "string" && /^[0-9a-f]{16}$/.test(v), what),
    epoch: field(payload, "epoch", isSafeNonNegativeInteger, what),
    parentMapId: field(payload, "parentMapId", isNullableString, what),
    createdAtMs: field(payload, "createdAtMs", isSafeNonNegativeInteger, what),
    contentHash: field(payload, "contentHash", isNullableString, what),
  };
  if (header.mapId !== mapId) throw new EngineError("ECORRUPT", `${what} is corrupt: it names map ${header.mapId}`);
  return header;
}

/**
 * Names of volumes, snapshots and images: they become object names (`d.<name>`), so
 * they are limited to a portable alphabet. 128 characters leaves room for prefixes
 * under the 200-byte object-name limit.
 */
export const volumeNameLengthMax = 128;
const volumeNamePattern = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

export function validateVolumeName(name: string): void {
  if (name.length > volumeNameLengthMax || !volumeNamePattern.test(name)) {
    throw new EngineError("EINVALID", `invalid name ${JSON.stringify(name)}: use letters, digits, '.', '_' and '-' (at most ${volumeNameLengthMax}), not starting with '.' or '-'`);
  }
}

export interface DirectoryEntry {
  name: string;
  mapId: string;
  kind: MapKind;
  createdAtMs: number;
}

export function directoryObject(name: string): string {
  return `d.${name}`;
}

export function encodeDirectoryEntry(entry: DirectoryEntry): Buffer {
  return encodeFramed(directoryMagic, formatVersion, { ...entry });
}

export function decodeDirectoryEntry(data: Buffer, name: string): DirectoryEntry {
  const what = `directory entry ${directoryObject(name)}`;
  const { payload } = decodeFramed(directoryMagic, formatVersion, data, what);
  if (!isRecord(payload)) throw new EngineError("ECORRUPT", `${what} is corrupt: payload is not a record`);
  return {
    name: field(payload, "name", isString, what),
    mapId: field(payload, "mapId", isString, what),
    kind: field(payload, "kind", (v): v is MapKind => mapKinds.includes(v as MapKind), what),
    createdAtMs: field(payload, "createdAtMs", isSafeNonNegativeInteger, what),
  };
}
