/**
 * Request bodies and query strings, checked as Cinder's JSON schemas do
 * (cinder/api/schemas/volumes.py, snapshots.py, volume_actions.py, volume_metadata.py;
 * cinder/api/validation/parameter_types.py), with Cinder's wording (validators.py):
 *
 *   Invalid input for field/attribute volume.size. Value: "x". 'x' does not match '^[0-9]+$'
 *
 * Every helper throws a 400 badRequest VolumeError; none lets a wrong type through to the
 * service, so no body, however odd, reaches a 500.
 */
import { VolumeError } from "../errors.ts";

/**
 * Bytes of a request body: oslo.middleware's sizelimit default (max_request_body_size,
 * 112 KiB), as in front of Cinder. The largest body we accept is a create with metadata:
 * 128 items of 255-character keys and values, about 66 KiB of JSON.
 */
export const requestBodyBytesMax = 114688;
/** parameter_types.name_allow_zero_min_length and description: at most 255 characters. */
export const nameLengthMax = 255;
/** parameter_types.extra_specs / metadata: keys of these characters, 1 to 255 of them. */
export const metadataKeyPattern = /^[a-zA-Z0-9\-_:. /]{1,255}$/;
export const metadataValueLengthMax = 255;
/** The most metadata items one volume holds (db/queries/volumes-common.ts volumeMetadataItemsMax). */
export const metadataItemsMax = 128;
/** parameter_types.volume_size's maximum: constants.DB_MAX_INT. */
export const volumeSizeMax = 0x7fffffff;
/** The part of a value quoted back in an error: enough to recognise it, never a whole body. */
const quotedValueLengthMax = 80;

export type JsonObject = Record<string, unknown>;

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A value as an error quotes it, in Python's spelling of JSON scalars. */
export function quote(value: unknown): string {
  let text: string;
  try {
    if (value === undefined || value === null) text = "None";
    else if (value === true) text = "True";
    else if (value === false) text = "False";
    else if (typeof value === "string") text = `'${value}'`;
    else text = JSON.stringify(value) ?? String(value);
  } catch {
    text = "…";
  }
  return text.length > quotedValueLengthMax ? `${text.slice(0, quotedValueLengthMax)}…` : text;
}

export function badRequest(message: string): VolumeError {
  return new VolumeError("EBAD_REQUEST", message);
}

export function invalidField(path: string, value: unknown, reason: string): VolumeError {
  return badRequest(`Invalid input for field/attribute ${path}. Value: ${quote(value)}. ${reason}`);
}

/** The body's one top-level object under `key` (`{"volume": {…}}`); other top-level keys refused unless `alsoAllowed`. */
export function bodyMember(body: unknown, key: string, alsoAllowed: readonly string[] = []): JsonObject {
  if (!isJsonObject(body)) throw badRequest("Malformed request body");
  rejectUnknownKeys(body, new Set([key, ...alsoAllowed]), "");
  const member = body[key];
  if (member === undefined) throw badRequest(`Invalid input for field/attribute ${key}. Value: None. '${key}' is a required property`);
  if (!isJsonObject(member)) throw invalidField(key, member, `${quote(member)} is not of type 'object'`);
  return member;
}

/** additionalProperties: false, naming the first stranger. */
export function rejectUnknownKeys(object: JsonObject, allowed: ReadonlySet<string>, path: string): void {
  const unknown = Object.keys(object).filter((key) => !allowed.has(key));
  if (unknown.length > 0) {
    const names = unknown.map((key) => `'${key.slice(0, quotedValueLengthMax)}'`).join(", ");
    throw badRequest(`Invalid input for field/attribute ${path === "" ? "body" : path}. Additional properties are not allowed (${names} ${unknown.length === 1 ? "was" : "were"} unexpected)`);
  }
}

/**
 * A name or description: a string or null, at most 255 characters after Cinder strips
 * surrounding whitespace (`name_non_mandatory_remove_white_spaces`). Undefined when absent,
 * null when null.
 */
export function readText(object: JsonObject, key: string, path: string): string | null | undefined {
  const value = object[key];
  if (value === undefined || value === null) return value;
  if (typeof value !== "string") throw invalidField(path, value, `${quote(value)} is not of type 'string', 'null'`);
  const trimmed = value.trim();
  if ([...trimmed].length > nameLengthMax) throw invalidField(path, value, `${quote(value)} is too long`);
  if (trimmed.includes("\u0000")) throw invalidField(path, value, "Value contains a NUL character");
  return trimmed;
}

/** `name`, else the v1 spelling `display_name` (Cinder reads both). */
export function readEitherText(object: JsonObject, key: string, legacyKey: string, path: string): string | null | undefined {
  const value = readText(object, key, `${path}.${key}`);
  return value !== undefined ? value : readText(object, legacyKey, `${path}.${legacyKey}`);
}

/** parameter_types.volume_size: an integer or a string of digits, 1 ≤ n ≤ DB_MAX_INT. */
export function readSize(object: JsonObject, key: string, path: string, options: { nullable: boolean }): number | undefined {
  const value = object[key];
  if (value === undefined || (value === null && options.nullable)) return undefined;
  let size: number;
  if (typeof value === "number" && Number.isInteger(value)) size = value;
  else if (typeof value === "string" && /^[0-9]+$/.test(value)) size = Number(value);
  else if (typeof value === "string") throw invalidField(path, value, `${quote(value)} does not match '^[0-9]+$'`);
  else throw invalidField(path, value, `${quote(value)} is not of type 'integer', 'string'${options.nullable ? ", 'null'" : ""}`);
  if (size < 1) throw invalidField(path, value, `${quote(value)} is less than the minimum of 1`);
  if (size > volumeSizeMax) throw invalidField(path, value, `${quote(value)} is greater than the maximum of ${volumeSizeMax}`);
  return size;
}

const uuidPattern = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

/** parameter_types.optional_uuid: a UUID (any case, dashes optional, as oslo reads them) or null; lowercase dashed. */
export function readUuid(object: JsonObject, key: string, path: string): string | undefined {
  const value = object[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" || !uuidPattern.test(value)) throw invalidField(path, value, `${quote(value)} is not a 'uuid'`);
  return canonicalUuid(value);
}

export function canonicalUuid(text: string): string {
  const hex = text.replace(/-/g, "").toLowerCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function isUuidText(text: string): boolean {
  return uuidPattern.test(text);
}

const trueStrings = new Set(["True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes", "y", "t"]);
const falseStrings = new Set(["False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no", "n", "f"]);

/** parameter_types.boolean: true/false or one of oslo's spellings. */
export function readBoolean(object: JsonObject, key: string, path: string, options: { nullable?: boolean } = {}): boolean | undefined {
  const value = object[key];
  if (value === undefined || (value === null && options.nullable === true)) return undefined;
  if (typeof value === "boolean") return value;
  if (typeof value === "string" && trueStrings.has(value)) return true;
  if (typeof value === "string" && falseStrings.has(value)) return false;
  throw invalidField(path, value, `${quote(value)} is not one of [True, 'True', 'TRUE', 'true', '1', 'ON', 'On', 'on', 'YES', 'Yes', 'yes', 'y', 't', False, 'False', 'FALSE', 'false', '0', 'OFF', 'Off', 'off', 'NO', 'No', 'no', 'n', 'f']`);
}

/** A metadata object (parameter_types.metadata_allows_null when `nullable`): Cinder's key pattern, string values ≤ 255. */
export function readMetadata(value: unknown, path: string, options: { nullable?: boolean } = {}): Record<string, string> | undefined {
  if (value === undefined || (value === null && options.nullable === true)) return undefined;
  if (!isJsonObject(value)) throw invalidField(path, value, `${quote(value)} is not of type 'object'${options.nullable === true ? ", 'null'" : ""}`);
  const entries = Object.entries(value);
  if (entries.length > metadataItemsMax) throw badRequest(`Invalid input received: A volume holds at most ${metadataItemsMax} metadata items.`);
  const metadata: Record<string, string> = {};
  for (const [key, item] of entries) {
    if (!metadataKeyPattern.test(key)) throw invalidField(path, value, `Additional properties are not allowed ('${key.slice(0, quotedValueLengthMax)}' was unexpected)`);
    if (typeof item !== "string") throw invalidField(`${path}.${key}`, item, `${quote(item)} is not of type 'string'`);
    if ([...item].length > metadataValueLengthMax) throw invalidField(`${path}.${key}`, item, `${quote(item)} is too long`);
    if (item.includes("\u0000")) throw invalidField(`${path}.${key}`, item, "Value contains a NUL character");
    metadata[key] = item;
  }
  return metadata;
}

/** A query parameter's one value: the last one when repeated, as webob's `params.get` does. */
export function queryValue(query: unknown, key: string): string | undefined {
  if (!isJsonObject(query)) return undefined;
  const value = query[key];
  if (Array.isArray(value)) return value.length === 0 ? undefined : String(value[value.length - 1]);
  return typeof value === "string" ? value : undefined;
}

/** `limit`: a non-negative integer (cinder/api/common.py _get_limit_param's wording). */
export function queryLimit(query: unknown, max: number): number | undefined {
  const text = queryValue(query, "limit");
  if (text === undefined) return undefined;
  if (!/^\s*-?\d+\s*$/.test(text)) throw badRequest("limit param must be an integer");
  const value = Number(text.trim());
  if (value < 0) throw badRequest("limit param must be positive");
  return Math.min(value, max);
}

export interface SortSpec {
  key: string;
  dir: "asc" | "desc";
}

/**
 * Cinder's sort parameters (cinder/api/common.py get_sort_params): `sort=key[:dir][,key…]`,
 * or the older `sort_key` and `sort_dir`, not both. The first key is the one we sort by.
 */
export function querySort(query: unknown): SortSpec | undefined {
  const sort = queryValue(query, "sort");
  const sortKey = queryValue(query, "sort_key");
  const sortDir = queryValue(query, "sort_dir");
  if (sort !== undefined && (sortKey !== undefined || sortDir !== undefined)) {
    throw badRequest("The 'sort_key' and 'sort_dir' parameters are deprecated and cannot be used with the 'sort' parameter.");
  }
  let key: string | undefined;
  let dir: string | undefined;
  if (sort !== undefined) {
    const first = sort.split(",")[0]!.trim();
    [key, dir] = first.split(":").map((part) => part.trim());
  } else {
    key = sortKey;
    dir = sortDir;
  }
  if (key === undefined || key === "") return dir === undefined ? undefined : { key: "created_at", dir: checkDir(dir) };
  return { key, dir: dir === undefined || dir === "" ? "desc" : checkDir(dir) };
}

function checkDir(dir: string): "asc" | "desc" {
  const lowered = dir.toLowerCase();
  if (lowered !== "asc" && lowered !== "desc") throw badRequest(`Invalid input received: Unknown sort direction, must be 'desc' or 'asc'`);
  return lowered;
}
