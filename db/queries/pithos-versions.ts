/**
 * Inside the Pithos+ object transactions (pithos-objects.ts holds the public calls): locks,
 * the version state changes with the container counters they move, quota checks and input
 * checks. Every function here runs in the caller's transaction, after lockContainers.
 *
 *   lockContainers ─► putVersionIn: previous current → history (auto) │ removed (none); new current
 *                  └► deleteIn:     current → deleted (auto) │ removed (none); sharing cleared
 */
import { randomUUID } from "node:crypto";
import type { Selectable, Transaction } from "kysely";
import type { DatabaseEngine } from "../connect.ts";
import { DbError } from "../errors.ts";
import type { Database, PithosContainersTable, PithosVersionsTable } from "../schema.ts";
import {
  checkInteger,
  checkOptionalText,
  checkText,
  checkUuid,
  pithosHashLengthMax,
  pithosHeaderValueLengthMax,
  pithosManifestLengthMax,
  pithosMapNameLengthMax,
  pithosSloManifestLengthMax,
} from "./limits.ts";
import {
  accountUsage,
  checkId,
  checkMeta,
  isExpired,
  lockContainer,
  objectsWithSharing,
  versionFromRow,
  type ObjectRow,
  type PithosMeta,
  type PithosObject,
  type PithosVersion,
} from "./pithos-common.ts";

/** What a new version holds; the caller has stored the data as map `mapName`. */
export interface NewPithosVersion {
  mapName: string;
  sizeBytes: number;
  /**
   * What the owner's disk space quota is charged for it, 0 ≤ chargedBytes ≤ sizeBytes; by
   * default its size. Recorded so that replacing or deleting it releases exactly this.
   */
  chargedBytes?: number;
  /** Merkle root, hex (X-Object-Hash). */
  contentHash: string;
  /** MD5 hex of the data, or the manifest's etag. */
  etag: string;
  contentType: string;
  contentEncoding?: string | null;
  contentDisposition?: string | null;
  /** DLO `X-Object-Manifest: <container>/<prefix>`. */
  manifest?: string | null;
  /** SLO: JSON text of the segment list. */
  sloManifest?: string | null;
  meta?: PithosMeta;
  /** X-Delete-At, ms. */
  deleteAt?: number | null;
}

export interface PutVersionOptions {
  /** The writer's user uuid (X-Object-Modified-By). */
  modifiedBy: string;
  /** `If-None-Match: *`: EPRECONDITION when the object exists. */
  ifNoneMatchStar?: boolean;
  /** EPRECONDITION unless the current version has this serial; null: unless there is none. */
  expectCurrentSerial?: number | null;
  /**
   * EPRECONDITION unless the version this one replaces — the current row, expired or not —
   * has this serial (null: there is none). A caller that charged the owner's quota against
   * that version's chargedBytes holds the write to it (gateways/pithos/service.ts commit).
   */
  replacesSerial?: number | null;
}

export interface PutVersionResult {
  version: PithosVersion;
  object: PithosObject;
  /** The version that was current before (as it was then); null when there was none or it had expired. */
  previous: PithosVersion | null;
  unreferencedMaps: string[];
}

export type VersionRow = Selectable<PithosVersionsTable>;
export type CheckedPutOptions = {
  modifiedBy: string;
  ifNoneMatchStar: boolean;
  expectCurrentSerial: number | null | undefined;
  replacesSerial: number | null | undefined;
};
export type VersionValues = Omit<VersionRow, "serial" | "object_id" | "state" | "modified_at" | "modified_by" | "ended_at">;

/**
 * Locks the containers (ids in order) and, before them, the accounts with a quota (a write
 * checks the account's usage across its containers). ENOT_FOUND for an unknown container.
 */
export async function lockContainers(
  tx: Transaction<Database>,
  engine: DatabaseEngine,
  containerIds: number[],
): Promise<Array<Selectable<PithosContainersTable>>> {
  const ids = [...new Set(containerIds)].sort((a, b) => a - b);
  const accounts = await tx
    .selectFrom("pithos_containers as c")
    .innerJoin("pithos_accounts as a", "a.account", "c.account")
    .select(["c.id", "a.account", "a.quota_bytes"])
    .where("c.id", "in", ids)
    .execute();
  const missing = ids.find((id) => !accounts.some((row) => row.id === id));
  if (missing !== undefined) throw new DbError("ENOT_FOUND", `no container ${missing}`, { containerId: missing });
  const limited = [...new Set(accounts.filter((row) => row.quota_bytes !== null).map((row) => row.account))].sort();
  for (const account of limited) await accountUsage(tx, engine, account, true);
  const rows = [];
  for (const id of ids) rows.push(await lockContainer(tx, engine, id));
  return rows;
}

export async function findNode(tx: Transaction<Database>, containerId: number, path: string): Promise<ObjectRow | undefined> {
  return tx
    .selectFrom("pithos_objects")
    .select(["id", "container_id", "path", "uuid", "public_token"])
    .where("container_id", "=", containerId)
    .where("path", "=", path)
    .executeTakeFirst();
}

export async function currentRow(tx: Transaction<Database>, objectId: number): Promise<VersionRow | undefined> {
  return tx.selectFrom("pithos_versions").selectAll().where("object_id", "=", objectId).where("state", "=", "current").executeTakeFirst();
}

/**
 * The time a new change to the object is stamped with: now, or the object's latest time if a
 * node's clock is behind, so the versions' [modified_at, ended_at) spans never overlap (the
 * `until` listing picks one version per object by them).
 */
async function changeTime(tx: Transaction<Database>, objectId: number, nowMs: number): Promise<number> {
  const row = await tx
    .selectFrom("pithos_versions")
    .select((eb) => [eb.fn.max("modified_at").as("modified"), eb.fn.max("ended_at").as("ended")])
    .where("object_id", "=", objectId)
    .executeTakeFirstOrThrow();
  return Math.max(nowMs, Number(row.modified ?? 0), Number(row.ended ?? 0));
}

export async function putVersionIn(
  tx: Transaction<Database>,
  engine: DatabaseEngine,
  containerId: number,
  path: string,
  values: VersionValues,
  options: CheckedPutOptions,
  nowMs: number,
  /** Renames: the uuid the object keeps (already released by the source). */
  uuid?: string,
): Promise<Omit<PutVersionResult, "unreferencedMaps"> & { removedMaps: string[] }> {
  const container = await tx.selectFrom("pithos_containers").selectAll().where("id", "=", containerId).executeTakeFirstOrThrow();
  let node = await findNode(tx, containerId, path);
  const current = node && (await currentRow(tx, node.id));
  const live = current !== undefined && !isExpired(current, nowMs) ? current : undefined;
  if (options.replacesSerial !== undefined && (current?.serial ?? null) !== options.replacesSerial) {
    throw new DbError("EPRECONDITION", `${path} no longer replaces version ${options.replacesSerial}`, {
      path,
      replaces: options.replacesSerial,
      serial: current?.serial ?? null,
    });
  }
  if (options.ifNoneMatchStar && live !== undefined) {
    throw new DbError("EPRECONDITION", `${path} exists`, { path, serial: live.serial });
  }
  if (options.expectCurrentSerial !== undefined && (live?.serial ?? null) !== options.expectCurrentSerial) {
    throw new DbError("EPRECONDITION", `${path} is not at version ${options.expectCurrentSerial}`, {
      path,
      expected: options.expectCurrentSerial,
      serial: live?.serial ?? null,
    });
  }
  const delta = values.size_bytes - (current?.size_bytes ?? 0);
  await checkQuotas(tx, engine, container, delta);

  if (node === undefined) {
    node = await tx
      .insertInto("pithos_objects")
      .values({ container_id: containerId, path, uuid: uuid ?? randomUUID(), public_token: null })
      .returning(["id", "container_id", "path", "uuid", "public_token"])
      .executeTakeFirstOrThrow();
  } else if (live === undefined || uuid !== undefined) {
    // A new object at a used path (after a delete or an expiry) is a new object: a new uuid,
    // no sharing or public token left over. A rename brings the source's uuid instead, and
    // keeps the sharing of a destination it replaces (Pithos keeps permissions by path).
    if (live === undefined) await tx.deleteFrom("pithos_sharing").where("object_id", "=", node.id).execute();
    node = await tx
      .updateTable("pithos_objects")
      .set({ uuid: uuid ?? randomUUID(), ...(live === undefined ? { public_token: null } : {}) })
      .where("id", "=", node.id)
      .returning(["id", "container_id", "path", "uuid", "public_token"])
      .executeTakeFirstOrThrow();
  }
  const modifiedAt = await changeTime(tx, node.id, nowMs);
  const removedMaps: string[] = [];
  if (current !== undefined) {
    // First: the partial unique index allows one current version.
    if (container.versioning === "auto") {
      await tx.updateTable("pithos_versions").set({ state: "history", ended_at: modifiedAt }).where("serial", "=", current.serial).execute();
    } else {
      await tx.deleteFrom("pithos_versions").where("serial", "=", current.serial).execute();
      removedMaps.push(current.map_name);
    }
  }
  const inserted = await tx
    .insertInto("pithos_versions")
    .values({ ...values, object_id: node.id, state: "current", modified_at: modifiedAt, modified_by: options.modifiedBy, ended_at: null })
    .returningAll()
    .executeTakeFirstOrThrow();
  await tx
    .updateTable("pithos_containers")
    .set((eb) => ({
      object_count: eb("object_count", "+", current === undefined ? 1 : 0),
      bytes_used: eb("bytes_used", "+", delta),
      modified_at: Math.max(modifiedAt, container.modified_at),
    }))
    .where("id", "=", containerId)
    .execute();
  const [object] = await objectsWithSharing(tx, [node]);
  return {
    version: versionFromRow(inserted),
    object: object!,
    previous: live === undefined ? null : versionFromRow(live),
    removedMaps,
  };
}

/** EQUOTA_EXCEEDED when `delta` more bytes would take the container or its account past quota. */
async function checkQuotas(
  tx: Transaction<Database>,
  engine: DatabaseEngine,
  container: Selectable<PithosContainersTable>,
  delta: number,
): Promise<void> {
  if (delta <= 0) return; // shrinking is allowed even over a lowered quota
  if (container.quota_bytes !== null && container.bytes_used + delta > container.quota_bytes) {
    throw new DbError("EQUOTA_EXCEEDED", `container ${container.name} would exceed its quota of ${container.quota_bytes} bytes`, {
      container: container.name,
      quotaBytes: container.quota_bytes,
      bytesUsed: container.bytes_used,
      sizeBytes: delta,
    });
  }
  const account = await accountUsage(tx, engine, container.account, false);
  if (account.quotaBytes !== null && account.bytesUsed + delta > account.quotaBytes) {
    throw new DbError("EQUOTA_EXCEEDED", `account ${container.account} would exceed its quota of ${account.quotaBytes} bytes`, {
      account: container.account,
      quotaBytes: account.quotaBytes,
      bytesUsed: account.bytesUsed,
      sizeBytes: delta,
    });
  }
}

/** Ends the current version (deleted or removed), clears sharing, updates the counters. */
export async function deleteIn(
  tx: Transaction<Database>,
  container: Selectable<PithosContainersTable>,
  node: ObjectRow,
  current: VersionRow,
  modifiedBy: string | undefined,
  nowMs: number,
): Promise<{ removedMaps: string[] }> {
  const endedAt = await changeTime(tx, node.id, nowMs);
  const removedMaps: string[] = [];
  if (container.versioning === "auto") {
    await tx
      .updateTable("pithos_versions")
      .set({ state: "deleted", ended_at: endedAt, ...(modifiedBy === undefined ? {} : { modified_by: modifiedBy }) })
      .where("serial", "=", current.serial)
      .execute();
  } else {
    await tx.deleteFrom("pithos_versions").where("serial", "=", current.serial).execute();
    removedMaps.push(current.map_name);
  }
  await tx.deleteFrom("pithos_sharing").where("object_id", "=", node.id).execute();
  // A fresh uuid: the old one is the object's, which may live on elsewhere (renameObject), and
  // a later write here is a new object.
  await tx.updateTable("pithos_objects").set({ public_token: null, uuid: randomUUID() }).where("id", "=", node.id).execute();
  await dropIfVersionless(tx, node.id);
  await tx
    .updateTable("pithos_containers")
    .set((eb) => ({
      object_count: eb("object_count", "-", 1),
      bytes_used: eb("bytes_used", "-", current.size_bytes),
      modified_at: Math.max(endedAt, container.modified_at),
    }))
    .where("id", "=", container.id)
    .execute();
  return { removedMaps };
}

/** An object with no version left is forgotten (its sharing rows go with it). */
export async function dropIfVersionless(tx: Transaction<Database>, objectId: number): Promise<void> {
  await tx
    .deleteFrom("pithos_objects")
    .where("id", "=", objectId)
    .where(({ not, exists, selectFrom }) => not(exists(selectFrom("pithos_versions").select("serial").where("object_id", "=", objectId))))
    .execute();
}

export function checkVersionFields(fields: NewPithosVersion): VersionValues {
  const sloManifest = fields.sloManifest ?? null;
  if (sloManifest !== null && (typeof sloManifest !== "string" || sloManifest.length > pithosSloManifestLengthMax)) {
    throw new DbError("EINVALID", `sloManifest must be JSON text of at most ${pithosSloManifestLengthMax} characters`);
  }
  const sizeBytes = checkInteger("sizeBytes", fields.sizeBytes, { min: 0 });
  return {
    map_name: checkText("mapName", fields.mapName, pithosMapNameLengthMax),
    size_bytes: sizeBytes,
    charged_bytes: checkCharge(fields.chargedBytes, sizeBytes),
    content_hash: checkText("contentHash", fields.contentHash, pithosHashLengthMax),
    etag: checkText("etag", fields.etag, pithosHashLengthMax),
    content_type: checkText("contentType", fields.contentType, pithosHeaderValueLengthMax),
    content_encoding: checkOptionalText("contentEncoding", fields.contentEncoding, pithosHeaderValueLengthMax),
    content_disposition: checkOptionalText("contentDisposition", fields.contentDisposition, pithosHeaderValueLengthMax),
    manifest: checkOptionalText("manifest", fields.manifest, pithosManifestLengthMax),
    slo_manifest: sloManifest,
    meta: JSON.stringify(checkMeta(fields.meta ?? {})),
    delete_at: fields.deleteAt === undefined || fields.deleteAt === null ? null : checkInteger("deleteAt", fields.deleteAt, { min: 0 }),
  };
}

function checkCharge(chargedBytes: number | undefined, sizeBytes: number): number {
  if (chargedBytes === undefined) return sizeBytes;
  const checked = checkInteger("chargedBytes", chargedBytes, { min: 0 });
  if (checked > sizeBytes) throw new DbError("EINVALID", `chargedBytes ${checked} exceeds sizeBytes ${sizeBytes}`, { chargedBytes, sizeBytes });
  return checked;
}

export function checkPutOptions(options: PutVersionOptions): CheckedPutOptions {
  const expected = options.expectCurrentSerial;
  const replaces = options.replacesSerial;
  return {
    modifiedBy: checkUuid("modifiedBy", options.modifiedBy),
    ifNoneMatchStar: options.ifNoneMatchStar === true,
    expectCurrentSerial: expected === undefined || expected === null ? expected : checkId("expectCurrentSerial", expected),
    replacesSerial: replaces === undefined || replaces === null ? replaces : checkId("replacesSerial", replaces),
  };
}
