/**
 * Snapshots of block-storage volumes: each an engine snapshot map `volsnap-<id>`.
 *
 *   create   under the volume's row lock: the volume available, or attached with `force`
 *            (Cinder's rule) → snapshot `creating`; the service takes the engine snapshot
 *            → available | error
 *   delete   under the snapshot's row lock: not while a volume is being created from it
 *            → deleting; the service deletes the map, then removes the row
 *
 * The volume row is locked before the snapshot row whenever both are (createBlockVolume from a
 * snapshot locks only the snapshot), so the lock order is volume → snapshot everywhere.
 */
import { sql } from "kysely";
import type { MetadataDatabase } from "../connect.ts";
import { DbError } from "../errors.ts";
import type { VolumeSnapshotStatus } from "../schema.ts";
import { inTransaction } from "../transaction.ts";
import { checkInteger, checkUuid } from "./limits.ts";
import { checkVolumeDescription, checkVolumeName, lockBlockVolumeRow } from "./volumes.ts";
import { snapshotFromRow, volumeListLimitMax, volumeSnapshotStatuses, type VolumeSnapshot } from "./volumes-common.ts";

export interface NewVolumeSnapshot {
  id: string;
  userUuid: string;
  volumeId: string;
  name: string;
  description: string | null;
  engineName: string;
  /** Cinder's `force`: snapshot an attached (in-use) volume. */
  force: boolean;
}

/**
 * Inserts the snapshot, `creating`, sized as its volume. ENOT_FOUND for a missing volume or
 * another owner's; ECONFLICT (Cinder's wording) when the volume is not available, or attached
 * without `force`.
 */
export async function createVolumeSnapshot(db: MetadataDatabase, input: NewVolumeSnapshot, nowMs = Date.now()): Promise<{ snapshot: VolumeSnapshot; attached: boolean }> {
  const id = checkUuid("id", input.id);
  const name = checkVolumeName(input.name);
  const description = checkVolumeDescription(input.description);
  checkInteger("nowMs", nowMs, { min: 0 });
  return inTransaction(db, async (tx) => {
    const volume = await lockBlockVolumeRow(tx, db.engine, input.volumeId);
    if (volume === undefined || volume.user_uuid !== input.userUuid) throw new DbError("ENOT_FOUND", `Volume ${input.volumeId} could not be found.`, { id: input.volumeId });
    const attachment = await tx.selectFrom("compute_volume_attachments").select("state").where("volume_id", "=", input.volumeId).executeTakeFirst();
    if (volume.status !== "available" || (attachment !== undefined && attachment.state !== "attached")) {
      const status = attachment === undefined ? volume.status : attachment.state;
      throw new DbError("ECONFLICT", `Invalid volume: Volume ${input.volumeId} status must be available, but current status is: ${status}.`, { status });
    }
    if (attachment !== undefined && !input.force) {
      throw new DbError("ECONFLICT", `Invalid volume: Volume ${input.volumeId} status must be available, but current status is: in-use.`, { status: "in-use" });
    }
    const row = {
      id,
      user_uuid: input.userUuid,
      volume_id: input.volumeId,
      name,
      description,
      size_gib: volume.size_gib,
      status: "creating" as const,
      engine_name: input.engineName,
      created_at: nowMs,
      updated_at: nowMs,
    };
    const inserted = await tx.insertInto("volume_snapshots").values(row).returningAll().executeTakeFirstOrThrow();
    return { snapshot: snapshotFromRow(inserted), attached: attachment !== undefined };
  });
}

export async function getVolumeSnapshot(db: MetadataDatabase, id: string): Promise<VolumeSnapshot | undefined> {
  const row = await db.kysely.selectFrom("volume_snapshots").selectAll().where("id", "=", id).executeTakeFirst();
  return row && snapshotFromRow(row);
}

export interface VolumeSnapshotListOptions {
  userUuid?: string;
  name?: string;
  status?: string;
  volumeId?: string;
  storedStatuses?: readonly VolumeSnapshotStatus[];
  sortDir?: "asc" | "desc";
  marker?: string;
  limit?: number;
}

/** Newest first (created_at desc, then id), keyset-paged by marker. */
export async function listVolumeSnapshots(db: MetadataDatabase, options: VolumeSnapshotListOptions = {}): Promise<{ snapshots: VolumeSnapshot[]; next: string | undefined }> {
  const dir = options.sortDir ?? "desc";
  const limit = Math.min(checkInteger("limit", options.limit ?? volumeListLimitMax, { min: 0 }), volumeListLimitMax);
  let query = db.kysely
    .selectFrom("volume_snapshots")
    .selectAll()
    .$if(options.userUuid !== undefined, (q) => q.where("user_uuid", "=", options.userUuid!))
    .$if(options.name !== undefined, (q) => q.where("name", "=", options.name!))
    .$if(options.status !== undefined, (q) => q.where("status", "=", options.status as VolumeSnapshotStatus))
    .$if(options.volumeId !== undefined, (q) => q.where("volume_id", "=", options.volumeId!))
    .$if(options.storedStatuses !== undefined, (q) => (options.storedStatuses!.length === 0 ? q.where(sql<boolean>`1 = 0`) : q.where("status", "in", options.storedStatuses!)));
  if (options.marker !== undefined) {
    const marker = await db.kysely
      .selectFrom("volume_snapshots")
      .select(["id", "created_at"])
      .where("id", "=", options.marker)
      .$if(options.userUuid !== undefined, (q) => q.where("user_uuid", "=", options.userUuid!))
      .executeTakeFirst();
    if (marker === undefined) throw new DbError("ENOT_FOUND", `Marker ${options.marker} could not be found.`, { marker: options.marker });
    const cmp = dir === "asc" ? ">" : "<";
    query = query.where((eb) => eb.or([eb("created_at", cmp, marker.created_at), eb.and([eb("created_at", "=", marker.created_at), eb("id", cmp, marker.id)])]));
  }
  const rows = await query.orderBy("created_at", dir).orderBy("id", dir).limit(limit + 1).execute();
  const snapshots = rows.slice(0, limit).map(snapshotFromRow);
  return { snapshots, next: rows.length > limit && snapshots.length > 0 ? snapshots.at(-1)!.id : undefined };
}

/** Renames or describes the snapshot; the snapshot after. ENOT_FOUND when missing. */
export async function updateVolumeSnapshot(db: MetadataDatabase, id: string, patch: { name?: string; description?: string | null }, nowMs = Date.now()): Promise<VolumeSnapshot> {
  const row = await db.kysely
    .updateTable("volume_snapshots")
    .set({
      ...(patch.name !== undefined && { name: checkVolumeName(patch.name) }),
      ...(patch.description !== undefined && { description: checkVolumeDescription(patch.description) }),
      updated_at: checkInteger("nowMs", nowMs, { min: 0 }),
    })
    .where("id", "=", id)
    .returningAll()
    .executeTakeFirst();
  if (row === undefined) throw new DbError("ENOT_FOUND", `Snapshot ${id} could not be found.`, { id });
  return snapshotFromRow(row);
}

/** Guarded status change, as setBlockVolumeStatus: undefined when missing or not in `from`. */
export async function setVolumeSnapshotStatus(db: MetadataDatabase, id: string, from: VolumeSnapshotStatus, to: VolumeSnapshotStatus, nowMs = Date.now()): Promise<VolumeSnapshot | undefined> {
  if (!volumeSnapshotStatuses.includes(to)) throw new DbError("EINVALID", `unknown snapshot status ${to}`);
  const row = await db.kysely
    .updateTable("volume_snapshots")
    .set({ status: to, updated_at: checkInteger("nowMs", nowMs, { min: 0 }) })
    .where("id", "=", id)
    .where("status", "=", from)
    .returningAll()
    .executeTakeFirst();
  return row && snapshotFromRow(row);
}

/**
 * Claims the snapshot for deletion: available or error* (Cinder), and no volume being created
 * from it (ECONFLICT); then `deleting`. One already deleting is returned as it is.
 */
export async function beginDeleteVolumeSnapshot(db: MetadataDatabase, id: string, userUuid: string | undefined, nowMs = Date.now()): Promise<VolumeSnapshot> {
  return inTransaction(db, async (tx) => {
    const row = await tx
      .selectFrom("volume_snapshots")
      .selectAll()
      .where("id", "=", id)
      .$if(db.engine === "postgres", (query) => query.forUpdate())
      .executeTakeFirst();
    if (row === undefined || (userUuid !== undefined && row.user_uuid !== userUuid)) throw new DbError("ENOT_FOUND", `Snapshot ${id} could not be found.`, { id });
    if (row.status === "deleting") return snapshotFromRow(row);
    if (row.status !== "available" && row.status !== "error" && row.status !== "error_deleting") {
      throw new DbError("ECONFLICT", `Invalid snapshot: Snapshot status must be available or error and must not be part of a group.`, { status: row.status });
    }
    const clone = await tx.selectFrom("volumes").select("id").where("snapshot_id", "=", id).where("status", "=", "creating").executeTakeFirst();
    if (clone !== undefined) throw new DbError("ECONFLICT", `Invalid snapshot: Volume ${clone.id} is being created from snapshot ${id}.`, { volume: clone.id });
    const updated = await tx
      .updateTable("volume_snapshots")
      .set({ status: "deleting", updated_at: checkInteger("nowMs", nowMs, { min: 0 }) })
      .where("id", "=", id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return snapshotFromRow(updated);
  });
}

/** Removes a `deleting` snapshot's row (after its map is gone). False when already gone. */
export async function removeVolumeSnapshot(db: MetadataDatabase, id: string): Promise<boolean> {
  const result = await db.kysely.deleteFrom("volume_snapshots").where("id", "=", id).where("status", "=", "deleting").executeTakeFirst();
  return result.numDeletedRows === 1n;
}
