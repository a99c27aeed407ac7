/**
 * The JSON the volume API answers with (cinder/api/v3/views/volumes.py, api/views/snapshots.py,
 * the tenant-attribute and image-metadata extensions), complete enough for `openstack volume
 * show/list` and `volume snapshot show/list`: OSC pops `metadata` and `volume_type` from every
 * volume it prints (a missing one is a KeyError), and lists `attachments` by `server_id`.
 */
import type { VolumeSnapshot } from "../../../db/index.ts";
import type { VolumeDetail } from "../model.ts";

export interface ApiUrls {
  /** `{base}/volume/v3/{project}`: where list links and next pages point. */
  api: string;
  /** `{base}/volume/{project}`: Cinder's bookmark links. */
  bookmark: string;
}

/** The one volume type (types.ts): what every volume is. */
export const defaultTypeName = "__DEFAULT__";
export const defaultTypeId = "5f6a1b2c-0d3e-4f50-8a6b-7c8d9e0f1a2b";
export const availabilityZone = "nova";

/** Cinder's timestamps: `2026-11-24T04:50:58.000000`, UTC without a zone (oslo's isotime of a naive datetime). */
export function cinderTime(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19)}.${String(ms % 1000).padStart(3, "0")}000`;
}

function links(urls: ApiUrls, collection: string, id: string): Array<{ rel: string; href: string }> {
  return [
    { rel: "self", href: `${urls.api}/${collection}/${id}` },
    { rel: "bookmark", href: `${urls.bookmark}/${collection}/${id}` },
  ];
}

/** The summary form (GET /volumes): id, name, links. */
export function volumeSummary(volume: VolumeDetail, urls: ApiUrls): Record<string, unknown> {
  return { id: volume.id, name: volume.name, links: links(urls, "volumes", volume.id) };
}

export function volumeView(volume: VolumeDetail, urls: ApiUrls): Record<string, unknown> {
  const attachment = volume.attachment;
  return {
    id: volume.id,
    status: volume.status,
    size: volume.sizeGib,
    availability_zone: availabilityZone,
    created_at: cinderTime(volume.createdAt),
    updated_at: cinderTime(volume.updatedAt),
    name: volume.name,
    description: volume.description,
    volume_type: defaultTypeName,
    snapshot_id: volume.snapshotId,
    source_volid: volume.sourceVolid,
    metadata: volume.metadata,
    links: links(urls, "volumes", volume.id),
    user_id: volume.userUuid,
    bootable: volume.bootable ? "true" : "false",
    encrypted: false,
    replication_status: null,
    consistencygroup_id: null,
    multiattach: false,
    // Cinder lists only attachments in state `attached` (views/volumes.py _get_attachments).
    attachments:
      attachment === undefined || attachment.state !== "attached"
        ? []
        : [
            {
              id: volume.id,
              attachment_id: attachment.id,
              volume_id: volume.id,
              server_id: attachment.serverId,
              host_name: null,
              device: attachment.device,
              attached_at: cinderTime(attachment.createdAt),
            },
          ],
    "os-vol-tenant-attr:tenant_id": volume.userUuid,
    ...(volume.imageMetadata !== undefined && { volume_image_metadata: volume.imageMetadata }),
  };
}

export function snapshotView(snapshot: VolumeSnapshot): Record<string, unknown> {
  return {
    id: snapshot.id,
    created_at: cinderTime(snapshot.createdAt),
    updated_at: cinderTime(snapshot.updatedAt),
    name: snapshot.name,
    description: snapshot.description,
    volume_id: snapshot.volumeId,
    status: snapshot.status,
    size: snapshot.sizeGib,
    metadata: {},
    "os-extended-snapshot-attributes:project_id": snapshot.userUuid,
    "os-extended-snapshot-attributes:progress": snapshot.status === "available" ? "100%" : "0%",
  };
}

/** Cinder's `<collection>_links`: a next link with the request's query and the page's last id as marker. */
export function nextLinks(urls: ApiUrls, path: string, query: Record<string, unknown>, marker: string | undefined): Array<{ rel: string; href: string }> | undefined {
  if (marker === undefined) return undefined;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (key === "marker") continue;
    for (const item of Array.isArray(value) ? value : [value]) params.append(key, String(item));
  }
  params.set("marker", marker);
  return [{ rel: "next", href: `${urls.api}/${path}?${params.toString()}` }];
}
