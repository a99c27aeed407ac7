/**
 * Disk space is charged to the account that owns a container through identity's two-phase
 * commissions (synnefo.md B.5, D.3): reserve the change before the version is recorded,
 * accept it after, reject it if recording fails. Only current versions count (Pithos's free
 * versioning), so an overwrite charges the difference and a delete releases the version's charge.
 *
 * What a version is charged is recorded with it (pithos_versions.charged_bytes, migration
 * 0005), so a release is exactly what was charged and usage never drifts:
 *   upload, create from hashmap, copy   its size (a copy shares every block, but must stay
 *                                       paid for when its source is deleted)
 *   frozen image (plankton/freeze.ts)   only the blocks its hashing stored anew
 *   metadata-only change, move          the charge of the version it replaces (same data)
 *   partial update                      that charge plus the size's growth (chargeAfterResize)
 *   history, deleted versions           nothing (their charge was released when replaced)
 *
 * A crash between issue and accept leaves a pending commission: it still counts against the
 * limit (never under-counts) and an administrator resolves it (`okeanos quota pending`).
 *
 * A write that grows usage (most writes: every new object) skips the two phases: its charge
 * is an auto-accepted commission in the version's own transaction (`chargeIn`), one commit
 * instead of three, and nothing is ever left pending. Releases keep the two phases, because
 * a release that would take usage below zero is skipped rather than failing the write.
 */
import { randomUUID } from "node:crypto";
import { acceptCommission, issueCommission, isDbError, rejectCommission, type IssueCommissionInput, type MetadataDatabase } from "../../db/index.ts";
import { PithosError } from "./wire/errors.ts";

export const diskspaceResource = "object-store.diskspace";

export interface Reservation {
  accept(): Promise<void>;
  reject(): Promise<void>;
}

const nothingReserved: Reservation = {
  accept: async () => {},
  reject: async () => {},
};

/** The commission charging `deltaBytes` (> 0) to the account, for putVersion's `charge`. */
export function chargeIn(account: string, deltaBytes: number, what: string): IssueCommissionInput {
  return {
    clientKey: `pithos:${randomUUID()}`,
    name: what.slice(0, 200),
    provisions: [{ userUuid: account, resource: diskspaceResource, quantity: deltaBytes }],
  };
}

/** Reserves `deltaBytes` (negative releases) of the account's disk space; 413 over the limit. */
export async function reserveDiskspace(db: MetadataDatabase, account: string, deltaBytes: number, what: string): Promise<Reservation> {
  if (deltaBytes === 0) return nothingReserved;
  let serial: number;
  try {
    const commission = await issueCommission(db, {
      clientKey: `pithos:${randomUUID()}`,
      name: what.slice(0, 200),
      provisions: [{ userUuid: account, resource: diskspaceResource, quantity: deltaBytes }],
      // Releasing space must never fail, even if usage drifted below what we release.
      force: deltaBytes < 0,
    });
    serial = commission.serial;
  } catch (error) {
    if (isDbError(error, "EQUOTA_EXCEEDED")) throw new PithosError("ETOO_LARGE", "Upload exceeds quota.", { cause: error });
    if (isDbError(error, "EQUOTA_NEGATIVE")) return nothingReserved;
    throw error;
  }
  return {
    accept: async () => {
      await acceptCommission(db, serial);
    },
    reject: async () => {
      await rejectCommission(db, serial);
    },
  };
}
