/**
 * Start-up reconciliation of volumes and snapshots a crash left mid-step (service.ts persists
 * each step's status before its engine work, and the engine work is idempotent):
 *
 *   volume    creating     finish the create (clone or make the engine volume unless its map
 *                          exists, accept the quota) → available; it fails → error
 *             deleting     finish the delete (engine volume, quota, row)
 *             extending    engine size grown → accept the pending charge, available at the new
 *                          size; not grown → reject it, available at the old size
 *   snapshot  creating     take the engine snapshot unless its map exists → available | error
 *             deleting     finish the delete
 *
 * Run once by `okeanos serve` before it answers requests; a CLI working on the same database
 * at that moment may see its own step finished for it, which is the same outcome.
 */
import { listBlockVolumes, listVolumeSnapshots, setBlockVolumeStatus, type BlockVolume, type VolumeSnapshot } from "../../db/index.ts";
import { isEngineError } from "../../engine/errors.ts";
import { createKey, gibBytes, reserveDisk, resolvePending } from "./quota.ts";
import type { VolumeService } from "./service.ts";

export interface VolumeReconcileReport {
  /** Volume or snapshot id → what was done, for the log and the tests. */
  repaired: Record<string, string>;
}

export async function reconcileVolumes(service: VolumeService): Promise<VolumeReconcileReport> {
  const report: VolumeReconcileReport = { repaired: {} };
  const { volumes } = await listBlockVolumes(service.db, { storedStatuses: ["creating", "deleting", "extending"], sortDir: "asc" });
  for (const volume of volumes) {
    try {
      report.repaired[volume.id] = await reconcileVolume(service, volume);
    } catch (error) {
      report.repaired[volume.id] = `failed: ${(error as Error).message}`;
      service.logger.error({ err: error, volume: volume.id }, "volumes: reconciling a volume failed");
    }
  }
  const { snapshots } = await listVolumeSnapshots(service.db, { storedStatuses: ["creating", "deleting"], sortDir: "asc" });
  for (const snapshot of snapshots) {
    try {
      report.repaired[snapshot.id] = await reconcileSnapshot(service, snapshot);
    } catch (error) {
      report.repaired[snapshot.id] = `failed: ${(error as Error).message}`;
      service.logger.error({ err: error, snapshot: snapshot.id }, "volumes: reconciling a snapshot failed");
    }
  }
  if (Object.keys(report.repaired).length > 0) service.logger.info({ ...report }, "volumes reconciled");
  return report;
}

async function reconcileVolume(service: VolumeService, volume: BlockVolume): Promise<string> {
  switch (volume.status) {
    case "creating": {
      // The quota was reserved under the create key right after the row went in; a crash in
      // between left no commission, so the create is not finished without one.
      await reserveDisk(service.db, volume.userUuid, createKey(volume.id), `create volume ${volume.id}`, volume.sizeGib).catch(async (error: unknown) => {
        await setBlockVolumeStatus(service.db, volume.id, "creating", "error", service.now());
        throw error;
      });
      const after = await service.finishCreate(volume);
      return `creating → ${after.status}`;
    }
    case "deleting":
      await service.finishDelete(volume);
      return "deleting → deleted";
    case "extending": {
      const engineBytes = await service.engine
        .info(volume.engineName)
        .then((info) => info.header.sizeBytes)
        .catch((error: unknown) => {
          if (isEngineError(error, "ENOT_FOUND")) return undefined;
          throw error;
        });
      if (engineBytes === undefined) {
        await resolvePending(service.db, volume.id, false);
        await setBlockVolumeStatus(service.db, volume.id, "extending", "error_extending", service.now());
        return "extending, engine volume missing → error_extending";
      }
      const grown = engineBytes > volume.sizeGib * gibBytes;
      await resolvePending(service.db, volume.id, grown);
      const sizeGib = grown ? Math.ceil(engineBytes / gibBytes) : volume.sizeGib;
      await setBlockVolumeStatus(service.db, volume.id, "extending", "available", service.now(), { sizeGib });
      return grown ? `extending → available at ${sizeGib} GiB` : "extending → available, not grown";
    }
    default:
      return `left ${volume.status}`;
  }
}

async function reconcileSnapshot(service: VolumeService, snapshot: VolumeSnapshot): Promise<string> {
  if (snapshot.status === "creating") {
    const after = await service.finishSnapshot(snapshot);
    return `creating → ${after.status}`;
  }
  await service.finishDeleteSnapshot(snapshot);
  return "deleting → deleted";
}
