/**
 * Plankton v1's wire forms (synnefo.md C; synnefo plankton/views.py): image fields in
 * `X-Image-Meta-*` headers both ways, and the JSON of the listings.
 *
 *   X-Image-Meta-Name: Debian%20Base          name and property values URL-quoted (UTF-8)
 *   X-Image-Meta-Property-OSFAMILY: linux     key lower-cased, punctuation → `_` on the way in;
 *                                             `_` → `-` on the way out (`…-Property-Osfamily`)
 *   X-Image-Meta-Status: AVAILABLE            AVAILABLE │ SAVING │ ERROR │ DELETED
 *   X-Image-Meta-Is-Public: True              Python's str(bool)
 *   X-Image-Meta-Created-At: 2024-01-02 03:04:05   UTC, seconds
 *
 * Checksum is the file's Pithos+ hash (its Merkle root, X-Object-Hash), as Plankton had it.
 */
import type { FastifyRequest } from "fastify";
import type { ImageWithFile, PlanktonImageStatus } from "../../db/index.ts";
import { pythonQuote } from "../pithos/wire/errors.ts";
import { PlanktonError } from "./errors.ts";
import { visibilityOf } from "./sharing.ts";

const metaPrefix = "x-image-meta-";
const propertyPrefix = "x-image-meta-property-";
/** Python's string.punctuation: Plankton's normalize() turns each into `_`. */
const punctuation = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/g;

export interface V1Params {
  /** Base fields by their normalized names (`disk_format`…), values decoded. */
  fields: Record<string, string>;
  properties: Record<string, string>;
}

/** Node hands header values over as latin1 strings of the bytes sent: back to UTF-8 text. */
function headerText(value: string): string {
  return Buffer.from(value, "latin1").toString("utf8");
}

function unquote(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new PlanktonError("EBAD_REQUEST", "Could not decode request as UTF-8 string");
  }
}

function normalize(key: string): string {
  return key.replace(punctuation, "_").toLowerCase();
}

/** The request's X-Image-Meta-* headers (synnefo views.py headers_to_image_params). */
export function paramsOf(request: FastifyRequest): V1Params {
  const params: V1Params = { fields: {}, properties: {} };
  for (const [name, raw] of Object.entries(request.headers)) {
    if (!name.startsWith(metaPrefix) || raw === undefined) continue;
    const value = headerText(Array.isArray(raw) ? raw.join(",") : raw);
    if (name.startsWith(propertyPrefix)) {
      params.properties[normalize(unquote(name.slice(propertyPrefix.length)))] = unquote(value);
    } else {
      const key = normalize(name.slice(metaPrefix.length));
      params.fields[key] = key === "name" ? unquote(value) : value;
    }
  }
  return params;
}

const v1Statuses: Record<PlanktonImageStatus, string> = { queued: "SAVING", saving: "SAVING", active: "AVAILABLE", killed: "ERROR", deleted: "DELETED" };

/** `ACTIVE`/`available`… as a filter value → our status (undefined: matches nothing we have). */
export function statusFilterOf(value: string): PlanktonImageStatus | undefined {
  const lowered = value.toLowerCase();
  const byName: Record<string, PlanktonImageStatus> = { available: "active", active: "active", saving: "saving", queued: "queued", error: "killed", killed: "killed", deleted: "deleted" };
  return byName[lowered];
}

export function locationOf({ file }: ImageWithFile): string {
  return `pithos://${file.account}/${file.containerName}/${file.path}`;
}

/** `2024-01-02 03:04:05` (Plankton's strftime('%Y-%m-%d %H:%M:%S', gmtime(t))). */
function plankonTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace("T", " ");
}

/** The image's fields as Plankton's listings name them (views.py DETAIL_FIELDS). */
export function v1Detail(entry: ImageWithFile): Record<string, unknown> {
  const { image, file } = entry;
  return {
    id: image.uuid,
    name: image.name ?? "",
    status: v1Statuses[image.status],
    disk_format: image.diskFormat ?? "",
    container_format: image.containerFormat ?? "",
    size: file.version.sizeBytes,
    checksum: file.version.contentHash,
    location: locationOf(entry),
    created_at: plankonTime(image.createdAt),
    updated_at: plankonTime(image.updatedAt),
    deleted_at: "",
    is_public: visibilityOf(file.object.sharing) === "public",
    owner: image.owner,
    properties: image.properties,
  };
}

/** views.py LIST_FIELDS. */
export function v1Summary(entry: ImageWithFile): Record<string, unknown> {
  const { id, name, status, disk_format, container_format, size } = v1Detail(entry);
  return { id, name, status, disk_format, container_format, size };
}

/** views.py _create_image_response: every detail field as an X-Image-Meta-* header. */
export function v1Headers(entry: ImageWithFile): Record<string, string> {
  const detail = v1Detail(entry);
  const headers: Record<string, string> = {};
  for (const [key, value] of Object.entries(detail)) {
    if (key === "properties") continue;
    const text = key === "is_public" ? (value === true ? "True" : "False") : String(value);
    headers[`${metaPrefix}${key.replaceAll("_", "-")}`] = key === "name" ? pythonQuote(text) : text;
  }
  for (const [key, value] of Object.entries(entry.image.properties)) {
    headers[`${propertyPrefix}${pythonQuote(key.replaceAll("_", "-"))}`] = pythonQuote(value);
  }
  return headers;
}

/** `pithos://ACCOUNT/CONTAINER/PATH` → its parts (plankton backend.py split_location). */
export function parseLocation(location: string): { account: string; container: string; path: string } {
  const match = /^pithos:\/\/([^/]+)\/([^/]+)\/(.+)$/.exec(location);
  if (match === null) throw new PlanktonError("EBAD_REQUEST", `Invalid location '${location}'`);
  return { account: match[1]!, container: match[2]!, path: match[3]! };
}
