/**
 * VolumeService: block-storage volumes with an owner over engine volumes (Cinder's model,
 * gateways/volumes/README.md). Every volume is an engine volume `volume-<id>`; every snapshot
 * an engine snapshot `volsnap-<id>`. Creating from an image, a snapshot or another volume is a
 * clone: the map is copied, no block is.
 *
 *   create   row `creating` ─► quota reserved ─► engine volume made (idempotent: skipped when
 *            the map exists) ─► quota accepted, `available`   (failure: quota rejected, `error`)
 *   delete   row `deleting` (refused while attached or with snapshots) ─► engine volume
 *            deleted (idempotent) ─► quota released ─► row removed   (failure: `error_deleting`)
 *   extend   quota reserved ─► row `extending` ─► engine resize ─► accepted, `available`
 *
 * Each step's state is persisted before its engine work, so a crash leaves a status that
 * reconcile.ts finishes (or fails) at the next start-up.
 */
import { randomUUID } from "node:crypto";
import {
  beginDeleteBlockVolume,
  beginDeleteVolumeSnapshot,
  beginExtendBlockVolume,
  changeBlockVolumeMetadata,
  createBlockVolume,
  createVolumeSnapshot,
  getBlockVolume,
  getBlockVolumeMetadata,
  getBlockVolumesMetadata,
  getVolumeSnapshot,
  listBlockVolumes,
  listVolumeSnapshots,
  removeBlockVolume,
  withdrawBlockVolume,
  removeVolumeSnapshot,
  setBlockVolumeStatus,
  setVolumeSnapshotStatus,
  updateBlockVolume,
  updateVolumeSnapshot,
  volumeListLimitMax,
  type BlockVolume,
  type BlockVolumeListOptions,
  type MetadataDatabase,
  type VolumeSnapshot,
  type VolumeSnapshotListOptions,
} from "../../db/index.ts";
import type { Engine } from "../../engine/engine.ts";
import { isEngineError } from "../../engine/errors.ts";
import { isPlanktonError, resolveImage, type ResolvedImage } from "../plankton/index.ts";
import { dbCall, snapshotNotFound, toVolumeError, VolumeError, volumeNotFound } from "./errors.ts";
import { recordOf, volumeDetail, type VolumeDetail, type VolumeRecord } from "./model.ts";
import { acceptKey, createKey, extendKey, gibBytes, rejectKey, releaseVolume, reserveDisk, volumeLimits } from "./quota.ts";

export interface Logger {
  info(object: object, message?: string): void;
  warn(object: object, message?: string): void;
  error(object: object, message?: string): void;
}

/**
 * The serving process's NBD server: a crash-consistent snapshot (and a resize) of a volume its
 * clients may have open, on the Volume they share (engine/nbd/exports.ts).
 */
export interface NbdSnapshotter {
  snapshot(volume: string, snapshotName: string): Promise<void>;
  resize?(volume: string, sizeBytes: number): Promise<void>;
}

export interface VolumeServiceOptions {
  db: MetadataDatabase;
  engine: Engine;
  /**
   * `okeanos serve`'s NBD server (cli/commands/serve-compute.ts gives compute the same): a
   * volume attached to a server is open there, so only it can snapshot the volume. Without it
   * (the CLI) snapshots are taken by the engine directly, which an open volume refuses.
   */
  nbd?: NbdSnapshotter;
  logger?: Logger;
  now?: () => number;
}

export interface CreateVolumeRequest {
  /** GiB; defaults to the source's size for a snapshot or volume source. */
  sizeGib?: number;
  name?: string;
  description?: string | null;
  metadata?: Record<string, string>;
  /** At most one source. */
  imageRef?: string;
  snapshotId?: string;
  sourceVolid?: string;
}

export interface CreateSnapshotRequest {
  volumeId: string;
  name?: string;
  description?: string | null;
  force?: boolean;
}

/** Engine names: the volume, the snapshot, and the transient snapshot a volume is cloned from. */
export const engineNames = {
  volume: (id: string): string => `volume-${id}`,
  snapshot: (id: string): string => `volsnap-${id}`,
  /** A clone of a live volume is a clone of this snapshot of it, deleted once the clone exists. */
  cloneSource: (id: string): string => `volclone-${id}`,
};

const silentLogger: Logger = { info() {}, warn() {}, error() {} };

export class VolumeService {
  readonly db: MetadataDatabase;
  readonly engine: Engine;
  readonly #nbd: NbdSnapshotter | undefined;
  readonly logger: Logger;
  readonly now: () => number;

  constructor(options: VolumeServiceOptions) {
    this.db = options.db;
    this.engine = options.engine;
    this.#nbd = options.nbd;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
  }

  // ── what compute/ uses ──────────────────────────────────────────────────────

  /** The caller's volume; VolumeError ENOT_FOUND for a missing one or another owner's. */
  async getOwned(userUuid: string, volumeId: string): Promise<VolumeRecord> {
    return recordOf(await this.#owned(userUuid, volumeId));
  }

  // ── volumes ─────────────────────────────────────────────────────────────────

  async getVolume(userUuid: string, volumeId: string): Promise<VolumeDetail> {
    const volume = await this.#owned(userUuid, volumeId);
    return volumeDetail(this.db, volume, await getBlockVolumeMetadata(this.db, volume.id));
  }

  async listVolumes(userUuid: string, options: Omit<BlockVolumeListOptions, "userUuid" | "storedStatuses">): Promise<{ volumes: VolumeDetail[]; next: string | undefined }> {
    const page = await dbCall(listBlockVolumes(this.db, { ...options, userUuid }));
    const metadata = await getBlockVolumesMetadata(this.db, page.volumes.map((volume) => volume.id));
    const volumes = await Promise.all(page.volumes.map((volume) => volumeDetail(this.db, volume, metadata.get(volume.id) ?? {})));
    return { volumes, next: page.next };
  }

  async createVolume(userUuid: string, request: CreateVolumeRequest): Promise<VolumeDetail> {
    const sources = [request.imageRef, request.snapshotId, request.sourceVolid].filter((source) => source !== undefined);
    if (sources.length > 1) throw new VolumeError("EBAD_REQUEST", "Invalid input received: Cannot create a volume from more than one source (imageRef, snapshot_id, source_volid).");
    const source = await this.#source(userUuid, request);
    const sizeGib = request.sizeGib ?? source.sizeGib;
    if (sizeGib === undefined) throw new VolumeError("EBAD_REQUEST", "Invalid input received: size is required to create a volume.");
    if (sizeGib < (source.sizeGib ?? 1)) {
      throw new VolumeError("EBAD_REQUEST", `Invalid input received: Volume size '${sizeGib}'GB cannot be smaller than the ${source.kind} size ${source.sizeGib}GB.`);
    }
    const id = randomUUID();
    const created = await dbCall(
      createBlockVolume(
        this.db,
        {
          id,
          userUuid,
          name: request.name ?? "",
          description: request.description ?? null,
          sizeGib,
          engineName: engineNames.volume(id),
          bootable: source.kind === "image",
          imageId: source.image?.image.uuid ?? null,
          snapshotId: request.snapshotId ?? null,
          sourceVolid: request.sourceVolid ?? null,
          metadata: request.metadata ?? {},
        },
        this.now(),
      ),
    );
    try {
      await reserveDisk(this.db, userUuid, createKey(id), `create volume ${id}`, sizeGib);
    } catch (error) {
      await withdrawBlockVolume(this.db, id);
      throw error;
    }
    const volume = await this.finishCreate(created, source.image);
    return volumeDetail(this.db, volume, await getBlockVolumeMetadata(this.db, id));
  }

  /**
   * Makes the engine volume of a `creating` volume (skipped when its map exists: a replay),
   * then accepts its quota and marks it available; on failure rejects the quota and marks it
   * `error`. Used by createVolume and by reconcile.
   */
  async finishCreate(volume: BlockVolume, image?: ResolvedImage): Promise<BlockVolume> {
    try {
      await this.#materialize(volume, image);
      await acceptKey(this.db, createKey(volume.id));
    } catch (error) {
      this.logger.error({ err: error, volume: volume.id }, "volumes: creating the engine volume failed");
      await this.#forget(volume.engineName);
      await this.#forget(engineNames.cloneSource(volume.id));
      await rejectKey(this.db, createKey(volume.id));
      await setBlockVolumeStatus(this.db, volume.id, "creating", "error", this.now());
      throw toVolumeError(error);
    }
    return (await setBlockVolumeStatus(this.db, volume.id, "creating", "available", this.now())) ?? volume;
  }

  async #materialize(volume: BlockVolume, image: ResolvedImage | undefined): Promise<void> {
    const name = volume.engineName;
    if (await this.engine.maps.exists(name)) return;
    const sizeBytes = volume.sizeGib * gibBytes;
    if (volume.imageId !== null) {
      const resolved = image ?? (await resolveImage(this.db, volume.imageId, volume.userUuid));
      await this.engine.clone(resolved.mapName, name, { sizeBytes: Math.max(sizeBytes, resolved.sizeBytes) });
    } else if (volume.snapshotId !== null) {
      const snapshot = await getVolumeSnapshot(this.db, volume.snapshotId);
      if (snapshot === undefined) throw snapshotNotFound(volume.snapshotId);
      await this.engine.clone(snapshot.engineName, name, { sizeBytes });
    } else if (volume.sourceVolid !== null) {
      const source = await getBlockVolume(this.db, volume.sourceVolid);
      if (source === undefined) throw volumeNotFound(volume.sourceVolid);
      const frozen = engineNames.cloneSource(volume.id);
      if (!(await this.engine.maps.exists(frozen))) await this.#snapshot(source.engineName, frozen);
      await this.engine.clone(frozen, name, { sizeBytes });
      await this.#forget(frozen);
    } else {
      await this.engine.createVolume(name, sizeBytes);
    }
  }

  /**
   * Deletes the caller's volume (Cinder: 202, gone when it answers). `cascade` deletes its
   * snapshots first (Cinder's `?cascade=true`, OSC's `volume delete --purge`).
   */
  async deleteVolume(userUuid: string, volumeId: string, options: { cascade?: boolean } = {}): Promise<void> {
    if (options.cascade === true) {
      await this.#owned(userUuid, volumeId);
      for (;;) {
        const { snapshots } = await listVolumeSnapshots(this.db, { userUuid, volumeId, limit: volumeListLimitMax });
        if (snapshots.length === 0) break;
        for (const snapshot of snapshots) await this.deleteSnapshot(userUuid, snapshot.id);
      }
    }
    const volume = await dbCall(beginDeleteBlockVolume(this.db, volumeId, userUuid, this.now()));
    await this.finishDelete(volume);
  }

  /** Removes a `deleting` volume's engine volume, quota and row; `error_deleting` on failure. Used by reconcile too. */
  async finishDelete(volume: BlockVolume): Promise<void> {
    try {
      await this.#forget(volume.engineName);
      await this.#forget(engineNames.cloneSource(volume.id));
      await releaseVolume(this.db, volume.id);
      await removeBlockVolume(this.db, volume.id);
    } catch (error) {
      this.logger.error({ err: error, volume: volume.id }, "volumes: deleting the engine volume failed");
      await setBlockVolumeStatus(this.db, volume.id, "deleting", "error_deleting", this.now());
      throw toVolumeError(error);
    }
  }

  /** Renames, describes, flags; the volume after. */
  async updateVolume(userUuid: string, volumeId: string, patch: { name?: string; description?: string | null; bootable?: boolean }): Promise<VolumeDetail> {
    await this.#owned(userUuid, volumeId);
    const volume = await dbCall(updateBlockVolume(this.db, volumeId, patch, this.now()));
    return volumeDetail(this.db, volume, await getBlockVolumeMetadata(this.db, volumeId));
  }

  /** os-extend: grows an available, unattached volume (Cinder without the extend-in-use microversion). */
  async extendVolume(userUuid: string, volumeId: string, newSizeGib: number): Promise<void> {
    const before = await this.#owned(userUuid, volumeId);
    if (!Number.isSafeInteger(newSizeGib) || newSizeGib <= before.sizeGib) {
      throw new VolumeError("EBAD_REQUEST", `Invalid input received: New size for extend must be greater than current size. (current: ${before.sizeGib}, extended: ${newSizeGib}).`);
    }
    const key = extendKey(volumeId, randomUUID());
    await reserveDisk(this.db, userUuid, key, `extend volume ${volumeId} to ${newSizeGib} GiB`, newSizeGib - before.sizeGib);
    let volume: BlockVolume;
    try {
      volume = await dbCall(beginExtendBlockVolume(this.db, volumeId, userUuid, newSizeGib, this.now()));
    } catch (error) {
      await rejectKey(this.db, key);
      throw error;
    }
    try {
      if (this.#nbd?.resize !== undefined) await this.#nbd.resize(volume.engineName, newSizeGib * gibBytes);
      else await this.engine.resize(volume.engineName, newSizeGib * gibBytes);
      await acceptKey(this.db, key);
    } catch (error) {
      this.logger.error({ err: error, volume: volumeId }, "volumes: extending the engine volume failed");
      await rejectKey(this.db, key);
      await setBlockVolumeStatus(this.db, volumeId, "extending", "error_extending", this.now());
      throw toVolumeError(error);
    }
    await setBlockVolumeStatus(this.db, volumeId, "extending", "available", this.now(), { sizeGib: newSizeGib });
  }

  async getMetadata(userUuid: string, volumeId: string): Promise<Record<string, string>> {
    await this.#owned(userUuid, volumeId);
    return getBlockVolumeMetadata(this.db, volumeId);
  }

  /** Merges (or, with `replace`, replaces) metadata and removes `unset` keys; the metadata after. */
  async changeMetadata(userUuid: string, volumeId: string, change: { set?: Record<string, string>; replace?: boolean; unset?: readonly string[] }): Promise<Record<string, string>> {
    await this.#owned(userUuid, volumeId);
    return dbCall(changeBlockVolumeMetadata(this.db, volumeId, change, this.now()));
  }

  /** Cinder's absolute limits and their use (limits.ts). */
  limits(userUuid: string): Promise<Record<string, number>> {
    return volumeLimits(this.db, userUuid);
  }

  // ── snapshots ───────────────────────────────────────────────────────────────

  async createSnapshot(userUuid: string, request: CreateSnapshotRequest): Promise<VolumeSnapshot> {
    const id = randomUUID();
    const { snapshot } = await dbCall(
      createVolumeSnapshot(
        this.db,
        {
          id,
          userUuid,
          volumeId: request.volumeId,
          name: request.name ?? "",
          description: request.description ?? null,
          engineName: engineNames.snapshot(id),
          force: request.force === true,
        },
        this.now(),
      ),
    );
    return this.finishSnapshot(snapshot);
  }

  /** Takes the engine snapshot of a `creating` snapshot (skipped when its map exists); `error` on failure. */
  async finishSnapshot(snapshot: VolumeSnapshot): Promise<VolumeSnapshot> {
    try {
      if (!(await this.engine.maps.exists(snapshot.engineName))) {
        const volume = await getBlockVolume(this.db, snapshot.volumeId);
        if (volume === undefined) throw volumeNotFound(snapshot.volumeId);
        await this.#snapshot(volume.engineName, snapshot.engineName);
      }
    } catch (error) {
      this.logger.error({ err: error, snapshot: snapshot.id }, "volumes: taking the engine snapshot failed");
      await setVolumeSnapshotStatus(this.db, snapshot.id, "creating", "error", this.now());
      throw toVolumeError(error);
    }
    return (await setVolumeSnapshotStatus(this.db, snapshot.id, "creating", "available", this.now())) ?? snapshot;
  }

  async getSnapshot(userUuid: string, snapshotId: string): Promise<VolumeSnapshot> {
    const snapshot = await getVolumeSnapshot(this.db, snapshotId);
    if (snapshot === undefined || snapshot.userUuid !== userUuid) throw snapshotNotFound(snapshotId);
    return snapshot;
  }

  async listSnapshots(userUuid: string, options: Omit<VolumeSnapshotListOptions, "userUuid" | "storedStatuses">): Promise<{ snapshots: VolumeSnapshot[]; next: string | undefined }> {
    return dbCall(listVolumeSnapshots(this.db, { ...options, userUuid }));
  }

  async updateSnapshot(userUuid: string, snapshotId: string, patch: { name?: string; description?: string | null }): Promise<VolumeSnapshot> {
    await this.getSnapshot(userUuid, snapshotId);
    return dbCall(updateVolumeSnapshot(this.db, snapshotId, patch, this.now()));
  }

  async deleteSnapshot(userUuid: string, snapshotId: string): Promise<void> {
    const snapshot = await dbCall(beginDeleteVolumeSnapshot(this.db, snapshotId, userUuid, this.now()));
    await this.finishDeleteSnapshot(snapshot);
  }

  async finishDeleteSnapshot(snapshot: VolumeSnapshot): Promise<void> {
    try {
      await this.#forget(snapshot.engineName);
      await removeVolumeSnapshot(this.db, snapshot.id);
    } catch (error) {
      this.logger.error({ err: error, snapshot: snapshot.id }, "volumes: deleting the engine snapshot failed");
      await setVolumeSnapshotStatus(this.db, snapshot.id, "deleting", "error_deleting", this.now());
      throw toVolumeError(error);
    }
  }

  // ── shared ──────────────────────────────────────────────────────────────────

  async #owned(userUuid: string, volumeId: string): Promise<BlockVolume> {
    const volume = await getBlockVolume(this.db, volumeId);
    if (volume === undefined || volume.userUuid !== userUuid) throw volumeNotFound(volumeId);
    return volume;
  }

  /** What a create clones from, checked against the caller; its size in GiB. */
  async #source(userUuid: string, request: CreateVolumeRequest): Promise<{ kind: "image" | "snapshot" | "volume" | "none"; sizeGib?: number; image?: ResolvedImage }> {
    if (request.imageRef !== undefined) {
      const image = await resolveImage(this.db, request.imageRef, userUuid).catch((error: unknown) => {
        if (isPlanktonError(error, "ENOT_FOUND")) throw new VolumeError("EBAD_REQUEST", `Invalid image identifier or unable to access requested image.`, { cause: error });
        if (isPlanktonError(error)) throw new VolumeError("EBAD_REQUEST", `Invalid image: ${error.message}`, { cause: error });
        throw error;
      });
      const sizeGib = Math.max(1, Math.ceil(image.sizeBytes / gibBytes), image.image.minDiskGb);
      return { kind: "image", sizeGib, image };
    }
    if (request.snapshotId !== undefined) {
      const snapshot = await this.getSnapshot(userUuid, request.snapshotId);
      return { kind: "snapshot", sizeGib: snapshot.sizeGib };
    }
    if (request.sourceVolid !== undefined) {
      const volume = await this.#owned(userUuid, request.sourceVolid);
      return { kind: "volume", sizeGib: volume.sizeGib };
    }
    return { kind: "none" };
  }

  /** A crash-consistent snapshot: through the serving NBD server when there is one. */
  async #snapshot(volumeName: string, snapshotName: string): Promise<void> {
    if (this.#nbd !== undefined) await this.#nbd.snapshot(volumeName, snapshotName);
    else await this.engine.snapshot(volumeName, snapshotName);
  }

  /** Deletes an engine map if it exists (idempotent steps). */
  async #forget(name: string): Promise<void> {
    try {
      await this.engine.delete(name);
    } catch (error) {
      if (!isEngineError(error, "ENOT_FOUND")) throw error;
    }
  }
}
