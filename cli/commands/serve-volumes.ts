/**
 * The block-storage volume service inside `okeanos serve` (gateways/volumes/): constructed
 * after the NBD server, whose crash-consistent snapshot it takes of volumes servers have open,
 * and reconciled (volumes a crash left creating, deleting or extending) before the HTTP
 * server answers. compute/ attaches these volumes to servers.
 */
import type { MetadataDatabase } from "../../db/index.ts";
import type { Engine } from "../../engine/engine.ts";
import type { NbdServer } from "../../engine/nbd/server.ts";
import type { VolumeService } from "../../gateways/volumes/index.ts";

export interface StartVolumesOptions {
  db: MetadataDatabase;
  engine: Engine;
  /** Undefined with --no-nbd: snapshots and resizes then go to the engine directly. */
  nbd: NbdServer | undefined;
  logger: { info(object: object, message?: string): void; warn(object: object, message?: string): void; error(object: object, message?: string): void };
}

export async function startVolumes(options: StartVolumesOptions): Promise<VolumeService> {
  const { VolumeService, reconcileVolumes } = await import("../../gateways/volumes/index.ts");
  const nbd = options.nbd;
  const service = new VolumeService({
    db: options.db,
    engine: options.engine,
    logger: options.logger,
    ...(nbd !== undefined && {
      nbd: {
        snapshot: async (volume: string, snapshotName: string) => {
          await nbd.registry.snapshot(volume, snapshotName);
        },
        resize: async (volume: string, sizeBytes: number) => {
          await nbd.registry.resize(volume, sizeBytes);
        },
      },
    }),
  });
  const report = await reconcileVolumes(service);
  if (Object.keys(report.repaired).length > 0) options.logger.info({ reconcile: report }, "volumes: finished what a crash left half done");
  return service;
}
