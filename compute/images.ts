/**
 * Nova's image proxy (issue 8: "images, a view of Plankton"): the images a compute caller
 * sees, as ComputeApi records, over PlanktonService. Nothing of its own is stored: an image
 * is a Plankton image (a Pithos+ file), its metadata is the image's properties, and who may
 * see or change it is Plankton's rule, unchanged (gateways/plankton/README.md "Decisions"):
 *
 *   see       its owner, everyone when public, its members when shared (admins too: no more)
 *   change    its owner only: 403 for others who see it, 404 `Image not found.` for the rest
 *
 * Errors are Nova's (nova/api/openstack/compute/images.py, image_metadata.py): the same
 * sentences, as ComputeErrors.
 */
import {
  imageListLimitMax,
  isDbError,
  listImages as listPlanktonImages,
  planktonImageStatuses,
  updateImage,
  type ImageListOptions,
  type ImageWithFile,
  type PlanktonImageStatus,
} from "../db/index.ts";
import { isPlanktonError, type PlanktonService } from "../gateways/plankton/index.ts";
import { ComputeError } from "./errors.ts";
import type { ComputeCaller, Image, ImageListFilter, ImageStatus } from "./model.ts";
import { toComputeError } from "./views.ts";

/** Nova's `metadata_items` quota: properties per image (Glance's image_property_quota is the same 128). */
export const imageMetadataItemsMax = 128;

/** Nova's words for an image the caller does not see (images.py show, delete; image_metadata.py). */
export const imageNotFoundMessage = "Image not found.";

const novaStatuses: Readonly<Record<string, ImageStatus>> = {
  active: "ACTIVE",
  queued: "SAVING",
  saving: "SAVING",
  deleted: "DELETED",
  pending_delete: "DELETED",
  killed: "ERROR",
};
const progressByStatus: Readonly<Record<string, number>> = { queued: 25, saving: 50, active: 100 };

/**
 * Keys that are Glance attributes, not properties: Nova's proxy would send them to Glance as
 * properties, which refuses them (read-only, reserved, or a base attribute of another type).
 */
const glanceAttributes = new Set([
  "id", "name", "status", "visibility", "protected", "os_hidden", "checksum", "owner", "size", "virtual_size",
  "min_ram", "min_disk", "disk_format", "container_format", "created_at", "updated_at", "tags", "self", "file",
  "schema", "direct_url", "locations", "location", "deleted", "deleted_at", "stores", "os_hash_algo", "os_hash_value",
]);

export function imageView({ image, file }: ImageWithFile): Image {
  return {
    id: image.uuid,
    name: image.name,
    status: novaStatuses[image.status] ?? "UNKNOWN",
    progress: progressByStatus[image.status] ?? 0,
    minDiskGiB: image.minDiskGb,
    minRamMiB: image.minRamMb,
    sizeBytes: image.status === "queued" ? null : file.version.sizeBytes,
    metadata: { ...image.properties },
    serverId: image.properties["instance_uuid"] ?? null,
    owner: image.owner,
    createdAt: image.createdAt,
    updatedAt: image.updatedAt,
  };
}

function notFound(cause: unknown): ComputeError {
  return new ComputeError("ENOT_FOUND", imageNotFoundMessage, { cause });
}

/** Plankton's and the database's refusals as Nova's; `forbidden` is Nova's sentence for a 403. */
function toImageError(error: unknown, forbidden: string): unknown {
  if (isPlanktonError(error, "ENOT_FOUND") || isDbError(error, "ENOT_FOUND")) return notFound(error);
  if (isPlanktonError(error, "EFORBIDDEN")) return new ComputeError("EFORBIDDEN", forbidden, { cause: error });
  if (isPlanktonError(error, "EBAD_REQUEST")) return new ComputeError("EBAD_REQUEST", error.message, { cause: error });
  if (isPlanktonError(error, "ECONFLICT")) return new ComputeError("ECONFLICT", error.message, { cause: error });
  return toComputeError(error);
}

async function call<T>(promise: Promise<T>, forbidden = "Access was denied to this resource."): Promise<T> {
  try {
    return await promise;
  } catch (error) {
    throw toImageError(error, forbidden);
  }
}

/** The filters Glance does not apply itself (Nova's proxy passes them as property filters). */
function matches(image: Image, filter: ImageListFilter): boolean {
  return (
    (filter.changesSince === undefined || image.updatedAt >= filter.changesSince) &&
    (filter.serverId === undefined || image.serverId === filter.serverId) &&
    (filter.type === undefined || image.metadata["image_type"] === filter.type) &&
    (filter.minRamMiB === undefined || image.minRamMiB >= filter.minRamMiB) &&
    (filter.minDiskGiB === undefined || image.minDiskGiB >= filter.minDiskGiB)
  );
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Glance's listing (its default order, newest first; os_hidden images left out, as Glance v2
 * lists), page after page until `limit` images pass the filters Glance does not apply.
 */
export async function listImages(plankton: PlanktonService, caller: ComputeCaller, filter: ImageListFilter): Promise<Image[]> {
  if (filter.status !== undefined && !(planktonImageStatuses as readonly string[]).includes(filter.status)) {
    throw new ComputeError("EBAD_REQUEST", `Invalid status value: ${filter.status}`);
  }
  if (filter.marker !== undefined && !uuidPattern.test(filter.marker)) throw new ComputeError("EBAD_REQUEST", `Marker ${filter.marker} could not be found.`);
  const limit = Math.min(filter.limit ?? imageListLimitMax, imageListLimitMax);
  const options: ImageListOptions = {
    limit: imageListLimitMax,
    osHidden: false,
    ...(filter.name !== undefined && { name: filter.name }),
    ...(filter.status !== undefined && { status: filter.status as PlanktonImageStatus }),
  };
  const images: Image[] = [];
  let marker = filter.marker;
  while (images.length < limit) {
    let page;
    try {
      page = await listPlanktonImages(plankton.db, caller.userUuid, { ...options, ...(marker !== undefined && { marker }) });
    } catch (error) {
      if (isDbError(error, "ENOT_FOUND")) throw new ComputeError("EBAD_REQUEST", `Marker ${filter.marker ?? ""} could not be found.`, { cause: error });
      throw toComputeError(error);
    }
    for (const entry of page.images) {
      const image = imageView(entry);
      if (matches(image, filter)) images.push(image);
      if (images.length >= limit) break;
    }
    if (page.nextMarker === undefined) break;
    marker = page.nextMarker;
  }
  return images;
}

export async function getImage(plankton: PlanktonService, caller: ComputeCaller, id: string): Promise<Image> {
  return imageView(await call(plankton.find(id, caller.userUuid)));
}

export async function deleteImage(plankton: PlanktonService, caller: ComputeCaller, id: string): Promise<void> {
  // images.py delete: Glance's 403 becomes Nova's own sentence; a protected image says why.
  const entry = await call(plankton.findOwned(id, caller.userUuid), "You are not allowed to delete the image.");
  if (entry.image.protected) throw new ComputeError("EFORBIDDEN", `Image ${id} is protected and cannot be deleted.`);
  await call(plankton.delete(caller.userUuid, id, { keepFile: false }), "You are not allowed to delete the image.");
}

function checkKeys(metadata: Record<string, string>): void {
  for (const key of Object.keys(metadata)) {
    if (glanceAttributes.has(key) || key.startsWith("os_glance")) throw new ComputeError("EFORBIDDEN", `Attribute '${key}' is reserved by the image service.`);
  }
}

function checkCount(properties: Record<string, string>): void {
  // common.check_img_metadata_properties_quota's answer.
  if (Object.keys(properties).length > imageMetadataItemsMax) throw new ComputeError("EFORBIDDEN", "Image metadata limit exceeded");
}

export async function setImageMetadata(plankton: PlanktonService, caller: ComputeCaller, id: string, metadata: Record<string, string>, replace: boolean): Promise<Record<string, string>> {
  const forbidden = `Not authorized for image ${id}.`;
  const entry = await call(plankton.findOwned(id, caller.userUuid), forbidden);
  checkKeys(metadata);
  // Under the row's lock: a concurrent change to other keys is merged, not lost.
  const updated = await call(
    updateImage(plankton.db, entry.image.uuid, (current) => {
      const properties = replace ? { ...metadata } : { ...current.properties, ...metadata };
      checkCount(properties);
      return { properties };
    }),
    forbidden,
  );
  return updated.properties;
}

export async function deleteImageMetadata(plankton: PlanktonService, caller: ComputeCaller, id: string, key: string): Promise<void> {
  const entry = await call(plankton.findOwned(id, caller.userUuid), `Not authorized for image ${id}.`);
  await call(
    updateImage(plankton.db, entry.image.uuid, (current) => {
      if (!Object.hasOwn(current.properties, key)) throw new ComputeError("ENOT_FOUND", "Invalid metadata key");
      const properties = { ...current.properties };
      delete properties[key];
      return { properties };
    }),
  );
}
