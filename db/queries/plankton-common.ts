/**
 * What the Plankton query files share: the image record, row mapping, input checks and the
 * named limits they apply. Exported from db/index.ts: the record types and the limits.
 */
import type { Selectable } from "kysely";
import { DbError } from "../errors.ts";
import { planktonImageStatuses, type PlanktonImagesTable, type PlanktonImageStatus } from "../schema.ts";
import { checkInteger, checkText } from "./limits.ts";
import type { LocatedObject } from "./pithos-common.ts";

/** Glance's `name` schema: null or at most 255 characters (glance/api/v2/images.py). */
export const imageNameLengthMax = 255;
/** Glance's disk and container format names are short words (`qcow2`, `bare`, `diskdump`). */
export const imageFormatLengthMax = 64;
/** Glance `image_property_quota` default: 128 extra properties per image. */
export const imagePropertiesMax = 128;
/** Glance refuses custom property keys of more than 255 characters (LP #1737952). */
export const imagePropertyKeyLengthMax = 255;
/** Glance stores property values in a TEXT column (MySQL: 65535 bytes). */
export const imagePropertyValueLengthMax = 65_535;
/** Glance `image_tag_quota` default: 128 tags per image, each at most 255 characters. */
export const imageTagsMax = 128;
export const imageTagLengthMax = 255;

/** An image registration (db/schema.ts PlanktonImagesTable), in JavaScript's terms. */
export interface PlanktonImage {
  /** The file's object uuid: the image id. */
  uuid: string;
  name: string | null;
  diskFormat: string | null;
  containerFormat: string | null;
  status: PlanktonImageStatus;
  minDiskGb: number;
  minRamMb: number;
  protected: boolean;
  osHidden: boolean;
  /** MD5 hex of the data as stored, when known. */
  checksum: string | null;
  createdAt: number;
  updatedAt: number;
  properties: Record<string, string>;
  tags: string[];
  owner: string;
  /** Plankton stored the data itself: deleting the image deletes the file. */
  createdByUpload: boolean;
}

/** An image and the file it is: where the file lives now, its current version and sharing. */
export interface ImageWithFile {
  image: PlanktonImage;
  file: LocatedObject;
}

/** The fields a caller may set; everything else is derived. */
export interface ImageFields {
  name?: string | null;
  diskFormat?: string | null;
  containerFormat?: string | null;
  status?: PlanktonImageStatus;
  minDiskGb?: number;
  minRamMb?: number;
  protected?: boolean;
  osHidden?: boolean;
  checksum?: string | null;
  properties?: Record<string, string>;
  tags?: string[];
}

export type ImageRow = Selectable<PlanktonImagesTable>;

export function imageFromRow(row: ImageRow): PlanktonImage {
  return {
    uuid: row.uuid,
    name: row.name,
    diskFormat: row.disk_format,
    containerFormat: row.container_format,
    status: row.status,
    minDiskGb: row.min_disk,
    minRamMb: row.min_ram,
    protected: row.protected === 1,
    osHidden: row.os_hidden === 1,
    checksum: row.checksum,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    properties: JSON.parse(row.properties) as Record<string, string>,
    tags: JSON.parse(row.tags) as string[],
    owner: row.owner,
    createdByUpload: row.created_by_upload === 1,
  };
}

/** The columns of the fields given (undefined ones left out), checked. */
export function checkImageFields(fields: ImageFields): Partial<ImageRow> {
  const row: Partial<ImageRow> = {};
  if (fields.name !== undefined) row.name = checkNullableText("name", fields.name, imageNameLengthMax, { allowEmpty: true });
  if (fields.diskFormat !== undefined) row.disk_format = checkNullableText("diskFormat", fields.diskFormat, imageFormatLengthMax);
  if (fields.containerFormat !== undefined) {
    row.container_format = checkNullableText("containerFormat", fields.containerFormat, imageFormatLengthMax);
  }
  if (fields.status !== undefined) row.status = checkStatus(fields.status);
  if (fields.minDiskGb !== undefined) row.min_disk = checkInteger("minDiskGb", fields.minDiskGb, { min: 0 });
  if (fields.minRamMb !== undefined) row.min_ram = checkInteger("minRamMb", fields.minRamMb, { min: 0 });
  if (fields.protected !== undefined) row.protected = checkFlag("protected", fields.protected);
  if (fields.osHidden !== undefined) row.os_hidden = checkFlag("osHidden", fields.osHidden);
  if (fields.checksum !== undefined) row.checksum = fields.checksum === null ? null : checkMd5(fields.checksum);
  if (fields.properties !== undefined) row.properties = JSON.stringify(checkProperties(fields.properties));
  if (fields.tags !== undefined) row.tags = JSON.stringify(checkTags(fields.tags));
  return row;
}

export function checkStatus(value: unknown): PlanktonImageStatus {
  if (!planktonImageStatuses.includes(value as PlanktonImageStatus)) {
    throw new DbError("EINVALID", `status must be one of ${planktonImageStatuses.join(", ")}`, { status: value });
  }
  return value as PlanktonImageStatus;
}

function checkNullableText(what: string, value: unknown, lengthMax: number, { allowEmpty = false } = {}): string | null {
  if (value === null) return null;
  if (allowEmpty && value === "") return "";
  return checkText(what, value, lengthMax);
}

function checkFlag(what: string, value: unknown): number {
  if (typeof value !== "boolean") throw new DbError("EINVALID", `${what} must be true or false`, { [what]: value });
  return value ? 1 : 0;
}

function checkMd5(value: unknown): string {
  if (typeof value !== "string" || !/^[0-9a-f]{32}$/.test(value)) {
    throw new DbError("EINVALID", "checksum must be 32 lowercase hex digits (MD5)", { checksum: value });
  }
  return value;
}

export function checkProperties(value: unknown): Record<string, string> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new DbError("EINVALID", "properties must be an object of strings", { properties: value });
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > imagePropertiesMax) {
    throw new DbError("EINVALID", `at most ${imagePropertiesMax} properties`, { properties: entries.length });
  }
  for (const [key, item] of entries) {
    checkText("property key", key, imagePropertyKeyLengthMax);
    if (typeof item !== "string" || item.length > imagePropertyValueLengthMax || !item.isWellFormed()) {
      throw new DbError("EINVALID", `property values are strings of at most ${imagePropertyValueLengthMax} characters`, { key });
    }
  }
  return { ...(value as Record<string, string>) };
}

export function checkTags(value: unknown): string[] {
  if (!Array.isArray(value)) throw new DbError("EINVALID", "tags must be a list of strings", { tags: value });
  const tags = [...new Set(value.map((tag: unknown) => checkText("tag", tag, imageTagLengthMax)))];
  if (tags.length > imageTagsMax) throw new DbError("EINVALID", `at most ${imageTagsMax} tags`, { tags: tags.length });
  return tags;
}
