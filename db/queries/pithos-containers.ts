/**
 * Pithos+ containers (synnefo.md B.2 `/v1/{account}/{container}`, swift.md 4): create (201 or
 * 202), read with the counters, meta and policy updates, delete (409 unless empty) and the
 * account's container listing in byte order.
 */
import type { Transaction } from "kysely";
import type { DatabaseEngine, MetadataDatabase } from "../connect.ts";
import { DbError } from "../errors.ts";
import type { Database, PithosVersioning } from "../schema.ts";
import { inTransaction } from "../transaction.ts";
import { checkInteger, checkListLimit, pithosListingLimitMax } from "./limits.ts";
import {
  checkAccount,
  checkContainerName,
  checkId,
  checkMeta,
  checkQuota,
  checkVersioning,
  containerFromRow,
  lockAccount,
  lockContainer,
  mergeMeta,
  parseMeta,
  unreferencedMaps,
  type PithosContainer,
  type PithosMeta,
} from "./pithos-common.ts";
import { checkListingOptions, lowerOperator, scanListing, upperOperator, type ListingOptions } from "./pithos-listing.ts";


export interface ContainerSettings {
  versioning?: PithosVersioning;
  /** Null: unlimited. */
  quotaBytes?: number | null;
  meta?: PithosMeta;
}

/**
 * Swift PUT container: creates it (created: true, 201), or finds it (created: false, 202) and
 * applies the settings given — meta merged, policies replaced.
 */
export async function createContainer(
  db: MetadataDatabase,
  account: string,
  name: string,
  settings: ContainerSettings = {},
  nowMs = Date.now(),
): Promise<{ container: PithosContainer; created: boolean }> {
  const checkedAccount = checkAccount(account);
  const checkedName = checkContainerName(name);
  const versioning = settings.versioning === undefined ? undefined : checkVersioning(settings.versioning);
  const quota = settings.quotaBytes === undefined ? undefined : checkQuota(settings.quotaBytes);
  const meta = settings.meta === undefined ? undefined : checkMeta(settings.meta);
  checkInteger("nowMs", nowMs, { min: 0 });
  return inTransaction(db, async (tx) => {
    await lockAccount(tx, db.engine, checkedAccount, nowMs);
    const inserted = await tx
      .insertInto("pithos_containers")
      .values({
        account: checkedAccount,
        name: checkedName,
        versioning: versioning ?? "auto",
        quota_bytes: quota ?? null,
        meta: JSON.stringify(mergeMeta({}, meta ?? {}, true)),
        object_count: 0,
        bytes_used: 0,
        created_at: nowMs,
        modified_at: nowMs,
      })
      .onConflict((conflict) => conflict.columns(["account", "name"]).doNothing())
      .returningAll()
      .executeTakeFirst();
    if (inserted !== undefined) {
      await tx.updateTable("pithos_accounts").set({ modified_at: nowMs }).where("account", "=", checkedAccount).execute();
      return { container: containerFromRow(inserted), created: true };
    }
    const existing = await tx
      .selectFrom("pithos_containers")
      .select("id")
      .where("account", "=", checkedAccount)
      .where("name", "=", checkedName)
      .executeTakeFirstOrThrow();
    const container = await updateContainerIn(tx, db.engine, existing.id, { meta, replaceMeta: false, versioning, quotaBytes: quota }, nowMs);
    return { container, created: false };
  });
}

/** Undefined when there is none. */
export async function getContainer(db: MetadataDatabase, account: string, name: string): Promise<PithosContainer | undefined> {
  const row = await db.kysely
    .selectFrom("pithos_containers")
    .selectAll()
    .where("account", "=", checkAccount(account))
    .where("name", "=", checkContainerName(name))
    .executeTakeFirst();
  return row && containerFromRow(row);
}

export async function getContainerById(db: MetadataDatabase, containerId: number): Promise<PithosContainer | undefined> {
  const row = await db.kysely.selectFrom("pithos_containers").selectAll().where("id", "=", checkId("containerId", containerId)).executeTakeFirst();
  return row && containerFromRow(row);
}

export interface ContainerPatch extends ContainerSettings {
  /** Swift/Pithos POST without `update`: the meta given replaces all of it. */
  replaceMeta?: boolean;
}

/** Swift/Pithos POST container. ENOT_FOUND for an unknown id. */
export async function updateContainer(
  db: MetadataDatabase,
  containerId: number,
  patch: ContainerPatch,
  nowMs = Date.now(),
): Promise<PithosContainer> {
  const id = checkId("containerId", containerId);
  const checked: ContainerPatch = {
    meta: patch.meta === undefined ? undefined : checkMeta(patch.meta),
    replaceMeta: patch.replaceMeta === true,
    versioning: patch.versioning === undefined ? undefined : checkVersioning(patch.versioning),
    quotaBytes: patch.quotaBytes === undefined ? undefined : checkQuota(patch.quotaBytes),
  };
  checkInteger("nowMs", nowMs, { min: 0 });
  return inTransaction(db, (tx) => updateContainerIn(tx, db.engine, id, checked, nowMs));
}

async function updateContainerIn(
  tx: Transaction<Database>,
  engine: DatabaseEngine,
  containerId: number,
  patch: ContainerPatch,
  nowMs: number,
): Promise<PithosContainer> {
  const row = await lockContainer(tx, engine, containerId);
  const meta = patch.meta === undefined ? undefined : checkMeta(mergeMeta(parseMeta(row.meta), patch.meta, patch.replaceMeta === true));
  if (meta === undefined && patch.versioning === undefined && patch.quotaBytes === undefined) return containerFromRow(row);
  const updated = await tx
    .updateTable("pithos_containers")
    .set({
      modified_at: Math.max(nowMs, row.modified_at),
      ...(meta === undefined ? {} : { meta: JSON.stringify(meta) }),
      ...(patch.versioning === undefined ? {} : { versioning: patch.versioning }),
      ...(patch.quotaBytes === undefined ? {} : { quota_bytes: patch.quotaBytes }),
    })
    .where("id", "=", containerId)
    .returningAll()
    .executeTakeFirstOrThrow();
  return containerFromRow(updated);
}

/**
 * Swift DELETE container: ECONFLICT while it holds a current (unexpired) object, ENOT_FOUND
 * when missing. Otherwise removes it with all its objects and versions, history included, and
 * returns the engine maps no version references any more, for the caller to delete.
 */
export async function deleteContainer(db: MetadataDatabase, account: string, name: string, nowMs = Date.now()): Promise<string[]> {
  const checkedAccount = checkAccount(account);
  const checkedName = checkContainerName(name);
  checkInteger("nowMs", nowMs, { min: 0 });
  return inTransaction(db, async (tx) => {
    const found = await tx
      .selectFrom("pithos_containers")
      .select("id")
      .where("account", "=", checkedAccount)
      .where("name", "=", checkedName)
      .executeTakeFirst();
    if (found === undefined) throw new DbError("ENOT_FOUND", `no container ${checkedName}`, { account, container: checkedName });
    await lockAccount(tx, db.engine, checkedAccount, nowMs);
    await lockContainer(tx, db.engine, found.id);
    const live = await tx
      .selectFrom("pithos_versions as v")
      .innerJoin("pithos_objects as o", "o.id", "v.object_id")
      .select("o.path")
      .where("o.container_id", "=", found.id)
      .where("v.state", "=", "current")
      .where((eb) => eb.or([eb("v.delete_at", "is", null), eb("v.delete_at", ">", nowMs)]))
      .limit(1)
      .executeTakeFirst();
    if (live !== undefined) {
      throw new DbError("ECONFLICT", `container ${checkedName} is not empty`, { account, container: checkedName, path: live.path });
    }
    const maps = await tx
      .selectFrom("pithos_versions as v")
      .innerJoin("pithos_objects as o", "o.id", "v.object_id")
      .select("v.map_name")
      .where("o.container_id", "=", found.id)
      .execute();
    // Cascades to objects, their versions and sharing.
    await tx.deleteFrom("pithos_containers").where("id", "=", found.id).execute();
    await tx.updateTable("pithos_accounts").set({ modified_at: nowMs }).where("account", "=", checkedAccount).execute();
    return unreferencedMaps(
      tx,
      db.engine,
      maps.map((row) => row.map_name),
    );
  });
}

export type ContainerListingEntry = { kind: "container"; name: string; container: PithosContainer } | { kind: "subdir"; subdir: string };

/** Swift GET account: the account's containers in byte order (swift.md 8's parameters). */
export async function listContainers(db: MetadataDatabase, account: string, options: ListingOptions = {}): Promise<ContainerListingEntry[]> {
  const checkedAccount = checkAccount(account);
  checkListingOptions(options);
  const limit = checkListLimit(options.limit, pithosListingLimitMax);
  const entries = await scanListing(
    (range, reverse, rowsMax) =>
      db.kysely
        .selectFrom("pithos_containers")
        .selectAll()
        .where("account", "=", checkedAccount)
        .$if(range.lower !== undefined, (query) => query.where("name", lowerOperator(range.lower!), range.lower!.value))
        .$if(range.upper !== undefined, (query) => query.where("name", upperOperator(range.upper!), range.upper!.value))
        .orderBy("name", reverse ? "desc" : "asc")
        .limit(rowsMax)
        .execute(),
    (row) => row.name,
    options,
    limit,
  );
  return entries.map((entry) =>
    entry.kind === "subdir" ? entry : { kind: "container", name: entry.name, container: containerFromRow(entry.row) },
  );
}
