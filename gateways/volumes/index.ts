/** What serve/, cli/ and compute/ import from the block-storage volume service. */
export { VolumeService, engineNames, type CreateSnapshotRequest, type CreateVolumeRequest, type NbdSnapshotter, type VolumeServiceOptions } from "./service.ts";
export { VolumeError, isVolumeError, volumeErrors, volumeNotFound, snapshotNotFound, toVolumeError, type VolumeErrorCode } from "./errors.ts";
export { statusOf, recordOf, type CinderVolumeStatus, type VolumeDetail, type VolumeRecord } from "./model.ts";
export { reconcileVolumes, type VolumeReconcileReport } from "./reconcile.ts";
export { volumePlugin, type VolumePluginOptions } from "./api/index.ts";
