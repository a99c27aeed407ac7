/**
 * Pithos+ objects and their versions (synnefo.md B.5): every upload or metadata change adds a
 * version; the previous current one becomes history (container versioning `auto`) or is
 * removed (`none`).
 *
 *   putVersion      ──► current ──putVersion──► history  (auto)  │ removed (none)
 *                          └──deleteObject────► deleted  (auto)  │ removed (none)
 *   purgeHistory: history and deleted versions removed
 *
 * Versions hold their data in an engine map. A metadata-only change or a move adds a version
 * with the same map_name, so a map is free only when its last version goes: every call that
 * removes versions returns `unreferencedMaps`, the maps the caller deletes from the engine
 * after this returns (a crash in between leaks a map, never loses one).
 *
 * Every write locks its container's row (pithos-versions.ts lockContainers): writes in one
 * container take turns, and its counters (object_count, bytes_used) stay exact.
 */
import type { MetadataDatabase } from "../connect.ts";
import { DbError } from "../errors.ts";
import { inTransaction } from "../transaction.ts";
import { checkInteger, checkListLimit, checkUuid } from "./limits.ts";
import { checkIssue, issueCommissionIn, type IssueCommissionInput } from "./commissions.ts";
import {
  checkId,
  checkObjectPath,
  isExpired,
  locateObject,
  objectsWithSharing,
  unreferencedMaps,
  versionFromRow,
  type LocatedObject,
  type PithosObject,
  type PithosVersion,
} from "./pithos-common.ts";
import {
  checkPutOptions,
  checkVersionFields,
  currentRow,
  deleteIn,
  dropIfVersionless,
  findNode,
  lockContainers,
  putVersionIn,
  type NewPithosVersion,
  type PutVersionOptions,
  type PutVersionResult,
} from "./pithos-versions.ts";

export type { NewPithosVersion, PutVersionOptions, PutVersionResult } from "./pithos-versions.ts";

export interface ObjectVersion {
  object: PithosObject;
  version: PithosVersion;
}

/**
 * Adds a version as the object's current one, creating the object (a new uuid) if the path
 * has none. EPRECONDITION for a failed precondition, EQUOTA_EXCEEDED past the container's or
 * account's quota, ENOT_FOUND for an unknown container.
 */
export async function putVersion(
  db: MetadataDatabase,
  containerId: number,
  path: string,
  fields: NewPithosVersion,
  options: PutVersionOptions & {
    /**
     * A commission to issue, auto-accepted, in the same transaction (the owner's quota
     * charge for this version): the version and its charge commit together, or neither;
     * a charge over quota fails the put with EQUOTA_EXCEEDED.
     */
    charge?: IssueCommissionInput;
  },
  nowMs = Date.now(),
): Promise<PutVersionResult> {
  const id = checkId("containerId", containerId);
  const checkedPath = checkObjectPath(path);
  const row = checkVersionFields(fields);
  const { charge, ...putOptions } = options;
  const checkedOptions = checkPutOptions(putOptions);
  checkInteger("nowMs", nowMs, { min: 0 });
  const checkedCharge = charge === undefined ? undefined : checkIssue({ ...charge, autoAccept: true }, nowMs);
  return inTransaction(db, async (tx) => {
    await lockContainers(tx, db.engine, [id]);
    if (checkedCharge !== undefined) await issueCommissionIn(tx, db.engine, checkedCharge, nowMs);
    const { removedMaps, ...result } = await putVersionIn(tx, db.engine, id, checkedPath, row, checkedOptions, nowMs);
    return { ...result, unreferencedMaps: await unreferencedMaps(tx, db.engine, removedMaps) };
  });
}

/** The current version, undefined when there is none or it has expired (X-Delete-At). */
export async function getCurrent(db: MetadataDatabase, containerId: number, path: string, nowMs = Date.now()): Promise<ObjectVersion | undefined> {
  const found = await readObjectVersion(db, containerId, path, { state: "current" });
  return found === undefined || isExpired(found.version, nowMs) ? undefined : found;
}

/**
 * The current version even when it has expired: the one a new version or a delete replaces,
 * and whose chargedBytes that releases (gateways/pithos/service.ts). Undefined when none.
 */
export async function getCurrentIncludingExpired(db: MetadataDatabase, containerId: number, path: string): Promise<ObjectVersion | undefined> {
  return readObjectVersion(db, containerId, path, { state: "current" });
}

/**
 * Map names per `in (…)` query of mapNamesInUse: far below SQLite's 32 766 bound parameters
 * and PostgreSQL's 65 535, and a batch of index lookups that returns in milliseconds.
 */
export const pithosMapNamesPerQueryMax = 500;

/**
 * Which of these engine map names a version in any state (current, history, deleted) still
 * names: the orphan sweep (gateways/pithos/orphans.ts) deletes the others' maps.
 */
export async function mapNamesInUse(db: MetadataDatabase, mapNames: readonly string[]): Promise<Set<string>> {
  const used = new Set<string>();
  for (let first = 0; first < mapNames.length; first += pithosMapNamesPerQueryMax) {
    const batch = mapNames.slice(first, first + pithosMapNamesPerQueryMax);
    const rows = await db.kysely.selectFrom("pithos_versions").select("map_name").distinct().where("map_name", "in", batch).execute();
    for (const row of rows) used.add(row.map_name);
  }
  return used;
}

/**
 * The object with this uuid (Plankton's image id) and its current version, wherever it lives
 * now (a move keeps the uuid); undefined when none or expired.
 */
export async function getObjectByUuid(db: MetadataDatabase, uuid: string, nowMs = Date.now()): Promise<LocatedObject | undefined> {
  return locateObject(db.kysely, "uuid", checkUuid("uuid", uuid), nowMs);
}

/** A version in any state (`?version=N`), undefined when the path has no such version. */
export async function getVersion(db: MetadataDatabase, containerId: number, path: string, serial: number): Promise<ObjectVersion | undefined> {
  checkId("serial", serial);
  return readObjectVersion(db, containerId, path, { serial });
}

export interface VersionListEntry {
  serial: number;
  modifiedAt: number;
  state: PithosVersion["state"];
}

/** `?version=list`: the path's versions, oldest first (the caller may drop `deleted` ones). */
export async function listVersions(db: MetadataDatabase, containerId: number, path: string): Promise<VersionListEntry[]> {
  const rows = await db.kysely
    .selectFrom("pithos_versions as v")
    .innerJoin("pithos_objects as o", "o.id", "v.object_id")
    .select(["v.serial", "v.modified_at", "v.state"])
    .where("o.container_id", "=", checkId("containerId", containerId))
    .where("o.path", "=", checkObjectPath(path))
    .orderBy("v.serial")
    .execute();
  return rows.map((row) => ({ serial: row.serial, modifiedAt: row.modified_at, state: row.state }));
}

export interface DeleteObjectResult {
  /** The version that was current, now `deleted` (auto) or gone (none); undefined: no object. */
  deleted: PithosVersion | undefined;
  unreferencedMaps: string[];
}

/**
 * Swift DELETE object. The current version becomes `deleted` (versioning auto: history kept,
 * its modifiedBy now the deleter) or is removed (none). Sharing and the public token go, as in
 * Pithos. An expired current version is removed the same way but reported as undefined.
 * `expectCurrentSerial`: EPRECONDITION unless the current version (expired or not) has this
 * serial — the caller released that version's quota charge and must delete that one.
 */
export async function deleteObject(
  db: MetadataDatabase,
  containerId: number,
  path: string,
  options: { modifiedBy?: string; expectCurrentSerial?: number } = {},
  nowMs = Date.now(),
): Promise<DeleteObjectResult> {
  const id = checkId("containerId", containerId);
  const checkedPath = checkObjectPath(path);
  const modifiedBy = options.modifiedBy === undefined ? undefined : checkUuid("modifiedBy", options.modifiedBy);
  const expected = options.expectCurrentSerial === undefined ? undefined : checkId("expectCurrentSerial", options.expectCurrentSerial);
  checkInteger("nowMs", nowMs, { min: 0 });
  return inTransaction(db, async (tx) => {
    const [container] = await lockContainers(tx, db.engine, [id]);
    const node = await findNode(tx, id, checkedPath);
    const current = node && (await currentRow(tx, node.id));
    if (expected !== undefined && current?.serial !== expected) {
      throw new DbError("EPRECONDITION", `${checkedPath} is not at version ${expected}`, { path: checkedPath, expected, serial: current?.serial ?? null });
    }
    if (node === undefined || current === undefined) return { deleted: undefined, unreferencedMaps: [] };
    const { removedMaps } = await deleteIn(tx, container!, node, current, modifiedBy, nowMs);
    return {
      deleted: isExpired(current, nowMs) ? undefined : versionFromRow(current),
      unreferencedMaps: await unreferencedMaps(tx, db.engine, removedMaps),
    };
  });
}

/**
 * Pithos `DELETE …?until=`: removes the path's history and deleted versions modified at or
 * before untilMs (all when undefined); the current one stays. ENOT_FOUND without the path.
 */
export async function purgeHistory(db: MetadataDatabase, containerId: number, path: string, untilMs?: number): Promise<string[]> {
  const id = checkId("containerId", containerId);
  const checkedPath = checkObjectPath(path);
  if (untilMs !== undefined) checkInteger("untilMs", untilMs, { min: 0 });
  return inTransaction(db, async (tx) => {
    await lockContainers(tx, db.engine, [id]);
    const node = await findNode(tx, id, checkedPath);
    if (node === undefined) throw new DbError("ENOT_FOUND", `no object ${checkedPath}`, { containerId: id, path: checkedPath });
    const removed = await tx
      .deleteFrom("pithos_versions")
      .where("object_id", "=", node.id)
      .where("state", "<>", "current")
      .$if(untilMs !== undefined, (query) => query.where("modified_at", "<=", untilMs!))
      .returning("map_name")
      .execute();
    await dropIfVersionless(tx, node.id);
    return unreferencedMaps(
      tx,
      db.engine,
      removed.map((row) => row.map_name),
    );
  });
}

/** Pithos `DELETE container?until=`: purgeHistory for every path in the container. */
export async function purgeContainerHistory(db: MetadataDatabase, containerId: number, untilMs?: number): Promise<string[]> {
  const id = checkId("containerId", containerId);
  if (untilMs !== undefined) checkInteger("untilMs", untilMs, { min: 0 });
  return inTransaction(db, async (tx) => {
    await lockContainers(tx, db.engine, [id]);
    const removed = await tx
      .deleteFrom("pithos_versions")
      .where("object_id", "in", (eb) => eb.selectFrom("pithos_objects").select("id").where("container_id", "=", id))
      .where("state", "<>", "current")
      .$if(untilMs !== undefined, (query) => query.where("modified_at", "<=", untilMs!))
      .returning("map_name")
      .execute();
    await tx
      .deleteFrom("pithos_objects")
      .where("container_id", "=", id)
      .where(({ not, exists, selectFrom }) =>
        not(exists(selectFrom("pithos_versions").select("serial").whereRef("pithos_versions.object_id", "=", "pithos_objects.id"))),
      )
      .execute();
    return unreferencedMaps(
      tx,
      db.engine,
      removed.map((row) => row.map_name),
    );
  });
}

export interface RenameObjectOptions extends PutVersionOptions {
  /** Fields that change on the way (Content-Type, meta…); the rest is the source's. */
  fields?: Partial<Omit<NewPithosVersion, "mapName" | "sizeBytes" | "contentHash">>;
}

/**
 * Pithos MOVE: the source's current version reappears at the destination with the same map
 * and the same object uuid (synnefo.md B.3 "move keeps the map and the UUID"); the source is
 * deleted as deleteObject does (its sharing and token go; the destination's are kept). Both
 * containers' versioning applies. ENOT_FOUND without a current source.
 */
export async function renameObject(
  db: MetadataDatabase,
  containerId: number,
  path: string,
  destContainerId: number,
  destPath: string,
  options: RenameObjectOptions,
  nowMs = Date.now(),
): Promise<PutVersionResult & { source: PithosVersion }> {
  const sourceId = checkId("containerId", containerId);
  const sourcePath = checkObjectPath(path);
  const destId = checkId("destContainerId", destContainerId);
  const checkedDestPath = checkObjectPath(destPath, "destPath");
  const checkedOptions = checkPutOptions(options);
  checkInteger("nowMs", nowMs, { min: 0 });
  if (sourceId === destId && sourcePath === checkedDestPath) {
    throw new DbError("EINVALID", "an object cannot be moved onto itself", { containerId, path });
  }
  return inTransaction(db, async (tx) => {
    const containers = await lockContainers(tx, db.engine, [sourceId, destId]);
    const node = await findNode(tx, sourceId, sourcePath);
    const current = node && (await currentRow(tx, node.id));
    if (node === undefined || current === undefined || isExpired(current, nowMs)) {
      throw new DbError("ENOT_FOUND", `no object ${sourcePath}`, { containerId: sourceId, path: sourcePath });
    }
    const source = versionFromRow(current);
    const fields = checkVersionFields({ ...source, ...options.fields });
    const deleted = await deleteIn(tx, containers.find((c) => c.id === sourceId)!, node, current, checkedOptions.modifiedBy, nowMs);
    const { removedMaps, ...put } = await putVersionIn(tx, db.engine, destId, checkedDestPath, fields, checkedOptions, nowMs, node.uuid);
    const maps = await unreferencedMaps(tx, db.engine, [...deleted.removedMaps, ...removedMaps]);
    return { ...put, source, unreferencedMaps: maps };
  });
}

/**
 * The expirer: removes current versions whose X-Delete-At has passed, as deleteObject does,
 * at most `limit` of them (soonest first). Returns how many and the maps to delete.
 */
export async function expireObjects(
  db: MetadataDatabase,
  nowMs = Date.now(),
  limit = 1000,
): Promise<{ expired: number; unreferencedMaps: string[] }> {
  checkInteger("nowMs", nowMs, { min: 0 });
  const due = await db.kysely
    .selectFrom("pithos_versions as v")
    .innerJoin("pithos_objects as o", "o.id", "v.object_id")
    .select(["o.container_id", "o.path"])
    .where("v.state", "=", "current")
    .where("v.delete_at", "<=", nowMs)
    .orderBy("v.delete_at")
    .limit(checkListLimit(limit, 1000))
    .execute();
  let expired = 0;
  const maps: string[] = [];
  for (const { container_id: containerId, path } of due) {
    // Each in its own transaction, checked again under the lock: a new version may have come.
    const result = await inTransaction(db, async (tx) => {
      const [container] = await lockContainers(tx, db.engine, [containerId]);
      const node = await findNode(tx, containerId, path);
      const current = node && (await currentRow(tx, node.id));
      if (node === undefined || current === undefined || !isExpired(current, nowMs)) return undefined;
      const { removedMaps } = await deleteIn(tx, container!, node, current, undefined, nowMs);
      return unreferencedMaps(tx, db.engine, removedMaps);
    });
    if (result !== undefined) {
      expired++;
      maps.push(...result);
    }
  }
  return { expired, unreferencedMaps: maps };
}

async function readObjectVersion(
  db: MetadataDatabase,
  containerId: number,
  path: string,
  which: { state: "current" } | { serial: number },
): Promise<ObjectVersion | undefined> {
  const node = await db.kysely
    .selectFrom("pithos_objects")
    .select(["id", "container_id", "path", "uuid", "public_token"])
    .where("container_id", "=", checkId("containerId", containerId))
    .where("path", "=", checkObjectPath(path))
    .executeTakeFirst();
  if (node === undefined) return undefined;
  const row = await db.kysely
    .selectFrom("pithos_versions")
    .selectAll()
    .where("object_id", "=", node.id)
    .$if("state" in which, (query) => query.where("state", "=", "current"))
    .$if("serial" in which, (query) => query.where("serial", "=", (which as { serial: number }).serial))
    .executeTakeFirst();
  if (row === undefined) return undefined;
  const [object] = await objectsWithSharing(db.kysely, [node]);
  return { object: object!, version: versionFromRow(row) };
}
