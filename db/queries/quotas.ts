/**
 * Quota resources, per-user limits and what a user holds (synnefo.md D.2–D.3). Reserving and
 * releasing quota goes through commissions (commissions.ts); nothing here changes usage.
 */
import type { MetadataDatabase } from "../connect.ts";
import { DbError } from "../errors.ts";
import { inTransaction } from "../transaction.ts";
import { checkInteger, checkResourceName, checkText, resourceDescriptionLengthMax } from "./limits.ts";

export interface QuotaResource {
  name: string;
  description: string;
  /** `count` or `bytes`. */
  unit: string;
  /** The limit of users who have no explicit one. */
  defaultLimit: number;
}

/** One user's standing on one resource (Astakos's `{limit, usage, pending}`). */
export interface Quota {
  resource: string;
  unit: string;
  /** The user's limit, or the resource's default when `limitIsDefault`. */
  limit: number;
  limitIsDefault: boolean;
  /** Accepted usage. */
  usage: number;
  /** Reserved by pending commissions: counts against the limit until accepted or rejected. */
  pendingIncrease: number;
  /** Released by pending commissions: still counted as used until accepted. */
  pendingDecrease: number;
}

const gib = 1024 ** 3;

/**
 * Resources okeanos services count (issue 5). Services register what they need at startup with
 * ensureResources(). The defaults are base quotas, as Astakos's base projects gave every user:
 * a new user can store files and start a small VM at once, and an administrator raises or
 * lowers them per user (`okeanos quota set`) or for everyone (the resource's default limit).
 * Defaults apply when a resource is first registered; later changes to this table do not
 * overwrite what an administrator set.
 */
export const standardResources: readonly QuotaResource[] = [
  { name: "compute.vm", description: "Virtual machines", unit: "count", defaultLimit: 2 },
  { name: "compute.cpu", description: "Virtual CPUs of all virtual machines", unit: "count", defaultLimit: 4 },
  { name: "compute.ram", description: "Memory of all virtual machines", unit: "bytes", defaultLimit: 4 * gib },
  { name: "volume.disk", description: "Size of all volumes", unit: "bytes", defaultLimit: 40 * gib },
  { name: "object-store.diskspace", description: "Bytes stored in containers", unit: "bytes", defaultLimit: 20 * gib },
];

function checkResource(resource: QuotaResource): QuotaResource {
  return {
    name: checkResourceName(resource.name),
    description: resource.description === "" ? "" : checkText("description", resource.description, resourceDescriptionLengthMax),
    unit: checkText("unit", resource.unit, 32),
    defaultLimit: checkInteger("defaultLimit", resource.defaultLimit, { min: 0 }),
  };
}

/**
 * Registers the resources that do not exist yet; existing ones keep what an administrator set.
 * Returns the names that were added.
 */
export async function ensureResources(db: MetadataDatabase, resources: readonly QuotaResource[]): Promise<string[]> {
  const checked = resources.map(checkResource);
  if (checked.length === 0) return [];
  const rows = await db.kysely
    .insertInto("quota_resources")
    .values(checked.map((r) => ({ name: r.name, description: r.description, unit: r.unit, default_limit: r.defaultLimit })))
    .onConflict((conflict) => conflict.column("name").doNothing())
    .returning("name")
    .execute();
  return rows.map((row) => row.name);
}

export async function listResources(db: MetadataDatabase): Promise<QuotaResource[]> {
  const rows = await db.kysely.selectFrom("quota_resources").selectAll().orderBy("name").execute();
  return rows.map((row) => ({ name: row.name, description: row.description, unit: row.unit, defaultLimit: row.default_limit }));
}

/** Throws ENOT_FOUND for an unknown resource. */
export async function setResourceDefaultLimit(db: MetadataDatabase, name: string, defaultLimit: number): Promise<void> {
  checkInteger("defaultLimit", defaultLimit, { min: 0 });
  const result = await db.kysely
    .updateTable("quota_resources")
    .set({ default_limit: defaultLimit })
    .where("name", "=", name)
    .executeTakeFirst();
  if (result.numUpdatedRows === 0n) throw new DbError("ENOT_FOUND", `no resource ${name}`, { resource: name });
}

/**
 * Sets a user's limit on a resource; null returns the user to the resource's default. A limit
 * below current usage is allowed: it refuses further reservations, takes nothing back.
 * Throws ENOT_FOUND for an unknown user or resource.
 */
export async function setLimit(db: MetadataDatabase, userUuid: string, resource: string, limit: number | null): Promise<void> {
  if (limit !== null) checkInteger("limit", limit, { min: 0 });
  await inTransaction(db, async (tx) => {
    const user = await tx.selectFrom("users").select("uuid").where("uuid", "=", userUuid).executeTakeFirst();
    if (user === undefined) throw new DbError("ENOT_FOUND", `no user ${userUuid}`, { uuid: userUuid });
    const known = await tx.selectFrom("quota_resources").select("name").where("name", "=", resource).executeTakeFirst();
    if (known === undefined) throw new DbError("ENOT_FOUND", `no resource ${resource}`, { resource });
    await tx
      .insertInto("quota_holdings")
      .values({ user_uuid: userUuid, resource, quota_limit: limit, usage: 0, pending_increase: 0, pending_decrease: 0 })
      .onConflict((conflict) => conflict.columns(["user_uuid", "resource"]).doUpdateSet({ quota_limit: limit }))
      .execute();
  });
}

/**
 * A user's quota on every registered resource (or on one), ordered by resource name.
 * Throws ENOT_FOUND for an unknown user, or an unknown resource when one is named.
 */
export async function getQuotas(db: MetadataDatabase, userUuid: string, resource?: string): Promise<Quota[]> {
  const user = await db.kysely.selectFrom("users").select("uuid").where("uuid", "=", userUuid).executeTakeFirst();
  if (user === undefined) throw new DbError("ENOT_FOUND", `no user ${userUuid}`, { uuid: userUuid });
  const rows = await db.kysely
    .selectFrom("quota_resources as r")
    .leftJoin("quota_holdings as h", (join) => join.onRef("h.resource", "=", "r.name").on("h.user_uuid", "=", userUuid))
    .select([
      "r.name",
      "r.unit",
      "r.default_limit",
      "h.quota_limit",
      "h.usage",
      "h.pending_increase",
      "h.pending_decrease",
    ])
    .$if(resource !== undefined, (query) => query.where("r.name", "=", resource!))
    .orderBy("r.name")
    .execute();
  if (resource !== undefined && rows.length === 0) throw new DbError("ENOT_FOUND", `no resource ${resource}`, { resource });
  return rows.map((row) => ({
    resource: row.name,
    unit: row.unit,
    limit: row.quota_limit ?? row.default_limit,
    limitIsDefault: row.quota_limit === null,
    usage: row.usage ?? 0,
    pendingIncrease: row.pending_increase ?? 0,
    pendingDecrease: row.pending_decrease ?? 0,
  }));
}

/** getQuotas for one resource. */
export async function getQuota(db: MetadataDatabase, userUuid: string, resource: string): Promise<Quota> {
  const [quota] = await getQuotas(db, userUuid, resource);
  return quota!;
}
