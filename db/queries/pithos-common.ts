/**
 * What the Pithos+ query files share: the records they return, input checks, row mapping,
 * row locks and the map reference count. Not exported from db/index.ts except the types.
 */
import type { Kysely, Selectable, Transaction } from "kysely";
import type { DatabaseEngine } from "../connect.ts";
import { DbError } from "../errors.ts";
import {
  pithosVersioningPolicies,
  type Database,
  type PithosContainersTable,
  type PithosVersioning,
  type PithosVersionsTable,
  type PithosVersionState,
} from "../schema.ts";
import {
  checkInteger,
  checkUuid,
  pithosContainerNameBytesMax,
  pithosMetaKeyLengthMax,
  pithosMetaKeysMax,
  pithosMetaValueLengthMax,
  pithosObjectPathBytesMax,
} from "./limits.ts";
import { compareNames } from "./pithos-listing.ts";

/** `{key: value}` user metadata (`X-*-Meta-*`). */
export type PithosMeta = Record<string, string>;

/** Who may read or write (`X-Object-Sharing`): user uuids, `<account>:<group>`, `*`. */
export interface PithosSharing {
  read: string[];
  write: string[];
}

export interface PithosContainer {
  id: number;
  account: string;
  name: string;
  versioning: PithosVersioning;
  /** Null: unlimited. */
  quotaBytes: number | null;
  meta: PithosMeta;
  /** Current versions (expired ones included until expireObjects removes them). */
  objectCount: number;
  /** Sum of the current versions' sizes; history is free (synnefo.md B.5). */
  bytesUsed: number;
  createdAt: number;
  modifiedAt: number;
}

export interface PithosObject {
  id: number;
  containerId: number;
  path: string;
  uuid: string;
  publicToken: string | null;
  /** The object's own sharing, not inherited (effectiveSharing gives that); null: none. */
  sharing: PithosSharing | null;
}

export interface PithosVersion {
  serial: number;
  objectId: number;
  state: PithosVersionState;
  mapName: string;
  sizeBytes: number;
  /** What it was charged to the owner's disk space quota (≤ sizeBytes; counted only while current). */
  chargedBytes: number;
  contentHash: string;
  etag: string;
  contentType: string;
  contentEncoding: string | null;
  contentDisposition: string | null;
  manifest: string | null;
  sloManifest: string | null;
  meta: PithosMeta;
  deleteAt: number | null;
  modifiedAt: number;
  modifiedBy: string;
  /** When it stopped being current; null while current. */
  endedAt: number | null;
}

export function containerFromRow(row: Selectable<PithosContainersTable>): PithosContainer {
  return {
    id: row.id,
    account: row.account,
    name: row.name,
    versioning: row.versioning,
    quotaBytes: row.quota_bytes,
    meta: parseMeta(row.meta),
    objectCount: row.object_count,
    bytesUsed: row.bytes_used,
    createdAt: row.created_at,
    modifiedAt: row.modified_at,
  };
}

export function versionFromRow(row: Selectable<PithosVersionsTable>): PithosVersion {
  return {
    serial: row.serial,
    objectId: row.object_id,
    state: row.state,
    mapName: row.map_name,
    sizeBytes: row.size_bytes,
    chargedBytes: row.charged_bytes,
    contentHash: row.content_hash,
    etag: row.etag,
    contentType: row.content_type,
    contentEncoding: row.content_encoding,
    contentDisposition: row.content_disposition,
    manifest: row.manifest,
    sloManifest: row.slo_manifest,
    meta: parseMeta(row.meta),
    deleteAt: row.delete_at,
    modifiedAt: row.modified_at,
    modifiedBy: row.modified_by,
    endedAt: row.ended_at,
  };
}

export interface ObjectRow {
  id: number;
  container_id: number;
  path: string;
  uuid: string;
  public_token: string | null;
}

export function objectFromRow(row: ObjectRow, sharing: PithosSharing | null): PithosObject {
  return { id: row.id, containerId: row.container_id, path: row.path, uuid: row.uuid, publicToken: row.public_token, sharing };
}

export function parseMeta(text: string): PithosMeta {
  return JSON.parse(text) as PithosMeta;
}

/** A version whose X-Delete-At has passed reads as absent (swift.md 5). */
export function isExpired(version: { delete_at: number | null } | { deleteAt: number | null }, nowMs: number): boolean {
  const deleteAt = "deleteAt" in version ? version.deleteAt : version.delete_at;
  return deleteAt !== null && deleteAt <= nowMs;
}

/**
 * Meta after a POST: `replace` (Swift object POST, Pithos POST without `update`) keeps only
 * `changes`; otherwise `changes` are merged in. Either way an empty value removes its key
 * (Swift: `X-Container-Meta-K:` with no value).
 */
export function mergeMeta(current: PithosMeta, changes: PithosMeta, replace: boolean): PithosMeta {
  const merged: PithosMeta = replace ? {} : { ...current };
  for (const [key, value] of Object.entries(changes)) {
    if (value === "") delete merged[key];
    else merged[key] = value;
  }
  return merged;
}

// ---------------------------------------------------------------------------------------
// Checks

export function checkAccount(value: unknown): string {
  return checkUuid("account", value);
}

// eslint-disable-next-line no-control-regex
const controlCharacters = /[\u0000-\u001f\u007f]/;

function checkName(what: string, value: unknown, bytesMax: number): string {
  if (typeof value !== "string" || value.length === 0 || !value.isWellFormed() || Buffer.byteLength(value) > bytesMax) {
    throw new DbError("EINVALID", `${what} must be well-formed text of 1 to ${bytesMax} UTF-8 bytes`, { [what]: value });
  }
  if (controlCharacters.test(value)) {
    throw new DbError("EINVALID", `${what} must not contain control characters`, { [what]: value });
  }
  return value;
}

export function checkContainerName(value: unknown): string {
  const name = checkName("container", value, pithosContainerNameBytesMax);
  if (name.includes("/")) throw new DbError("EINVALID", "a container name has no slash", { container: name });
  return name;
}

export function checkObjectPath(value: unknown, what = "path"): string {
  return checkName(what, value, pithosObjectPathBytesMax);
}

export function checkId(what: string, value: unknown): number {
  return checkInteger(what, value, { min: 1 });
}

export function checkVersioning(value: unknown): PithosVersioning {
  if (!pithosVersioningPolicies.includes(value as PithosVersioning)) {
    throw new DbError("EINVALID", `versioning must be one of ${pithosVersioningPolicies.join(", ")}`, { versioning: value });
  }
  return value as PithosVersioning;
}

export function checkQuota(value: unknown): number | null {
  return value === null ? null : checkInteger("quotaBytes", value, { min: 0 });
}

export function checkMeta(value: unknown): PithosMeta {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new DbError("EINVALID", "meta must be an object of strings", { meta: value });
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > pithosMetaKeysMax) {
    throw new DbError("EINVALID", `at most ${pithosMetaKeysMax} meta keys`, { keys: entries.length });
  }
  for (const [key, item] of entries) {
    if (key.length === 0 || key.length > pithosMetaKeyLengthMax || controlCharacters.test(key) || !key.isWellFormed()) {
      throw new DbError("EINVALID", `meta keys are 1 to ${pithosMetaKeyLengthMax} characters, no control characters`, { key });
    }
    if (typeof item !== "string" || item.length > pithosMetaValueLengthMax || !item.isWellFormed()) {
      throw new DbError("EINVALID", `meta values are strings of at most ${pithosMetaValueLengthMax} characters`, { key, value: item });
    }
  }
  return { ...(value as PithosMeta) };
}

// ---------------------------------------------------------------------------------------
// Locks and reads inside transactions

/**
 * The container's row, locked on PostgreSQL: FOR UPDATE by every write to its objects (they
 * update its counters), so writes in one container take turns; SQLite's transactions do
 * anyway. Lock order everywhere: account, containers by id, then versions.
 */
export async function lockContainer(
  tx: Transaction<Database>,
  engine: DatabaseEngine,
  containerId: number,
): Promise<Selectable<PithosContainersTable>> {
  const row = await tx
    .selectFrom("pithos_containers")
    .selectAll()
    .where("id", "=", containerId)
    .$if(engine === "postgres", (query) => query.forUpdate())
    .executeTakeFirst();
  if (row === undefined) throw new DbError("ENOT_FOUND", `no container ${containerId}`, { containerId });
  return row;
}

export async function insertAccount(executor: Kysely<Database>, account: string, nowMs: number): Promise<void> {
  await executor
    .insertInto("pithos_accounts")
    .values({ account, meta: "{}", quota_bytes: null, created_at: nowMs, modified_at: nowMs })
    .onConflict((conflict) => conflict.column("account").doNothing())
    .execute();
}

/** The account (created if missing) locked for update on PostgreSQL. */
export async function lockAccount(tx: Transaction<Database>, engine: DatabaseEngine, account: string, nowMs: number) {
  await insertAccount(tx, account, nowMs);
  return tx
    .selectFrom("pithos_accounts")
    .selectAll()
    .where("account", "=", account)
    .$if(engine === "postgres", (query) => query.forUpdate())
    .executeTakeFirstOrThrow();
}

/** The account's quota and the bytes its containers use (under the caller's locks). */
export async function accountUsage(
  tx: Kysely<Database>,
  engine: DatabaseEngine,
  account: string,
  lock: boolean,
): Promise<{ quotaBytes: number | null; bytesUsed: number }> {
  const row = await tx
    .selectFrom("pithos_accounts")
    .select("quota_bytes")
    .where("account", "=", account)
    .$if(lock && engine === "postgres", (query) => query.forUpdate())
    .executeTakeFirstOrThrow();
  const used = await tx
    .selectFrom("pithos_containers")
    .select((eb) => eb.fn.coalesce(eb.fn.sum<number>("bytes_used"), eb.lit(0)).as("bytes"))
    .where("account", "=", account)
    .executeTakeFirstOrThrow();
  return { quotaBytes: row.quota_bytes, bytesUsed: Number(used.bytes) };
}

/**
 * Of these map names, those no version row references any more: the caller deletes them from
 * the engine after the commit. Versions share a map after a metadata-only change or a move,
 * so removing a version frees its map only when it was the last.
 *
 * PostgreSQL: FOR UPDATE waits for a concurrent transaction that is removing another version
 * of the same map, then sees it gone. Without the lock each would still see the other's row
 * and neither would free the map (a leak). Two such transactions may deadlock instead; the
 * transaction is then retried (transaction.ts).
 */
export async function unreferencedMaps(tx: Transaction<Database>, engine: DatabaseEngine, mapNames: readonly string[]): Promise<string[]> {
  const candidates = [...new Set(mapNames)].sort();
  if (candidates.length === 0) return [];
  const referenced = new Set<string>();
  for (let i = 0; i < candidates.length; i += inListMax) {
    const rows = await tx
      .selectFrom("pithos_versions")
      .select("map_name")
      .where("map_name", "in", candidates.slice(i, i + inListMax))
      .orderBy("serial")
      .$if(engine === "postgres", (query) => query.forUpdate())
      .execute();
    for (const row of rows) referenced.add(row.map_name);
  }
  return candidates.filter((name) => !referenced.has(name));
}

/** Parameters per `in (…)` list: well under SQLite's 32766 and PostgreSQL's 65535. */
export const inListMax = 1000;

/** Each object's own sharing, for a page of objects. */
export async function loadSharing(executor: Kysely<Database>, objectIds: readonly number[]): Promise<Map<number, PithosSharing>> {
  const byObject = new Map<number, PithosSharing>();
  const ids = [...new Set(objectIds)];
  for (let i = 0; i < ids.length; i += inListMax) {
    const rows = await executor
      .selectFrom("pithos_sharing")
      .select(["object_id", "access", "grantee"])
      .where("object_id", "in", ids.slice(i, i + inListMax))
      .execute();
    for (const row of rows) {
      const sharing = byObject.get(row.object_id) ?? { read: [], write: [] };
      sharing[row.access].push(row.grantee);
      byObject.set(row.object_id, sharing);
    }
  }
  // Sorted here, in byte order, not by the database's collation of `grantee`.
  for (const sharing of byObject.values()) {
    sharing.read.sort(compareNames);
    sharing.write.sort(compareNames);
  }
  return byObject;
}

export async function objectsWithSharing(executor: Kysely<Database>, rows: readonly ObjectRow[]): Promise<PithosObject[]> {
  const sharing = await loadSharing(
    executor,
    rows.map((row) => row.id),
  );
  return rows.map((row) => objectFromRow(row, sharing.get(row.id) ?? null));
}

/** An object found by uuid or public token, with where it lives. */
export interface LocatedObject {
  account: string;
  containerId: number;
  containerName: string;
  path: string;
  object: PithosObject;
  version: PithosVersion;
}

/** The object with this uuid or token and its current version; undefined if none or expired. */
export async function locateObject(
  executor: Kysely<Database>,
  column: "uuid" | "public_token",
  value: string,
  nowMs: number,
): Promise<LocatedObject | undefined> {
  const row = await executor
    .selectFrom("pithos_objects as o")
    .innerJoin("pithos_containers as c", "c.id", "o.container_id")
    .innerJoin("pithos_versions as v", "v.object_id", "o.id")
    .selectAll("v")
    .select(["o.id", "o.container_id", "o.path", "o.uuid", "o.public_token", "c.account", "c.name as container_name"])
    .where(`o.${column}`, "=", value)
    .where("v.state", "=", "current")
    .executeTakeFirst();
  if (row === undefined || isExpired(row, nowMs)) return undefined;
  const [object] = await objectsWithSharing(executor, [row]);
  return {
    account: row.account,
    containerId: row.container_id,
    containerName: row.container_name,
    path: row.path,
    object: object!,
    version: versionFromRow(row),
  };
}
