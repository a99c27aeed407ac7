/**
 * Block-storage volumes (gateways/volumes/, Cinder v3) and their metadata. A volume's attach
 * state is not here: it is the row of compute_volume_attachments naming it, read with every
 * volume (`attachment`), written only by compute/.
 *
 * Every decision that depends on the volume's state locks the volume row first
 * (`FOR UPDATE` on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises the whole transaction),
 * before any other row: compute's attach locks the same row first, so the two never deadlock
 * and never both decide on a stale read (delete vs attach, extend vs attach).
 *
 *   create      status creating (the service then makes the engine volume) → available | error
 *   delete      begin: available|error|error_extending, no attachment, no snapshots, no clone
 *               in progress from it → deleting; the service deletes the engine volume, then
 *               removes the row
 *   extend      begin: available, no attachment → extending; finish → available (new size)
 */
import { sql, type Transaction } from "kysely";
import type { MetadataDatabase } from "../connect.ts";
import { DbError } from "../errors.ts";
import type { Database, VolumeStatus } from "../schema.ts";
import { inTransaction } from "../transaction.ts";
import { checkInteger, checkUuid } from "./limits.ts";
import { checkStringRecord } from "./compute-common.ts";
import {
  volumeDescriptionLengthMax,
  volumeFromRow,
  volumeListLimitMax,
  volumeMetadataItemsMax,
  volumeMetadataKeyLengthMax,
  volumeMetadataValueLengthMax,
  volumeNameLengthMax,
  volumeSizeGibMax,
  volumeSortKeys,
  volumeStatuses,
  type BlockVolume,
  type VolumeSortKey,
} from "./volumes-common.ts";

export * from "./volumes-common.ts";

/** What a new volume is made of; it starts `creating`. */
export interface NewBlockVolume {
  id: string;
  userUuid: string;
  name: string;
  description: string | null;
  sizeGib: number;
  engineName: string;
  bootable: boolean;
  /** At most one of the three sources. */
  imageId: string | null;
  snapshotId: string | null;
  sourceVolid: string | null;
  metadata: Record<string, string>;
}

/** Stored statuses a volume may be deleted from (Cinder: available, error, error_extending…). */
const deletableStatuses: readonly VolumeStatus[] = ["available", "error", "error_extending", "error_deleting"];

/**
 * Inserts the volume, `creating`, with its metadata. A snapshot source must be the caller's and
 * `available`, a source volume the caller's and `available` or attached (in-use); both rows are
 * locked, so the source cannot be deleted while the row goes in, and a delete after sees the
 * clone in progress (beginDeleteBlockVolume, beginDeleteVolumeSnapshot). ENOT_FOUND for a
 * missing source, ECONFLICT for one in the wrong state.
 */
export async function createBlockVolume(db: MetadataDatabase, input: NewBlockVolume, nowMs = Date.now()): Promise<BlockVolume> {
  const sources = [input.imageId, input.snapshotId, input.sourceVolid].filter((source) => source !== null);
  if (sources.length > 1) throw new DbError("EINVALID", "a volume has at most one source (image, snapshot or volume)");
  const row = {
    id: checkUuid("id", input.id),
    user_uuid: checkUuid("userUuid", input.userUuid),
    name: checkVolumeName(input.name),
    description: checkVolumeDescription(input.description),
    size_gib: checkVolumeSize(input.sizeGib),
    status: "creating" as const,
    engine_name: checkEngineName(input.engineName),
    bootable: input.bootable ? 1 : 0,
    image_id: input.imageId,
    snapshot_id: input.snapshotId,
    source_volid: input.sourceVolid,
    created_at: checkInteger("nowMs", nowMs, { min: 0 }),
    updated_at: nowMs,
  };
  const metadata = checkVolumeMetadata(input.metadata);
  return inTransaction(db, async (tx) => {
    if (input.sourceVolid !== null) {
      const source = await lockBlockVolumeRow(tx, db.engine, input.sourceVolid);
      if (source === undefined || source.user_uuid !== row.user_uuid) throw new DbError("ENOT_FOUND", `Volume ${input.sourceVolid} could not be found.`, { id: input.sourceVolid });
      const attached = await attachmentState(tx, input.sourceVolid);
      if (source.status !== "available" || (attached !== undefined && attached !== "attached")) {
        throw new DbError("ECONFLICT", `Volume ${input.sourceVolid} status must be available or in-use to clone it.`, { status: source.status });
      }
    }
    if (input.snapshotId !== null) {
      const snapshot = await tx
        .selectFrom("volume_snapshots")
        .select(["user_uuid", "status"])
        .where("id", "=", input.snapshotId)
        .$if(db.engine === "postgres", (query) => query.forUpdate())
        .executeTakeFirst();
      if (snapshot === undefined || snapshot.user_uuid !== row.user_uuid) throw new DbError("ENOT_FOUND", `Snapshot ${input.snapshotId} could not be found.`, { id: input.snapshotId });
      if (snapshot.status !== "available") throw new DbError("ECONFLICT", `Snapshot ${input.snapshotId} status must be available.`, { status: snapshot.status });
    }
    await tx.insertInto("volumes").values(row).execute();
    await insertMetadata(tx, row.id, metadata);
    return (await selectVolume(tx, row.id))!;
  });
}

/** The volume with its attachment, whoever owns it; undefined when missing. */
export async function getBlockVolume(db: MetadataDatabase, id: string): Promise<BlockVolume | undefined> {
  return selectVolume(db.kysely, id);
}

export interface BlockVolumeListOptions {
  /** One owner's; every owner's when absent (reconcile). */
  userUuid?: string;
  /** Exact name. */
  name?: string;
  /** The API's status: stored ones, or attaching, in-use, detaching (from the attachment). */
  status?: string;
  /** Only these stored statuses (reconcile). */
  storedStatuses?: readonly VolumeStatus[];
  sortKey?: VolumeSortKey;
  sortDir?: "asc" | "desc";
  /** The id of the last volume of the previous page; ENOT_FOUND when not among the listed. */
  marker?: string;
  /** At most volumeListLimitMax. */
  limit?: number;
}

export interface BlockVolumePage {
  volumes: BlockVolume[];
  /** The marker of the next page, when there may be one. */
  next: string | undefined;
}

/** Cinder's default order: newest first (created_at desc), the id breaking ties. */
export async function listBlockVolumes(db: MetadataDatabase, options: BlockVolumeListOptions = {}): Promise<BlockVolumePage> {
  const sortKey = options.sortKey ?? "created_at";
  if (!volumeSortKeys.includes(sortKey)) throw new DbError("EINVALID", `sort key ${String(sortKey)} is not one of ${volumeSortKeys.join(", ")}`);
  const dir = options.sortDir ?? "desc";
  const limit = Math.min(checkInteger("limit", options.limit ?? volumeListLimitMax, { min: 0 }), volumeListLimitMax);
  const column = sortColumn(sortKey);
  // Names sort in byte order on both engines (SQLite compares UTF-8 with memcmp).
  const key = sortKey === "name" && db.engine === "postgres" ? sql<string>`v.name collate "C"` : sql.ref<string | number>(`v.${column}`);
  let query = joinedVolumes(db.kysely)
    .$if(options.userUuid !== undefined, (q) => q.where("v.user_uuid", "=", options.userUuid!))
    .$if(options.name !== undefined, (q) => q.where("v.name", "=", options.name!))
    .$if(options.storedStatuses !== undefined, (q) => (options.storedStatuses!.length === 0 ? q.where(sql<boolean>`1 = 0`) : q.where("v.status", "in", options.storedStatuses!)));
  const status = options.status;
  if (status !== undefined) {
    const attachState = { attaching: "attaching", "in-use": "attached", detaching: "detaching" }[status];
    query =
      attachState !== undefined
        ? query.where("a.state", "=", attachState as "attaching")
        : query.where("v.status", "=", status as VolumeStatus).where("a.id", "is", null);
  }
  if (options.marker !== undefined) {
    const marker = await db.kysely.selectFrom("volumes").select(["id", column]).where("id", "=", options.marker).$if(options.userUuid !== undefined, (q) => q.where("user_uuid", "=", options.userUuid!)).executeTakeFirst();
    if (marker === undefined) throw new DbError("ENOT_FOUND", `Marker ${options.marker} could not be found.`, { marker: options.marker });
    const value = (marker as Record<string, string | number>)[column]!;
    const cmp = dir === "asc" ? sql.raw(">") : sql.raw("<");
    const markerValue = sortKey === "name" && db.engine === "postgres" ? sql`${value} collate "C"` : sql`${value}`;
    query = query.where(sql<boolean>`(${key} ${cmp} ${markerValue} or (${key} = ${markerValue} and v.id ${cmp} ${marker.id}))`);
  }
  const rows = await query
    .orderBy(key, dir)
    .orderBy("v.id", dir)
    .limit(limit + 1)
    .execute();
  const volumes = rows.slice(0, limit).map(volumeFromRow);
  return { volumes, next: rows.length > limit && volumes.length > 0 ? volumes.at(-1)!.id : undefined };
}

export interface BlockVolumePatch {
  name?: string;
  description?: string | null;
  bootable?: boolean;
}

/** Renames, describes or flags the volume; the volume after. ENOT_FOUND when missing. */
export async function updateBlockVolume(db: MetadataDatabase, id: string, patch: BlockVolumePatch, nowMs = Date.now()): Promise<BlockVolume> {
  const set = {
    ...(patch.name !== undefined && { name: checkVolumeName(patch.name) }),
    ...(patch.description !== undefined && { description: checkVolumeDescription(patch.description) }),
    ...(patch.bootable !== undefined && { bootable: patch.bootable ? 1 : 0 }),
    updated_at: checkInteger("nowMs", nowMs, { min: 0 }),
  };
  const result = await db.kysely.updateTable("volumes").set(set).where("id", "=", id).executeTakeFirst();
  if (result.numUpdatedRows === 0n) throw new DbError("ENOT_FOUND", `Volume ${id} could not be found.`, { id });
  return (await selectVolume(db.kysely, id))!;
}

/**
 * Moves the volume from one stored status to another (creating → available | error, extending
 * → error_extending, deleting → error_deleting…), guarded: undefined when the volume is missing
 * or not in `from` (someone else moved it), so a reconcile never overwrites a newer decision.
 */
export async function setBlockVolumeStatus(
  db: MetadataDatabase,
  id: string,
  from: VolumeStatus,
  to: VolumeStatus,
  nowMs = Date.now(),
  extra: { sizeGib?: number } = {},
): Promise<BlockVolume | undefined> {
  if (!volumeStatuses.includes(to)) throw new DbError("EINVALID", `unknown volume status ${to}`);
  const result = await db.kysely
    .updateTable("volumes")
    .set({ status: to, updated_at: checkInteger("nowMs", nowMs, { min: 0 }), ...(extra.sizeGib !== undefined && { size_gib: checkVolumeSize(extra.sizeGib) }) })
    .where("id", "=", id)
    .where("status", "=", from)
    .executeTakeFirst();
  return result.numUpdatedRows === 0n ? undefined : selectVolume(db.kysely, id);
}

/**
 * Claims the volume for deletion: under its row lock, refuses (ECONFLICT, with Cinder's reason)
 * while it is attached or being attached, has snapshots, is the source of a clone in progress,
 * or is in a status other than available/error*; then marks it `deleting`. A volume already
 * `deleting` is returned as it is (a retried delete resumes). ENOT_FOUND for a missing volume
 * or another owner's.
 */
export async function beginDeleteBlockVolume(db: MetadataDatabase, id: string, userUuid: string | undefined, nowMs = Date.now()): Promise<BlockVolume> {
  return inTransaction(db, async (tx) => {
    const volume = await lockBlockVolumeRow(tx, db.engine, id);
    if (volume === undefined || (userUuid !== undefined && volume.user_uuid !== userUuid)) throw new DbError("ENOT_FOUND", `Volume ${id} could not be found.`, { id });
    if (volume.status === "deleting") return (await selectVolume(tx, id))!;
    const attached = await attachmentState(tx, id);
    if (attached !== undefined) {
      throw new DbError("ECONFLICT", `Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots or be disassociated from snapshots after volume transfer.`, { attachment: attached });
    }
    if (!deletableStatuses.includes(volume.status)) {
      throw new DbError("ECONFLICT", `Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots or be disassociated from snapshots after volume transfer.`, { status: volume.status });
    }
    const snapshot = await tx.selectFrom("volume_snapshots").select("id").where("volume_id", "=", id).executeTakeFirst();
    if (snapshot !== undefined) throw new DbError("ECONFLICT", `Invalid volume: Volume ${id} still has dependent snapshots.`, { snapshot: snapshot.id });
    const clone = await tx.selectFrom("volumes").select("id").where("source_volid", "=", id).where("status", "=", "creating").executeTakeFirst();
    if (clone !== undefined) throw new DbError("ECONFLICT", `Invalid volume: Volume ${id} is being cloned into ${clone.id}.`, { clone: clone.id });
    await tx.updateTable("volumes").set({ status: "deleting", updated_at: checkInteger("nowMs", nowMs, { min: 0 }) }).where("id", "=", id).execute();
    return (await selectVolume(tx, id))!;
  });
}

/** Removes a `deleting` volume's row and its metadata (after the engine volume is gone). False when already gone. */
export async function removeBlockVolume(db: MetadataDatabase, id: string): Promise<boolean> {
  return inTransaction(db, async (tx) => {
    const volume = await lockBlockVolumeRow(tx, db.engine, id);
    if (volume === undefined) return false;
    if (volume.status !== "deleting") throw new DbError("ECONFLICT", `Volume ${id} is ${volume.status}, not deleting.`, { status: volume.status });
    await tx.deleteFrom("volume_metadata").where("volume_id", "=", id).execute();
    await tx.deleteFrom("volumes").where("id", "=", id).execute();
    return true;
  });
}

/** Undoes createBlockVolume while it is still `creating` (quota refused at the API): the row goes as if never made. */
export async function withdrawBlockVolume(db: MetadataDatabase, id: string): Promise<boolean> {
  return inTransaction(db, async (tx) => {
    const volume = await lockBlockVolumeRow(tx, db.engine, id);
    if (volume === undefined || volume.status !== "creating") return false;
    await tx.deleteFrom("volume_metadata").where("volume_id", "=", id).execute();
    await tx.deleteFrom("volumes").where("id", "=", id).execute();
    return true;
  });
}

/**
 * Claims the volume for an extend to `newSizeGib`: under its row lock, it must be `available`,
 * not attached, and smaller than the new size (EINVALID otherwise, as Cinder's 400). The
 * volume, now `extending`. finishExtendBlockVolume (setBlockVolumeStatus with sizeGib) ends it.
 */
export async function beginExtendBlockVolume(db: MetadataDatabase, id: string, userUuid: string, newSizeGib: number, nowMs = Date.now()): Promise<BlockVolume> {
  const size = checkVolumeSize(newSizeGib);
  return inTransaction(db, async (tx) => {
    const volume = await lockBlockVolumeRow(tx, db.engine, id);
    if (volume === undefined || volume.user_uuid !== userUuid) throw new DbError("ENOT_FOUND", `Volume ${id} could not be found.`, { id });
    const attached = await attachmentState(tx, id);
    if (volume.status !== "available" || attached !== undefined) {
      const status = attached === undefined ? volume.status : attached === "attached" ? "in-use" : attached;
      throw new DbError("ECONFLICT", `Invalid volume: Volume status must be 'available' to extend, currently in '${status}'.`, { status });
    }
    if (size <= volume.size_gib) {
      throw new DbError("EINVALID", `New size for extend must be greater than current size. (current: ${volume.size_gib}, extended: ${size}).`, { sizeGib: volume.size_gib });
    }
    await tx.updateTable("volumes").set({ status: "extending", updated_at: checkInteger("nowMs", nowMs, { min: 0 }) }).where("id", "=", id).execute();
    return (await selectVolume(tx, id))!;
  });
}

export async function getBlockVolumeMetadata(db: MetadataDatabase, id: string): Promise<Record<string, string>> {
  const rows = await db.kysely.selectFrom("volume_metadata").select(["key", "value"]).where("volume_id", "=", id).orderBy("key").execute();
  return Object.fromEntries(rows.map((row) => [row.key, row.value]));
}

/** Metadata of many volumes at once (a listing), by volume id. */
export async function getBlockVolumesMetadata(db: MetadataDatabase, ids: readonly string[]): Promise<Map<string, Record<string, string>>> {
  const out = new Map<string, Record<string, string>>(ids.map((id) => [id, {}]));
  if (ids.length === 0) return out;
  const rows = await db.kysely.selectFrom("volume_metadata").select(["volume_id", "key", "value"]).where("volume_id", "in", ids).orderBy("volume_id").orderBy("key").execute();
  for (const row of rows) out.get(row.volume_id)![row.key] = row.value;
  return out;
}

/**
 * Merges `set` into the volume's metadata (or replaces it whole with `replace`), then removes
 * the `unset` keys; the metadata after. ENOT_FOUND for a missing volume or, with `unset`,
 * a missing key (Cinder's 404 on DELETE /metadata/{key}); EINVALID past the items limit.
 */
export async function changeBlockVolumeMetadata(
  db: MetadataDatabase,
  id: string,
  change: { set?: Record<string, string>; replace?: boolean; unset?: readonly string[] },
  nowMs = Date.now(),
): Promise<Record<string, string>> {
  const set = checkVolumeMetadata(change.set ?? {});
  return inTransaction(db, async (tx) => {
    const volume = await lockBlockVolumeRow(tx, db.engine, id);
    if (volume === undefined) throw new DbError("ENOT_FOUND", `Volume ${id} could not be found.`, { id });
    if (change.replace === true) await tx.deleteFrom("volume_metadata").where("volume_id", "=", id).execute();
    else if (Object.keys(set).length > 0) await tx.deleteFrom("volume_metadata").where("volume_id", "=", id).where("key", "in", Object.keys(set)).execute();
    await insertMetadata(tx, id, set);
    for (const key of change.unset ?? []) {
      const result = await tx.deleteFrom("volume_metadata").where("volume_id", "=", id).where("key", "=", key).executeTakeFirst();
      if (result.numDeletedRows === 0n) throw new DbError("ENOT_FOUND", `Metadata with key ${key} could not be found.`, { key });
    }
    const rows = await tx.selectFrom("volume_metadata").select(["key", "value"]).where("volume_id", "=", id).orderBy("key").execute();
    if (rows.length > volumeMetadataItemsMax) throw new DbError("EINVALID", `A volume holds at most ${volumeMetadataItemsMax} metadata items.`, { limit: volumeMetadataItemsMax });
    await tx.updateTable("volumes").set({ updated_at: checkInteger("nowMs", nowMs, { min: 0 }) }).where("id", "=", id).execute();
    return Object.fromEntries(rows.map((row) => [row.key, row.value]));
  });
}

// ── checks and shared pieces ───────────────────────────────────────────────

export function checkVolumeName(value: unknown): string {
  return checkFreeText("name", value, volumeNameLengthMax);
}

export function checkVolumeDescription(value: unknown): string | null {
  return value === null ? null : checkFreeText("description", value, volumeDescriptionLengthMax);
}

export function checkVolumeSize(value: unknown): number {
  const size = checkInteger("size", value, { min: 1 });
  if (size > volumeSizeGibMax) throw new DbError("EINVALID", `Volume size must be at most ${volumeSizeGibMax} GiB.`, { size });
  return size;
}

export function checkVolumeMetadata(value: unknown): Record<string, string> {
  const metadata = checkStringRecord("metadata", value, volumeMetadataKeyLengthMax, volumeMetadataValueLengthMax, volumeMetadataItemsMax);
  for (const item of Object.values(metadata)) checkNoNul("metadata value", item);
  return metadata;
}

/** Cinder's names and descriptions: any text up to the limit, empty included; NUL never (PostgreSQL text cannot hold it). */
function checkFreeText(what: string, value: unknown, lengthMax: number): string {
  if (typeof value !== "string" || value.length > lengthMax) throw new DbError("EINVALID", `${what} must be a string of at most ${lengthMax} characters`, { [what]: value });
  return checkNoNul(what, value);
}

function checkNoNul(what: string, value: string): string {
  if (value.includes("\u0000")) throw new DbError("EINVALID", `${what} must not contain NUL characters`);
  return value;
}

function checkEngineName(value: string): string {
  if (!/^vol[a-z]*-[0-9a-f-]{36}$/.test(value)) throw new DbError("EINVALID", `engine name ${value} is not volume-<uuid>`);
  return value;
}

function sortColumn(key: VolumeSortKey): "created_at" | "updated_at" | "id" | "name" | "size_gib" | "status" {
  return key === "size" ? "size_gib" : key;
}

type Reader = MetadataDatabase["kysely"] | Transaction<Database>;

function joinedVolumes(reader: Reader) {
  return reader
    .selectFrom("volumes as v")
    .leftJoin("compute_volume_attachments as a", "a.volume_id", "v.id")
    .selectAll("v")
    .select(["a.id as a_id", "a.server_id as a_server_id", "a.device as a_device", "a.state as a_state", "a.created_at as a_created_at", "a.updated_at as a_updated_at"]);
}

async function selectVolume(reader: Reader, id: string): Promise<BlockVolume | undefined> {
  const row = await joinedVolumes(reader).where("v.id", "=", id).executeTakeFirst();
  return row && volumeFromRow(row);
}

/** The volume row, locked (PostgreSQL) — always the first lock a volume decision takes. */
export async function lockBlockVolumeRow(tx: Transaction<Database>, engine: MetadataDatabase["engine"], id: string) {
  return tx
    .selectFrom("volumes")
    .select(["id", "user_uuid", "status", "size_gib", "engine_name"])
    .where("id", "=", id)
    .$if(engine === "postgres", (query) => query.forUpdate())
    .executeTakeFirst();
}

async function attachmentState(tx: Transaction<Database>, volumeId: string) {
  const row = await tx.selectFrom("compute_volume_attachments").select("state").where("volume_id", "=", volumeId).executeTakeFirst();
  return row?.state;
}

async function insertMetadata(tx: Transaction<Database>, id: string, metadata: Record<string, string>): Promise<void> {
  const rows = Object.entries(metadata).map(([key, value]) => ({ volume_id: id, key, value }));
  if (rows.length > 0) await tx.insertInto("volume_metadata").values(rows).execute();
}
