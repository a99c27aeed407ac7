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
import { setTimeout } from "node:timers/promises";
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

/**
 * How long a release waits for other writers' pending releases to settle when only they
 * stand in its way (releaseAttemptsMax tries, releaseRetryMs apart): they are concurrent
 * overwrites between issue and accept (a few queries), or a crashed writer's, which an
 * administrator resolves.
 */
export const releaseAttemptsMax = 50;
export const releaseRetryMs = 10;

/** Reserves `deltaBytes` (negative releases) of the account's disk space; 413 over the limit. */
export async function reserveDiskspace(db: MetadataDatabase, account: string, deltaBytes: number, what: string): Promise<Reservation> {
  if (deltaBytes === 0) return nothingReserved;
  let serial: number;
  for (let attempt = 1; ; attempt++) {
    try {
      const commission = await issueCommission(db, {
        clientKey: `pithos:${randomUUID()}`,
        name: what.slice(0, 200),
        provisions: [{ userUuid: account, resource: diskspaceResource, quantity: deltaBytes }],
        // Releasing space must never fail the write, even if usage drifted below what we release.
        force: deltaBytes < 0,
      });
      serial = commission.serial;
      break;
    } catch (error) {
      if (isDbError(error, "EQUOTA_EXCEEDED")) throw new PithosError("ETOO_LARGE", "Upload exceeds quota.", { cause: error });
      if (!isDbError(error, "EQUOTA_NEGATIVE")) throw error;
      // The holding refuses a release that, with every pending release accepted, would take
      // usage below zero. When the committed usage covers ours, what stands in the way is
      // other writers' pending releases, most of them concurrent overwrites of this very
      // object that will be rejected when they lose the race: skipping ours then would leave
      // this version's predecessor charged for ever. So wait for them; skip only a release
      // that usage itself does not cover (drift), or after releaseAttemptsMax tries.
      const usage = Number(error.details["usage"]);
      if (!(usage + deltaBytes >= 0) || attempt >= releaseAttemptsMax) return nothingReserved;
      await setTimeout(releaseRetryMs);
    }
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
