/**
 * What a server has been charged, read back from the commissions themselves: every commission
 * the compute service issues for a server has the client key `compute:<server>:<job id>`
 * (compute/quota.ts), so the server's net charge is the sum of its accepted provisions and its
 * open reservations are its pending commissions. Nothing is kept on the side that a crash
 * could leave out of step: a release accepted makes the net zero, so a replayed delete finds
 * nothing more to release.
 */
import type { MetadataDatabase } from "../connect.ts";
import type { Provision } from "./commissions.ts";
import { checkUuid } from "./limits.ts";

export interface ServerCharges {
  /** Net accepted quantity per (user, resource), non-zero ones only, ordered by user, resource. */
  accepted: Provision[];
  /** Pending commissions of the server. */
  pendingSerials: number[];
}

/** The client-key prefix of a server's commissions. */
export function serverCommissionPrefix(serverId: string): string {
  return `compute:${checkUuid("serverId", serverId)}:`;
}

export async function getServerCharges(db: MetadataDatabase, serverId: string): Promise<ServerCharges> {
  // A uuid has no LIKE wildcard (% or _): the prefix matches literally, case included.
  const pattern = `${serverCommissionPrefix(serverId)}%`;
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
