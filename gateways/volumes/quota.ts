/**
 * The volume service's quota (db/queries/commissions.ts): a volume charges `volume.disk` its
 * size in bytes (size_gib × 2^30), the resource compute charges root disks against
 * (compute/quota.ts), so one limit bounds every disk a user holds.
 *
 *   create   issued after the `creating` row is in (over quota: the row withdrawn, 413),
 *            accepted when the engine volume exists, rejected when making it failed
 *   extend   the size delta, likewise, under its own key
 *   delete   pending ones rejected, the net accepted charge released (forced, auto-accepted)
 *
 * Client keys are `volume:<id>:<step>` (db/queries/volume-charges.ts): a replayed step issues
 * nothing twice, and a volume's charge is read back from its commissions, never kept beside them.
 */
import {
  acceptCommission,
  findCommission,
  getQuota,
  getVolumeCharges,
  isDbError,
  issueCommission,
  rejectCommission,
  volumeCommissionPrefix,
  type Commission,
  type DbError,
  type MetadataDatabase,
} from "../../db/index.ts";
import { VolumeError } from "./errors.ts";

export const diskResource = "volume.disk";
export const gibBytes = 1024 ** 3;

export function createKey(volumeId: string): string {
  return `${volumeCommissionPrefix(volumeId)}create`;
}

export function extendKey(volumeId: string, attempt: string): string {
  return `${volumeCommissionPrefix(volumeId)}extend:${attempt}`;
}

function deleteKey(volumeId: string): string {
  return `${volumeCommissionPrefix(volumeId)}delete`;
}

/**
 * Reserves `deltaGib` of disk for the volume under `clientKey` (or finds the commission a
 * replay issued). Over quota: VolumeError EQUOTA with Cinder's message.
 */
export async function reserveDisk(db: MetadataDatabase, userUuid: string, clientKey: string, name: string, deltaGib: number): Promise<Commission> {
  try {
    return await issueCommission(db, { clientKey, name, provisions: [{ userUuid, resource: diskResource, quantity: deltaGib * gibBytes }] });
  } catch (error) {
    if (isDbError(error, "EQUOTA_EXCEEDED")) throw quotaExceeded(error, deltaGib);
    throw error;
  }
}

/** Accepts the commission under `clientKey`, if one was issued and is pending. */
export async function acceptKey(db: MetadataDatabase, clientKey: string): Promise<void> {
  const commission = await findCommission(db, clientKey);
  if (commission?.state === "pending") await acceptCommission(db, commission.serial);
}

/** Rejects the commission under `clientKey` if it is pending (a failed step); an accepted one stays. */
export async function rejectKey(db: MetadataDatabase, clientKey: string): Promise<void> {
  const commission = await findCommission(db, clientKey);
  if (commission?.state === "pending") await rejectOpen(db, commission.serial);
}

/** Resolves every pending commission of the volume one way (reconcile after a crash mid-step). */
export async function resolvePending(db: MetadataDatabase, volumeId: string, accept: boolean): Promise<void> {
  for (const serial of (await getVolumeCharges(db, volumeId)).pendingSerials) {
    if (accept) await acceptCommission(db, serial);
    else await rejectOpen(db, serial);
  }
}

/**
 * Everything the volume holds goes back: pending commissions rejected, the net accepted charge
 * released under the delete key. Idempotent: after the release the net is zero.
 */
export async function releaseVolume(db: MetadataDatabase, volumeId: string): Promise<void> {
  const charges = await getVolumeCharges(db, volumeId);
  for (const serial of charges.pendingSerials) await rejectOpen(db, serial);
  const release = charges.accepted.filter((p) => p.quantity > 0).map((p) => ({ ...p, quantity: -p.quantity }));
  if (release.length === 0 || (await findCommission(db, deleteKey(volumeId))) !== undefined) return;
  await issueCommission(db, { clientKey: deleteKey(volumeId), name: `delete volume ${volumeId}`, provisions: release, force: true, autoAccept: true });
}

async function rejectOpen(db: MetadataDatabase, serial: number): Promise<void> {
  await rejectCommission(db, serial).catch((error: unknown) => {
    // Resolved meanwhile by the step finishing: nothing pending to give back.
    if (!isDbError(error, "ECOMMISSION_RESOLVED")) throw error;
  });
}

/**
 * Cinder's VolumeSizeExceedsAvailableQuota (413): "Requested volume or snapshot exceeds
 * allowed gigabytes quota. Requested 5G, quota is 10G and 8G has been consumed."
 */
export function quotaExceeded(error: DbError, requestedGib: number): VolumeError {
  const details = error.details as { limit?: number; usage?: number; pendingIncrease?: number };
  const consumedGib = Math.ceil(((details.usage ?? 0) + (details.pendingIncrease ?? 0)) / gibBytes);
  const quotaGib = Math.floor((details.limit ?? 0) / gibBytes);
  return new VolumeError(
    "EQUOTA",
    `VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed gigabytes quota. Requested ${requestedGib}G, quota is ${quotaGib}G and ${consumedGib}G has been consumed.`,
    { cause: error },
  );
}

/**
 * Cinder's absolute limits and their use (api/views/limits.py, contrib/used_limits.py).
 * Gigabytes are the `volume.disk` quota, which server root disks share; volumes, snapshots
 * and backups have no count quota here (-1: unlimited; backups: none exist).
 */
export async function volumeLimits(db: MetadataDatabase, userUuid: string): Promise<Record<string, number>> {
  const quota = await getQuota(db, userUuid, diskResource).catch((error: unknown) => {
    if (isDbError(error, "ENOT_FOUND")) return undefined;
    throw error;
  });
  const [volumes, snapshots] = await Promise.all([
    db.kysely.selectFrom("volumes").select((eb) => eb.fn.countAll<number | string>().as("n")).where("user_uuid", "=", userUuid).executeTakeFirstOrThrow(),
    db.kysely.selectFrom("volume_snapshots").select((eb) => eb.fn.countAll<number | string>().as("n")).where("user_uuid", "=", userUuid).executeTakeFirstOrThrow(),
  ]);
  return {
    maxTotalVolumeGigabytes: quota === undefined ? -1 : Math.floor(quota.limit / gibBytes),
    maxTotalVolumes: -1,
    maxTotalSnapshots: -1,
    maxTotalBackups: 0,
    maxTotalBackupGigabytes: 0,
    totalGigabytesUsed: quota === undefined ? 0 : Math.ceil((quota.usage + quota.pendingIncrease) / gibBytes),
    totalVolumesUsed: Number(volumes.n),
    totalSnapshotsUsed: Number(snapshots.n),
    totalBackupsUsed: 0,
    totalBackupGigabytesUsed: 0,
  };
}
