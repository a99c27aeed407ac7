/**
 * Glance v2's JSON (openstack-clients.md 2.2 "IMG fields"): one encoder for an image, the
 * member form, the version document and the schemas the glance CLI filters requests through
 * (2.6). Links inside images and listings are endpoint-relative (`/v2/images/{id}`), as
 * Glance's; version hrefs are absolute with our public base (2.1).
 */
import type { ImageWithFile } from "../../db/index.ts";
import { checksumOf } from "./service.ts";
import { visibilityOf } from "./sharing.ts";

/** Glance's disk formats (glance-api.conf [image_format] defaults) and Plankton's own. */
export const diskFormats = ["ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop", "diskdump", "extdump", "ntfsdump"] as const;
export const containerFormats = ["ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"] as const;

/** timeutils.isotime: `2016-06-29T16:13:07Z`, seconds. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function imageHref(id: string): string {
  return `/v2/images/${id}`;
}

/** An image as Glance v2 shows it: extra properties at the top level, then the base fields. */
export function imageJson({ image, file }: ImageWithFile): Record<string, unknown> {
  const hasData = image.status !== "queued";
  const sizeBytes = hasData ? file.version.sizeBytes : null;
  return {
    ...image.properties,
    id: image.uuid,
    name: image.name,
    status: image.status,
    visibility: visibilityOf(file.object.sharing),
    protected: image.protected,
    os_hidden: image.osHidden,
    checksum: hasData ? checksumOf(file.version) : null,
    os_hash_algo: null,
    os_hash_value: null,
    owner: image.owner,
    size: sizeBytes,
    // A raw image's virtual size is its size; other formats we store as received, unread.
    virtual_size: image.diskFormat === "raw" ? sizeBytes : null,
    min_ram: image.minRamMb,
    min_disk: image.minDiskGb,
    disk_format: image.diskFormat,
    container_format: image.containerFormat,
    created_at: isoTime(image.createdAt),
    updated_at: isoTime(image.updatedAt),
    tags: image.tags,
    self: imageHref(image.uuid),
    file: `${imageHref(image.uuid)}/file`,
    schema: "/v2/schemas/image",
  };
}

/** A member (a grantee of the file's sharing); its status is always `accepted` (sharing.ts). */
export function memberJson({ image }: ImageWithFile, member: string): Record<string, unknown> {
  return {
    image_id: image.uuid,
    member_id: member,
    status: "accepted",
    created_at: isoTime(image.createdAt),
    updated_at: isoTime(image.updatedAt),
    schema: "/v2/schemas/member",
  };
}

/**
 * GET /image and /image/versions. v2.7 is the last minor version whose every call we serve
 * (os_hidden); later ones add interoperable import and multiple stores.
 */
export function versionsDocument(imageBaseUrl: string): unknown {
  const v2 = `${imageBaseUrl}/v2/`;
  return {
    versions: [
      { id: "v2.7", status: "CURRENT", links: [{ rel: "self", href: v2 }] },
      { id: "v2.0", status: "SUPPORTED", links: [{ rel: "self", href: v2 }] },
      { id: "v1.0", status: "DEPRECATED", links: [{ rel: "self", href: `${imageBaseUrl}/v1/` }] },
    ],
  };
}

const uuidPattern = "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$";

/** Glance's image schema (glance/api/v2/images.py get_base_properties), for our formats. */
export function imageSchema(): Record<string, unknown> {
  const readOnly = (type: unknown, description: string, extra: Record<string, unknown> = {}) => ({ type, readOnly: true, description, ...extra });
  return {
    name: "image",
    additionalProperties: { type: "string" },
    links: [
      { rel: "self", href: "{self}" },
      { rel: "enclosure", href: "{file}" },
      { rel: "describedby", href: "{schema}" },
    ],
    properties: {
      id: { type: "string", description: "An identifier for the image", pattern: uuidPattern },
      name: { type: ["null", "string"], description: "Descriptive name for the image", maxLength: 255 },
      status: readOnly("string", "Status of the image", {
        enum: ["queued", "saving", "active", "killed", "deleted", "uploading", "importing", "pending_delete", "deactivated"],
      }),
      visibility: { type: "string", description: "Scope of image accessibility", enum: ["community", "public", "private", "shared"] },
      protected: { type: "boolean", description: "If true, image will not be deletable." },
      os_hidden: { type: "boolean", description: "If true, image will not appear in default image list response." },
      checksum: readOnly(["null", "string"], "md5 hash of image contents.", { maxLength: 32 }),
      os_hash_algo: readOnly(["null", "string"], "Algorithm to calculate the os_hash_value", { maxLength: 64 }),
      // 128, not glanceclient's bundled 32: a sha512 hex digest is 128 characters (openstack-clients.md 2.6).
      os_hash_value: readOnly(["null", "string"], "Hexdigest of the image contents using the algorithm specified by the os_hash_algo", { maxLength: 128 }),
      owner: { type: ["null", "string"], description: "Owner of the image", maxLength: 255 },
      size: readOnly(["null", "integer"], "Size of image file in bytes"),
      virtual_size: readOnly(["null", "integer"], "Virtual size of image in bytes"),
      container_format: { type: ["null", "string"], description: "Format of the container", enum: [null, ...containerFormats] },
      disk_format: { type: ["null", "string"], description: "Format of the disk", enum: [null, ...diskFormats] },
      created_at: readOnly("string", "Date and time of image registration"),
      updated_at: readOnly("string", "Date and time of the last image modification"),
      tags: { type: "array", description: "List of strings related to the image", items: { type: "string", maxLength: 255 } },
      direct_url: readOnly("string", "URL to access the image file kept in external store"),
      min_ram: { type: "integer", description: "Amount of ram (in MB) required to boot image." },
      min_disk: { type: "integer", description: "Amount of disk space (in GB) required to boot image." },
      self: readOnly("string", "An image self url"),
      file: readOnly("string", "An image file url"),
      stores: readOnly("string", "Store in which image data resides."),
      schema: readOnly("string", "An image schema url"),
      locations: {
        type: "array",
        description: "A set of URLs to access the image file kept in external store",
        items: { type: "object", properties: { url: { type: "string", maxLength: 255 }, metadata: { type: "object" } }, required: ["url", "metadata"] },
      },
    },
  };
}

export function imagesSchema(): Record<string, unknown> {
  return {
    name: "images",
    properties: {
      images: { type: "array", items: imageSchema() },
      schema: { type: "string" },
      first: { type: "string" },
      next: { type: "string" },
    },
    links: [
      { rel: "first", href: "{first}" },
      { rel: "next", href: "{next}" },
      { rel: "describedby", href: "{schema}" },
    ],
  };
}

export function memberSchema(): Record<string, unknown> {
  return {
    name: "member",
    properties: {
      created_at: { type: "string", description: "Date and time of image member creation" },
      image_id: { type: "string", description: "An identifier for the image", pattern: uuidPattern },
      member_id: { type: "string", description: "An identifier for the image member (tenantId)" },
      status: { type: "string", description: "The status of this image member", enum: ["pending", "accepted", "rejected"] },
      updated_at: { type: "string", description: "Date and time of last modification of image member" },
      schema: { type: "string", readOnly: true },
    },
  };
}

export function membersSchema(): Record<string, unknown> {
  return {
    name: "members",
    properties: { members: { type: "array", items: memberSchema() }, schema: { type: "string" } },
    links: [{ rel: "describedby", href: "{schema}" }],
  };
}
