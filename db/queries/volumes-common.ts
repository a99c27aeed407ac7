/**
 * The block-storage volume records (camelCase) and the named limits their query functions
 * apply: Cinder's own where it has them (cinder/api/validation/parameter_types.py,
 * cinder/api/schemas/volumes.py), so a request Cinder accepts is accepted here.
 */
import type { Selectable } from "kysely";
import type { ComputeAttachmentState, VolumeSnapshotStatus, VolumeSnapshotsTable, VolumeStatus, VolumesTable } from "../schema.ts";

/** Cinder's `name` and `description` parameter types: at most 255 characters. */
export const volumeNameLengthMax = 255;
export const volumeDescriptionLengthMax = 255;
/** Cinder's metadata key and value: 1..255 and 0..255 characters. */
export const volumeMetadataKeyLengthMax = 255;
export const volumeMetadataValueLengthMax = 255;
/**
 * Metadata items per volume. Cinder has no count quota on volume metadata; 128 is Nova's
 * metadata_items default, far above what clients set, and bounds the rows one volume holds.
 */
export const volumeMetadataItemsMax = 128;
/**
 * The largest volume: 16 TiB. Its map has 4 Mi entries at 4 MiB blocks, which a clone copies
 * in one pass (O(map)); larger belongs to a deployment that has measured it.
 */
export const volumeSizeGibMax = 16 * 1024;
/** Cinder's osapi_max_limit: a listing page holds at most 1000 items, and 1000 without ?limit. */
export const volumeListLimitMax = 1000;

export const volumeStatuses = ["creating", "available", "extending", "deleting", "error", "error_deleting", "error_extending"] as const satisfies readonly VolumeStatus[];
export const volumeSnapshotStatuses = ["creating", "available", "deleting", "error", "error_deleting"] as const satisfies readonly VolumeSnapshotStatus[];
/** Keys a listing sorts by (Cinder's `sort_key`, `size` named as Cinder names it). */
export const volumeSortKeys = ["created_at", "updated_at", "id", "name", "size", "status"] as const;
export type VolumeSortKey = (typeof volumeSortKeys)[number];

/** The row of compute_volume_attachments naming a volume: the volume is attaching, in-use or detaching. */
export interface VolumeAttachmentRef {
  id: string;
  serverId: string;
  device: string;
  state: ComputeAttachmentState;
  createdAt: number;
  updatedAt: number;
}

export interface BlockVolume {
  id: string;
  userUuid: string;
  name: string;
  description: string | null;
  sizeGib: number;
  /** The stored status; the API's status also depends on `attachment` (gateways/volumes/model.ts). */
  status: VolumeStatus;
  engineName: string;
  bootable: boolean;
  imageId: string | null;
  snapshotId: string | null;
  sourceVolid: string | null;
  createdAt: number;
  updatedAt: number;
  attachment: VolumeAttachmentRef | undefined;
}

export interface VolumeSnapshot {
  id: string;
  userUuid: string;
  volumeId: string;
  name: string;
  description: string | null;
  sizeGib: number;
  status: VolumeSnapshotStatus;
  engineName: string;
  createdAt: number;
  updatedAt: number;
}

/** A volumes row left-joined to its attachment (columns prefixed `a_`). */
export type VolumeJoinedRow = Selectable<VolumesTable> & {
  a_id: string | null;
  a_server_id: string | null;
  a_device: string | null;
  a_state: ComputeAttachmentState | null;
  a_created_at: number | null;
  a_updated_at: number | null;
};

export function volumeFromRow(row: VolumeJoinedRow): BlockVolume {
  return {
    id: row.id,
    userUuid: row.user_uuid,
    name: row.name,
    description: row.description,
    sizeGib: row.size_gib,
    status: row.status,
    engineName: row.engine_name,
    bootable: row.bootable === 1,
    imageId: row.image_id,
    snapshotId: row.snapshot_id,
    sourceVolid: row.source_volid,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    attachment:
      row.a_id === null
        ? undefined
        : { id: row.a_id, serverId: row.a_server_id!, device: row.a_device!, state: row.a_state!, createdAt: row.a_created_at!, updatedAt: row.a_updated_at! },
  };
}

export function snapshotFromRow(row: Selectable<VolumeSnapshotsTable>): VolumeSnapshot {
  return {
    id: row.id,
    userUuid: row.user_uuid,
    volumeId: row.volume_id,
    name: row.name,
    description: row.description,
    sizeGib: row.size_gib,
    status: row.status,
    engineName: row.engine_name,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
