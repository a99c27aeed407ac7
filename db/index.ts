/** The metadata database's public face: what identity/ and the other services import. */
export { openDatabase, type DatabaseEngine, type MetadataDatabase, type OpenDatabaseOptions } from "./connect.ts";
export { dbErrorCodes, DbError, isDbError, type DbErrorCode } from "./errors.ts";
export { latestMigration, migrateToLatest } from "./migrations/index.ts";
export type { CommissionState, Database, PithosSharingAccess, PithosVersioning, PithosVersionState, PlanktonImageStatus, UserState } from "./schema.ts";
export { planktonImageStatuses } from "./schema.ts";
export { inTransaction } from "./transaction.ts";
export * from "./queries/users.ts";
export * from "./queries/tokens.ts";
export * from "./queries/quotas.ts";
export * from "./queries/commissions.ts";
export * from "./queries/pithos-accounts.ts";
export * from "./queries/pithos-containers.ts";
export * from "./queries/pithos-objects.ts";
export * from "./queries/pithos-object-listing.ts";
export * from "./queries/pithos-sharing.ts";
export { mergeMeta, type LocatedObject, type PithosContainer, type PithosMeta, type PithosObject, type PithosSharing, type PithosVersion } from "./queries/pithos-common.ts";
export { compareNames, successorOf, type ListingOptions } from "./queries/pithos-listing.ts";
export * as limits from "./queries/limits.ts";
export * from "./queries/plankton.ts";
export {
  getImage,
  listImages,
  imageListLimitDefault,
  imageListLimitMax,
  imageSortKeys,
  type ImageListOptions,
  type ImageListPage,
  type ImageSortKey,
  type ImageVisibilityFilter,
} from "./queries/plankton-listing.ts";
export {
  imageFormatLengthMax,
  imageNameLengthMax,
  imagePropertiesMax,
  imagePropertyKeyLengthMax,
  imagePropertyValueLengthMax,
  imageTagLengthMax,
  imageTagsMax,
  type ImageFields,
  type ImageWithFile,
  type PlanktonImage,
} from "./queries/plankton-common.ts";
export type { ComputeJobAction, ComputeJobState, ComputeTaskState, ComputeVmState } from "./schema.ts";
export { computeJobActions, computeJobStates, computeTaskStates, computeVmStates } from "./schema.ts";
export * from "./queries/compute-common.ts";
export * from "./queries/compute-flavors.ts";
export * from "./queries/compute-keypairs.ts";
export * from "./queries/compute-servers.ts";
export * from "./queries/compute-jobs.ts";
export * from "./queries/compute-charges.ts";
export * from "./queries/compute-attachments.ts";
export type { VolumeSnapshotStatus, VolumeStatus } from "./schema.ts";
export * from "./queries/volumes.ts";
export * from "./queries/volume-snapshots.ts";
export * from "./queries/volume-charges.ts";
