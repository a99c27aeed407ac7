/**
 * The compute service's quota (synnefo.md E.2 step 1; db/queries/commissions.ts): a server
 * charges `compute.vm` 1, `compute.cpu` its vCPUs, `compute.ram` its RAM in bytes and
 * `volume.disk` its root volume in bytes.
 *
 *   create   issued at the API before the job is queued (over quota: 403 at once), issued
 *            again by the job (same key: the same commission), accepted on success,
 *            rejected on failure
 *   resize   the deltas, likewise
 *   delete   pending ones rejected, the net accepted charge released (forced, auto-accepted)
 *
 * Every commission's client key is `compute:<server>:<job id>`: a replayed job issues nothing
 * twice, and a server's charge can always be read back from its commissions
 * (db/queries/compute-charges.ts) instead of being kept beside them.
 */
import {
  acceptCommission,
  findCommission,
  getServerCharges,
  isDbError,
  issueCommission,
  rejectCommission,
  type DbError,
  type MetadataDatabase,
  type Provision,
} from "../db/index.ts";
import { ComputeError } from "./errors.ts";

export const vmResource = "compute.vm";
export const cpuResource = "compute.cpu";
export const ramResource = "compute.ram";
export const diskResource = "volume.disk";

const mib = 1024 * 1024;
const gib = 1024 * mib;

export interface ServerSize {
  vcpus: number;
  ramMiB: number;
  /** The root volume's size in bytes. */
  diskBytes: number;
}

export function commissionKey(serverId: string, jobId: number): string {
  return `compute:${serverId}:${jobId}`;
}

/** What a new server charges. */
export function createProvisions(userUuid: string, size: ServerSize): Provision[] {
  return [
    { userUuid, resource: vmResource, quantity: 1 },
    { userUuid, resource: cpuResource, quantity: size.vcpus },
    { userUuid, resource: ramResource, quantity: size.ramMiB * mib },
    { userUuid, resource: diskResource, quantity: size.diskBytes },
  ];
}

/** What a resize charges (negative: releases); empty when the figures do not change. */
export function resizeProvisions(userUuid: string, from: { vcpus: number; ramMiB: number }, to: { vcpus: number; ramMiB: number }): Provision[] {
  const provisions: Provision[] = [
    { userUuid, resource: cpuResource, quantity: to.vcpus - from.vcpus },
    { userUuid, resource: ramResource, quantity: (to.ramMiB - from.ramMiB) * mib },
  ];
  return provisions.filter((provision) => provision.quantity !== 0);
}

/**
 * Issues (or finds, on a replay) the job's commission; its serial. Over quota: ComputeError
 * EQUOTA with Nova's message.
 */
export async function reserve(db: MetadataDatabase, serverId: string, jobId: number, name: string, provisions: readonly Provision[]): Promise<number> {
  try {
    const commission = await issueCommission(db, { clientKey: commissionKey(serverId, jobId), name, provisions });
    return commission.serial;
  } catch (error) {
    if (isDbError(error, "EQUOTA_EXCEEDED")) throw quotaExceeded(error);
    throw error;
  }
}

/** Accepts the job's commission, if it issued one. */
export async function acceptReserved(db: MetadataDatabase, serverId: string, jobId: number): Promise<void> {
  const commission = await findCommission(db, commissionKey(serverId, jobId));
  if (commission !== undefined) await acceptCommission(db, commission.serial);
}

/** Rejects the job's commission if it is pending (a failed job); an accepted one stays. */
export async function rejectReserved(db: MetadataDatabase, serverId: string, jobId: number): Promise<void> {
  const commission = await findCommission(db, commissionKey(serverId, jobId));
  if (commission?.state === "pending") await rejectCommission(db, commission.serial);
}

/**
 * Everything the server holds goes back: pending commissions rejected, the net accepted charge
 * released under the delete job's key. Idempotent: after the release the net is zero.
 */
export async function releaseServer(db: MetadataDatabase, serverId: string, jobId: number): Promise<void> {
  const charges = await getServerCharges(db, serverId);
  for (const serial of charges.pendingSerials) {
    await rejectCommission(db, serial).catch((error: unknown) => {
      // Resolved meanwhile by a job finishing: nothing pending to give back.
      if (!isDbError(error, "ECOMMISSION_RESOLVED")) throw error;
    });
  }
  const release = charges.accepted.filter((p) => p.quantity > 0).map((p) => ({ ...p, quantity: -p.quantity }));
  if (release.length === 0 || (await findCommission(db, commissionKey(serverId, jobId))) !== undefined) return;
  await issueCommission(db, { clientKey: commissionKey(serverId, jobId), name: `delete server ${serverId}`, provisions: release, force: true, autoAccept: true });
}

/** Nova's resource names and units in its quota message (nova/exception.py OverQuota). */
const novaNames: Record<string, { name: string; unitBytes: number }> = {
  [vmResource]: { name: "instances", unitBytes: 1 },
  [cpuResource]: { name: "cores", unitBytes: 1 },
  [ramResource]: { name: "ram", unitBytes: mib },
  [diskResource]: { name: "gigabytes", unitBytes: gib },
};

/** "Quota exceeded for cores: Requested 2, but already used 4 of 4 cores". */
export function quotaExceeded(error: DbError): ComputeError {
  const details = error.details as { resource?: string; quantity?: number; limit?: number; usage?: number; pendingIncrease?: number };
  const nova = novaNames[details.resource ?? ""] ?? { name: details.resource ?? "resources", unitBytes: 1 };
  const inUnits = (value: number | undefined) => Math.ceil((value ?? 0) / nova.unitBytes);
  const used = (details.usage ?? 0) + (details.pendingIncrease ?? 0);
  return new ComputeError(
    "EQUOTA",
    `Quota exceeded for ${nova.name}: Requested ${inUnits(details.quantity)}, but already used ${inUnits(used)} of ${inUnits(details.limit)} ${nova.name}`,
    { cause: error },
  );
}
