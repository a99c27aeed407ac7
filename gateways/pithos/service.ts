/**
 * The object store's operations, apart from HTTP: what the Pithos+ routes, Plankton and the
 * CLI share. Data lives in the engine (one frozen map of content-addressed blocks per data
 * version, named `pithos.<uuid>`), records in the metadata database.
 *
 * Order of effects, so a crash anywhere loses nothing acknowledged and corrupts nothing:
 *   1. blocks stored, map created and durable (engine)       — invisible until 3
 *   2. quota reserved (commission issued)
 *   3. version recorded (one database transaction)           — the new version is visible
 *   4. quota accepted; maps no version names any more deleted from the engine
 * A crash before 3 leaves a map no version names (space only: orphans.ts deletes it after a
 * grace, `okeanos gc --database`) and maybe a pending commission (counted, never lost).
 *
 * Quota: each version records what it was charged (chargedBytes: its size, or less for a
 * frozen image); a write charges its charge minus the charge of the version it replaces, a
 * delete releases the deleted version's charge, so usage is always the sum of the current
 * versions' charges (quota.ts).
 */
import { randomUUID } from "node:crypto";
import type { Engine } from "../../engine/engine.ts";
import { isEngineError } from "../../engine/errors.ts";
import {
  deleteObject,
  getCurrentIncludingExpired,
  isDbError,
  putVersion,
  type MetadataDatabase,
  type PithosContainer,
  type PithosObject,
  type PithosVersion,
  type NewPithosVersion,
} from "../../db/index.ts";
import { zeroBlockHash } from "../../engine/blocker/content.ts";
import { chargeIn, reserveDiskspace } from "./quota.ts";
import { PithosError } from "./wire/errors.ts";
import { maxFileSizeBytes } from "./wire/info.ts";

export const fileMapPrefix = "pithos.";

export function newFileMapName(): string {
  return `${fileMapPrefix}${randomUUID().replaceAll("-", "")}`;
}

export interface PithosServiceOptions {
  engine: Engine;
  db: MetadataDatabase;
  /**
   * Told of a clean-up that failed after a version was stored (accepting its quota
   * reservation, dropping the maps it replaced); by default a process warning.
   */
  onCleanupError?: (error: unknown, what: string) => void;
}

/** What a new version carries besides its data (its charge is commit's to decide). */
export type VersionFields = Omit<NewPithosVersion, "mapName" | "sizeBytes" | "chargedBytes" | "contentHash" | "etag">;

/**
 * Attempts of a commit or delete whose version was replaced by another writer between reading
 * it (to charge against its chargedBytes) and recording: each retry means another write to the
 * same path landed in that window of a few queries, so 8 in a row is contention a client should
 * see (409) rather than a loop.
 */
export const chargeAttemptsMax = 8;

export interface ChargeOptions {
  /**
   * What the owner's disk space quota is charged for the new version (recorded as its
   * chargedBytes, ≤ its size). Default: the charge of the version it replaces when both have
   * the same map and size (a metadata-only change stores no data), else the size. A frozen
   * image passes only the blocks stored anew (plankton/freeze.ts); a partial update passes
   * chargeAfterResize (partial-update.ts).
   */
  chargeBytes?: number;
}

export interface StoredVersion {
  object: PithosObject;
  version: PithosVersion;
}

export interface WriteConditions {
  /** `If-None-Match: *`: create only. */
  createOnly?: boolean;
  /** The caller read this current version and decided on it (If-Match). */
  expectCurrentSerial?: number;
}

/** Past its X-Delete-At: reads as absent, but is still the row a write or delete replaces. */
function isExpired(version: PithosVersion): boolean {
  return version.deleteAt !== null && version.deleteAt <= Date.now();
}

/** The charge commit records for `fields` replacing `replaced` (ChargeOptions.chargeBytes). */
function chargeOf(fields: NewPithosVersion, replaced: PithosVersion | undefined, chargeBytes: number | undefined): number {
  if (chargeBytes !== undefined) return chargeBytes;
  if (replaced !== undefined && replaced.mapName === fields.mapName && replaced.sizeBytes === fields.sizeBytes) return replaced.chargedBytes;
  return fields.sizeBytes;
}

/**
 * A partial update's charge: the version it patches was charged `chargedBytes` of its size;
 * the result is charged that plus what the size grew (less what it shrank), as an ordinary
 * file's charge follows its size. Blocks patched in place cost nothing more, as for any file,
 * and a frozen image keeps the discount on the blocks it still shares with its volume.
 */
export function chargeAfterResize(patched: Pick<PithosVersion, "sizeBytes" | "chargedBytes">, newSizeBytes: number): number {
  return Math.max(0, Math.min(newSizeBytes, patched.chargedBytes + newSizeBytes - patched.sizeBytes));
}

export class PithosService {
  readonly engine: Engine;
  readonly db: MetadataDatabase;

  readonly #onCleanupError: (error: unknown, what: string) => void;

  constructor(options: PithosServiceOptions) {
    this.engine = options.engine;
    this.db = options.db;
    this.#onCleanupError = options.onCleanupError ?? ((error, what) => process.emitWarning(`okeanos pithos: ${what} failed after the version was stored: ${String(error)}`));
  }

  get blockSizeBytes(): number {
    return this.engine.blockSizeBytes;
  }

  get hashAlgorithm(): string {
    return this.engine.hashAlgorithm;
  }

  /** H(""): the hash of an all-zero block, and the one hash of an empty object's hashmap. */
  get zeroBlockHashHex(): string {
    return zeroBlockHash(this.engine.hashAlgorithm).toString("hex");
  }

  /**
   * Stores a stream as a new version. `expectedMd5` (the request's ETag) is checked after the
   * data is in: a mismatch records nothing (422).
   */
  async putFromStream(
    container: PithosContainer,
    path: string,
    source: AsyncIterable<Uint8Array>,
    fields: VersionFields,
    options: WriteConditions & { expectedMd5?: string; expectedSizeBytes?: number; modifiedBy: string },
  ): Promise<StoredVersion> {
    const mapName = newFileMapName();
    const written = await this.engine.writeFile(mapName, source, {
      computeMd5: true,
      maxBytes: maxFileSizeBytes,
      ...(options.expectedSizeBytes !== undefined && { expectedBytes: options.expectedSizeBytes }),
    });
    try {
      if (options.expectedSizeBytes !== undefined && written.sizeBytes !== options.expectedSizeBytes) {
        throw new PithosError("EBAD_REQUEST", `Received ${written.sizeBytes} bytes, Content-Length said ${options.expectedSizeBytes}.`);
      }
      const md5 = written.md5Hex as string;
      if (options.expectedMd5 !== undefined && options.expectedMd5.replace(/^"|"$/g, "").toLowerCase() !== md5) {
        throw new PithosError("EETAG_MISMATCH", "Etag of the uploaded data does not match the ETag header.");
      }
      return await this.commit(container, path, {
        ...fields,
        mapName,
        sizeBytes: written.sizeBytes,
        contentHash: written.header.contentHash ?? "",
        etag: md5,
      }, options);
    } catch (error) {
      await this.#dropMap(mapName);
      throw error;
    }
  }

  /**
   * Pithos+'s create-from-hashmap: every block must already be stored, else nothing is
   * created and the missing hashes come back (409).
   */
  async putFromHashmap(
    container: PithosContainer,
    path: string,
    sizeBytes: number,
    hashes: Buffer[],
    fields: VersionFields,
    options: WriteConditions & { modifiedBy: string },
  ): Promise<{ stored: StoredVersion } | { missing: Buffer[] }> {
    const mapName = newFileMapName();
    const created = await this.engine.createFile(mapName, sizeBytes, hashes);
    if (!created.created) return { missing: created.missing };
    try {
      const contentHash = created.header.contentHash ?? "";
      // Pithos's ETag is the Merkle hash when the data never passed through us whole.
      const stored = await this.commit(container, path, { ...fields, mapName, sizeBytes, contentHash, etag: contentHash }, options);
      return { stored };
    } catch (error) {
      await this.#dropMap(mapName);
      throw error;
    }
  }

  /**
   * A new version whose data is an existing map (copy: a fresh copy of the map; metadata
   * update: the same map). The quota is charged the new version's charge minus what the
   * version it replaces was charged (expired or not: it is replaced all the same), and the
   * write is recorded only if that is still the version it replaces (`replacesSerial`),
   * retried otherwise, so concurrent writers never charge against the same release twice.
   */
  async commit(container: PithosContainer, path: string, fields: NewPithosVersion, options: WriteConditions & ChargeOptions & { modifiedBy: string }): Promise<StoredVersion> {
    for (let attempt = 1; ; attempt++) {
      const replaced = await getCurrentIncludingExpired(this.db, container.id, path);
      if (options.createOnly === true && replaced !== undefined && !isExpired(replaced.version)) throw new PithosError("EPRECONDITION_FAILED", "Object already exists.");
      const chargedBytes = chargeOf(fields, replaced?.version, options.chargeBytes);
      const deltaBytes = chargedBytes - (replaced?.version.chargedBytes ?? 0);
      const what = `pithos put ${container.name}/${path}`;
      // Growth is charged in the version's own transaction; a release takes two phases (quota.ts).
      const reservation = deltaBytes > 0 ? undefined : await reserveDiskspace(this.db, container.account, deltaBytes, what);
      let result;
      try {
        result = await putVersion(this.db, container.id, path, { ...fields, chargedBytes }, {
          modifiedBy: options.modifiedBy,
          replacesSerial: replaced?.version.serial ?? null,
          ...(options.createOnly === true && { ifNoneMatchStar: true }),
          ...(options.expectCurrentSerial !== undefined && { expectCurrentSerial: options.expectCurrentSerial }),
          ...(deltaBytes > 0 && { charge: chargeIn(container.account, deltaBytes, what) }),
        });
      } catch (error) {
        await reservation?.reject();
        if (await this.#replacedMeanwhile(error, container, path, replaced, attempt)) continue;
        throw error; // over quota: EQUOTA_EXCEEDED, 413 at the edge (http-errors.ts)
      }
    // The version is stored and names its map: from here nothing may fail the call, or the
    // caller would drop the map the version reads. A reservation left pending still counts
    // (never under-charges; `okeanos quota pending` shows it); replaced maps are gc's.
      await this.#afterStored(reservation ?? { accept: async () => {} }, result.unreferencedMaps);
      return { object: result.object, version: result.version };
    }
  }

  /**
   * After a failed write: true when another writer replaced the version we charged against
   * (retry with the new one); a 409 after chargeAttemptsMax. A precondition of the caller's
   * own (If-Match, If-None-Match) is re-checked by the retry, so it still fails as such.
   */
  async #replacedMeanwhile(error: unknown, container: PithosContainer, path: string, charged: StoredVersion | undefined, attempt: number): Promise<boolean> {
    if (!isDbError(error, "EPRECONDITION")) return false;
    const now = await getCurrentIncludingExpired(this.db, container.id, path);
    if ((now?.version.serial ?? null) === (charged?.version.serial ?? null)) return false;
    if (attempt >= chargeAttemptsMax) {
      throw new PithosError("ECONFLICT", `${container.name}/${path} kept changing while it was written; try again.`, { cause: error });
    }
    return true;
  }

  async #afterStored(reservation: { accept(): Promise<void> }, unreferencedMaps: readonly string[]): Promise<void> {
    try {
      await reservation.accept();
    } catch (error) {
      this.#onCleanupError(error, "accepting the quota reservation");
    }
    try {
      await this.dropMaps(unreferencedMaps);
    } catch (error) {
      this.#onCleanupError(error, `dropping replaced maps ${unreferencedMaps.join(", ")}`);
    }
  }

  /**
   * A frozen engine map (a hashed snapshot) becomes a file: a new map with the same block
   * hashes (O(map), no block copied or read). `chargeBytes` is what the owner's disk space
   * quota is charged: by default the size, but an image frozen from a volume shares most
   * blocks with it and is charged only the blocks hashing stored anew (issue 7).
   */
  async putFromMap(
    container: PithosContainer,
    path: string,
    sourceMapName: string,
    fields: VersionFields,
    options: WriteConditions & { modifiedBy: string; chargeBytes?: number },
  ): Promise<StoredVersion> {
    const hashmap = await this.engine.fileHashmap(sourceMapName);
    const mapName = newFileMapName();
    await this.engine.copyFile(sourceMapName, mapName);
    try {
      return await this.commit(container, path, { ...fields, mapName, sizeBytes: hashmap.sizeBytes, contentHash: hashmap.contentHash, etag: hashmap.contentHash }, options);
    } catch (error) {
      await this.#dropMap(mapName);
      throw error;
    }
  }

  /** Server-side copy: a new map with the same block hashes (no block is copied). */
  async copy(source: StoredVersion, target: PithosContainer, path: string, fields: VersionFields, options: WriteConditions & { modifiedBy: string }): Promise<StoredVersion> {
    const mapName = newFileMapName();
    await this.engine.copyFile(source.version.mapName, mapName);
    try {
      return await this.commit(target, path, {
        ...fields,
        mapName,
        sizeBytes: source.version.sizeBytes,
        contentHash: source.version.contentHash,
        etag: source.version.etag,
      }, options);
    } catch (error) {
      await this.#dropMap(mapName);
      throw error;
    }
  }

  /**
   * Deletes the current version, releasing what it was charged. An expired one is deleted
   * too (and its charge released) but reported as undefined, as when there is none.
   */
  async delete(container: PithosContainer, path: string, modifiedBy: string): Promise<PithosVersion | undefined> {
    for (let attempt = 1; ; attempt++) {
      const current = await getCurrentIncludingExpired(this.db, container.id, path);
      if (current === undefined) return undefined;
      const reservation = await reserveDiskspace(this.db, container.account, -current.version.chargedBytes, `pithos delete ${container.name}/${path}`);
      let result;
      try {
        result = await deleteObject(this.db, container.id, path, { modifiedBy, expectCurrentSerial: current.version.serial });
      } catch (error) {
        await reservation.reject();
        if (await this.#replacedMeanwhile(error, container, path, current, attempt)) continue;
        throw error;
      }
      await reservation.accept();
      await this.dropMaps(result.unreferencedMaps);
      return result.deleted;
    }
  }

  async dropMaps(mapNames: readonly string[]): Promise<void> {
    for (const name of mapNames) await this.#dropMap(name);
  }

  async #dropMap(name: string): Promise<void> {
    try {
      await this.engine.delete(name);
    } catch (error) {
      // Already gone (a retried cleanup): nothing to do. Anything else is left for gc to report.
      if (!isEngineError(error, "ENOT_FOUND")) throw error;
    }
  }
}
