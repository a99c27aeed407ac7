/**
 * What a server has been charged (charges.ts): every commission the compute service issues
 * for a server has the client key `compute:<server>:<job id>` (compute/quota.ts).
 */
import type { MetadataDatabase } from "../connect.ts";
import { getChargesByKeyPrefix, type Charges } from "./charges.ts";
import { checkUuid } from "./limits.ts";

export type ServerCharges = Charges;

/** The client-key prefix of a server's commissions. */
export function serverCommissionPrefix(serverId: string): string {
  return `compute:${checkUuid("serverId", serverId)}:`;
}

export function getServerCharges(db: MetadataDatabase, serverId: string): Promise<ServerCharges> {
  return getChargesByKeyPrefix(db, serverCommissionPrefix(serverId));
}
