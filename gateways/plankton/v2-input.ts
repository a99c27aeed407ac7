/**
 * Glance v2 request bodies: the create document and the JSON patch (RFC 6902, media type
 * `application/openstack-images-v2.1-json-patch`), checked as glance/api/v2/images.py
 * RequestDeserializer does:
 *
 *   read-only attribute (status, size, checksum…)   403 "Attribute 'x' is read-only."
 *   reserved (location, deleted, os_glance*)        403 "Attribute 'x' is reserved."
 *   malformed operation or value                    400
 *   replace/remove of a property that is not there  409 "Property x does not exist."
 *   remove of a base attribute                      403 "Property x may not be removed."
 *
 * OSC sends `add` for everything, also for attributes that exist: RFC 6902 "add" on an
 * existing member replaces it (openstack-clients.md 2.2), and so do we.
 */
import { imageNameLengthMax, imagePropertyKeyLengthMax, type ImageFields, type PlanktonImage } from "../../db/index.ts";
import { PlanktonError } from "./errors.ts";
import { visibilities, type Visibility } from "./sharing.ts";
import { containerFormats, diskFormats } from "./v2-format.ts";

const disallowed = new Set(["direct_url", "self", "file", "schema", "stores"]);
const readOnly = new Set(["created_at", "updated_at", "status", "checksum", "size", "virtual_size", "os_hash_algo", "os_hash_value", ...disallowed]);
const reserved = new Set(["location", "deleted", "deleted_at"]);
const reservedPrefix = "os_glance";
const baseAttributes = new Set(["name", "disk_format", "container_format", "min_disk", "min_ram", "protected", "os_hidden", "visibility", "tags", "owner", "id"]);

export interface ImageRequest {
  fields: ImageFields & { uuid?: string };
  visibility?: Visibility;
}

function readOnlyError(key: string): PlanktonError {
  return new PlanktonError("EFORBIDDEN", `Attribute '${key}' is read-only.`);
}

function checkKeyAllowed(key: string, { idAllowed }: { idAllowed: boolean }): void {
  if (readOnly.has(key) || (key === "id" && !idAllowed) || key === "locations") throw readOnlyError(key);
  if (reserved.has(key) || key.startsWith(reservedPrefix)) throw new PlanktonError("EFORBIDDEN", `Attribute '${key}' is reserved.`);
}

function invalid(key: string, value: unknown, expected: string): PlanktonError {
  return new PlanktonError("EBAD_REQUEST", `Provided object does not match schema 'image': ${JSON.stringify(value)} is not valid under ${key} (${expected})`);
}

/** Sets one base attribute on `request`, checking its value as Glance's schema does. */
function setBase(request: ImageRequest, key: string, value: unknown, caller: string): void {
  const { fields } = request;
  switch (key) {
    case "id":
      if (typeof value !== "string" || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)) throw invalid(key, value, "a UUID");
      fields.uuid = value.toLowerCase();
      return;
    case "name":
      if (value !== null && (typeof value !== "string" || value.length > imageNameLengthMax)) throw invalid(key, value, `null or a string of at most ${imageNameLengthMax} characters`);
      fields.name = value;
      return;
    case "disk_format":
    case "container_format": {
      const allowed: readonly string[] = key === "disk_format" ? diskFormats : containerFormats;
      if (value !== null && (typeof value !== "string" || !allowed.includes(value))) throw invalid(key, value, `one of ${allowed.join(", ")}`);
      if (key === "disk_format") fields.diskFormat = value;
      else fields.containerFormat = value;
      return;
    }
    case "min_disk":
    case "min_ram":
      if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) throw invalid(key, value, "a non-negative integer");
      if (key === "min_disk") fields.minDiskGb = value;
      else fields.minRamMb = value;
      return;
    case "protected":
    case "os_hidden":
      if (typeof value !== "boolean") throw invalid(key, value, "a boolean");
      if (key === "protected") fields.protected = value;
      else fields.osHidden = value;
      return;
    case "visibility":
      if (value === "community") throw new PlanktonError("EBAD_REQUEST", "Community images are not supported: use public or shared.");
      if (!visibilities.includes(value as Visibility)) throw invalid(key, value, "one of public, private, shared");
      request.visibility = value as Visibility;
      return;
    case "tags":
      if (!Array.isArray(value) || !value.every((tag) => typeof tag === "string" && tag.length <= 255)) throw invalid(key, value, "a list of strings");
      fields.tags = value as string[];
      return;
    case "owner":
      // Only an administrator may give an image away in Glance; we have none.
      if (value !== caller) throw new PlanktonError("EFORBIDDEN", `You are not permitted to create or modify images owned by '${String(value)}'.`);
      return;
  }
  throw new Error(`setBase: ${key} is not a base attribute`);
}

function checkProperty(key: string, value: unknown): string {
  if (key.length > imagePropertyKeyLengthMax) throw new PlanktonError("EBAD_REQUEST", "Custom property should not be greater than 255 characters.");
  if (typeof value !== "string") throw invalid(key, value, "a string (extra properties are strings)");
  return value;
}

/** POST /v2/images: base attributes, and every other key an extra (string) property. */
export function parseCreateBody(body: unknown, caller: string): ImageRequest {
  if (body === undefined || body === null) throw new PlanktonError("EBAD_REQUEST", "Body expected in request.");
  if (typeof body !== "object" || Array.isArray(body)) throw new PlanktonError("EBAD_REQUEST", "The image must be a JSON object.");
  const request: ImageRequest = { fields: {} };
  const properties: Record<string, string> = {};
  for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
    checkKeyAllowed(key, { idAllowed: true });
    if (baseAttributes.has(key)) setBase(request, key, value, caller);
    else properties[key] = checkProperty(key, value);
  }
  request.fields.properties = properties;
  return request;
}

export interface PatchOperation {
  op: "add" | "replace" | "remove";
  /** The one member the pointer names (`/name` → `name`, `~1` and `~0` decoded). */
  key: string;
  value?: unknown;
}

const operations = ["add", "replace", "remove"] as const;

/** PATCH body → operations; structure, pointers and read-only/reserved names checked. */
export function parsePatch(body: unknown): PatchOperation[] {
  if (!Array.isArray(body)) throw new PlanktonError("EBAD_REQUEST", "Request body must be a JSON array of operation objects.");
  return body.map((raw: unknown) => {
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new PlanktonError("EBAD_REQUEST", "Operations must be JSON objects.");
    const { op, path } = raw as { op?: unknown; path?: unknown };
    if (!operations.includes(op as PatchOperation["op"])) {
      throw new PlanktonError("EBAD_REQUEST", `Invalid operation: \`${String(op)}\`. It must be one of the following: add, remove, replace.`);
    }
    if (typeof path !== "string") throw new PlanktonError("EBAD_REQUEST", "Unable to find 'path' in JSON Schema change");
    const key = decodePointer(path);
    checkKeyAllowed(key, { idAllowed: false });
    if (op === "remove") return { op, key };
    if (!("value" in raw)) throw new PlanktonError("EBAD_REQUEST", `Operation "${String(op)}" requires a member named "value".`);
    return { op: op as PatchOperation["op"], key, value: (raw as { value: unknown }).value };
  });
}

/** A JSON pointer naming one member: `/x` (glance _validate_json_pointer, one level deep). */
function decodePointer(pointer: string): string {
  if (!pointer.startsWith("/")) throw new PlanktonError("EBAD_REQUEST", `Pointer \`${pointer}\` does not start with "/".`);
  if (/~[^01]/.test(pointer) || pointer.endsWith("~")) throw new PlanktonError("EBAD_REQUEST", `Pointer \`${pointer}\` contains "~" not part of a recognized escape sequence.`);
  const parts = pointer.slice(1).split("/");
  if (parts.length !== 1 || parts[0] === "") throw new PlanktonError("EBAD_REQUEST", `Invalid JSON pointer for this resource: '${pointer}'`);
  return parts[0]!.replaceAll("~1", "/").replaceAll("~0", "~");
}

/**
 * The operations applied, in order, to `image`: the field changes and, if asked, the new
 * visibility (applied to the file's sharing by the caller). Runs under the image's row lock.
 */
export function applyPatch(image: PlanktonImage, operations: readonly PatchOperation[], caller: string): ImageRequest {
  const request: ImageRequest = { fields: {} };
  const properties = { ...image.properties };
  for (const { op, key, value } of operations) {
    if (baseAttributes.has(key)) {
      if (op === "remove") throw new PlanktonError("EFORBIDDEN", `Property ${key} may not be removed.`);
      if ((key === "disk_format" || key === "container_format") && image.status !== "queued") {
        throw new PlanktonError("EFORBIDDEN", `Attribute ${key} can be only replaced for a queued image.`);
      }
      setBase(request, key, value, caller);
      continue;
    }
    if (op !== "add" && !(key in properties)) throw new PlanktonError("ECONFLICT", `Property ${key} does not exist.`);
    if (op === "remove") delete properties[key];
    else properties[key] = checkProperty(key, value);
  }
  request.fields.properties = properties;
  return request;
}
