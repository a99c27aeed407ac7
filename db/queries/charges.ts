/**
 * What one thing (a server, a volume) has been charged, read back from the commissions
 * themselves: every commission a service issues for it has a client key beginning with the
 * same prefix (`compute:<server>:…`, `volume:<volume>:…`), so its net charge is the sum of its
 * accepted provisions and its open reservations are its pending commissions. Nothing is kept
 * on the side that a crash could leave out of step: a release accepted makes the net zero, so
 * a replayed delete finds nothing more to release.
 */
import type { MetadataDatabase } from "../connect.ts";
import type { Provision } from "./commissions.ts";

export interface Charges {
  /** Net accepted quantity per (user, resource), non-zero ones only, ordered by user, resource. */
  accepted: Provision[];
  /** Pending commissions, oldest first. */
  pendingSerials: number[];
}

/** `prefix` must hold no LIKE wildcard (% or _): callers build it from a checked uuid. */
export async function getChargesByKeyPrefix(db: MetadataDatabase, prefix: string): Promise<Charges> {
  if (/[%_\\]/.test(prefix)) throw new Error(`a commission key prefix with a LIKE wildcard: ${prefix}`);
  const pattern = `${prefix}%`;
  const pending = await db.kysely
    .selectFrom("commissions")
    .select("serial")
    .where("client_key", "like", pattern)
    .where("state", "=", "pending")
    .orderBy("serial")
    .execute();
  const sums = await db.kysely
    .selectFrom("commissions as c")
    .innerJoin("commission_provisions as p", "p.serial", "c.serial")
    .select(["p.user_uuid", "p.resource", (eb) => eb.fn.sum<number | string>("p.quantity").as("quantity")])
    .where("c.client_key", "like", pattern)
    .where("c.state", "=", "accepted")
    .groupBy(["p.user_uuid", "p.resource"])
    .orderBy("p.user_uuid")
    .orderBy("p.resource")
    .execute();
  return {
    accepted: sums.map((row) => ({ userUuid: row.user_uuid, resource: row.resource, quantity: Number(row.quantity) })).filter((p) => p.quantity !== 0),
    pendingSerials: pending.map((row) => row.serial),
  };
}
