/**
 * What the volume service hands out: a volume as Cinder describes it, its status derived from
 * the stored one and the attachment (migration 0006: the attach state lives in
 * compute_volume_attachments, so compute and volumes never disagree about it).
 *
 *   attachment row state   Cinder status
 *   attaching              attaching
 *   attached               in-use
 *   detaching              detaching
 *   (none)                 the stored status (creating, available, extending, deleting, error…)
 */
import { getImage, type BlockVolume, type MetadataDatabase, type VolumeAttachmentRef, type VolumeSnapshot } from "../../db/index.ts";

/** Cinder's volume status strings this service shows. */
export type CinderVolumeStatus =
  | "creating"
  | "available"
  | "attaching"
  | "in-use"
  | "detaching"
  | "extending"
  | "deleting"
  | "error"
  | "error_deleting"
  | "error_extending";

/** The subset of a volume that compute/ needs to attach one (and the CLI to print one). */
export interface VolumeRecord {
  id: string;
  userUuid: string;
  name: string;
  sizeGib: number;
  /** Derived: the attachment's state when a row names the volume, else the stored status. */
  status: CinderVolumeStatus;
  /** The engine volume (`volume-<id>`): what the NBD server exports. */
  engineName: string;
  bootable: boolean;
}

/** A volume with everything the API shows. */
export interface VolumeDetail extends VolumeRecord {
  description: string | null;
  imageId: string | null;
  snapshotId: string | null;
  sourceVolid: string | null;
  createdAt: number;
  updatedAt: number;
  attachment: VolumeAttachmentRef | undefined;
  metadata: Record<string, string>;
  /** The image's properties at create when cloned from one (Cinder's volume_image_metadata). */
  imageMetadata: Record<string, string> | undefined;
}

export type { VolumeSnapshot };

const fromAttachment: Record<VolumeAttachmentRef["state"], CinderVolumeStatus> = {
  attaching: "attaching",
  attached: "in-use",
  detaching: "detaching",
};

export function statusOf(volume: Pick<BlockVolume, "status" | "attachment">): CinderVolumeStatus {
  return volume.attachment === undefined ? volume.status : fromAttachment[volume.attachment.state];
}

export function recordOf(volume: BlockVolume): VolumeRecord {
  return {
    id: volume.id,
    userUuid: volume.userUuid,
    name: volume.name,
    sizeGib: volume.sizeGib,
    status: statusOf(volume),
    engineName: volume.engineName,
    bootable: volume.bootable,
  };
}

/** A volume as the API shows it: its record, metadata, attachment and the image it came from. */
export async function volumeDetail(db: MetadataDatabase, volume: BlockVolume, metadata: Record<string, string>): Promise<VolumeDetail> {
  let imageMetadata: Record<string, string> | undefined;
  if (volume.imageId !== null) {
    // Cinder copies these at create; the image is read now (its properties rarely change), and
    // an image deleted since leaves its id.
    const found = await getImage(db, volume.imageId, { viewer: volume.userUuid }).catch(() => undefined);
    imageMetadata = { image_id: volume.imageId };
    if (found !== undefined) {
      const { image } = found;
      imageMetadata = {
        ...image.properties,
        image_id: image.uuid,
        ...(image.name !== null && { image_name: image.name }),
        ...(image.checksum !== null && { checksum: image.checksum }),
        ...(image.diskFormat !== null && { disk_format: image.diskFormat }),
        ...(image.containerFormat !== null && { container_format: image.containerFormat }),
        min_disk: String(image.minDiskGb),
        min_ram: String(image.minRamMb),
      };
    }
  }
  return {
    ...recordOf(volume),
    status: statusOf(volume),
    description: volume.description,
    imageId: volume.imageId,
    snapshotId: volume.snapshotId,
    sourceVolid: volume.sourceVolid,
    createdAt: volume.createdAt,
    updatedAt: volume.updatedAt,
    attachment: volume.attachment,
    metadata,
    imageMetadata,
  };
}
