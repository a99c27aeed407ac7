/**
 * Request bodies and query strings, checked as Nova's JSON schemas do
 * (nova/api/openstack/compute/schemas, parameter_types.py), with Nova's wording:
 *
 *   Invalid input for field/attribute server.name. Value: 1. 1 is not of type 'string'
 *
 * Every helper throws a 400 badRequest ComputeError; none lets a wrong type through to the
 * service, so no body, however odd, reaches a 500.
 */
import { ComputeError } from "../errors.ts";

/**
 * Bytes of a request body: Nova's max_request_body_size (oslo.middleware sizelimit, 112 KiB),
 * which holds the largest body it accepts, a create with 64 KiB of base64 user_data.
 */
export const requestBodyBytesMax = 114688;
/** Server, keypair, image and metadata names: parameter_types.name's maxLength. */
export const nameLengthMax = 255;
/** Nova's metadata schema: keys 1–255 of these characters, values up to 255. */
export const metadataKeyPattern = /^[a-zA-Z0-9\-_:. ]{1,255}$/;
export const metadataValueLengthMax = 255;
/** Nova's default metadata_items quota (nova/conf/quota.py): items per server or image. */
export const metadataItemsMax = 128;
/** The part of a value quoted back in an error: enough to recognise it, never a whole body. */
const quotedValueLengthMax = 80;

export type JsonObject = Record<string, unknown>;

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A value as an error quotes it; JSON.stringify recurses, so a deeply nested body gets "…". */
export function quote(value: unknown): string {
  let text: string;
  try {
    text = value === undefined ? "None" : (JSON.stringify(value) ?? String(value));
  } catch {
    text = "…";
  }
  return text.length > quotedValueLengthMax ? `${text.slice(0, quotedValueLengthMax)}…` : text;
}

export function invalidField(path: string, value: unknown, reason: string): ComputeError {
  return new ComputeError("EBAD_REQUEST", `Invalid input for field/attribute ${path}. Value: ${quote(value)}. ${reason}`);
}

/** The body's one top-level object under `key` (`{"server": {…}}`). */
export function bodyMember(body: unknown, key: string): JsonObject {
  if (!isJsonObject(body)) throw new ComputeError("EBAD_REQUEST", "Malformed request body: a JSON object is required.");
  const member = body[key];
  if (member === undefined) throw new ComputeError("EBAD_REQUEST", `Invalid input for field/attribute ${key}. Value: None. '${key}' is a required property`);
  if (!isJsonObject(member)) throw invalidField(key, member, `${quote(member)} is not of type 'object'`);
  return member;
}

/** Nova's schemas say additionalProperties: false; so do we, naming the first stranger. */
export function rejectUnknownKeys(object: JsonObject, allowed: ReadonlySet<string>): void {
  const unknown = Object.keys(object).filter((key) => !allowed.has(key));
  if (unknown.length > 0) {
    throw new ComputeError("EBAD_REQUEST", `Additional properties are not allowed (${unknown.map((key) => `'${key.slice(0, quotedValueLengthMax)}'`).join(", ")} ${unknown.length === 1 ? "was" : "were"} unexpected)`);
  }
}

export interface StringRule {
  required?: boolean;
  minLength?: number;
  maxLength?: number;
  /** parameter_types.name: no leading or trailing whitespace, no control characters. */
  name?: boolean;
}

// eslint-disable-next-line no-control-regex -- control characters are what it finds
const controlCharacters = /[\u0000-\u001f\u007f]/;

export function readString(object: JsonObject, key: string, path: string, rule: StringRule & { required: true }): string;
export function readString(object: JsonObject, key: string, path: string, rule?: StringRule): string | undefined;
export function readString(object: JsonObject, key: string, path: string, rule: StringRule = {}): string | undefined {
  const value = object[key];
  if (value === undefined) {
    if (rule.required === true) throw invalidField(path, value, `'${key}' is a required property`);
    return undefined;
  }
  if (typeof value !== "string") throw invalidField(path, value, `${quote(value)} is not of type 'string'`);
  const length = [...value].length;
  if (rule.minLength !== undefined && length < rule.minLength) throw invalidField(path, value, `${quote(value)} is too short`);
  if (rule.maxLength !== undefined && length > rule.maxLength) throw invalidField(path, value, `${quote(value)} is too long`);
  if (rule.name === true && (value.trim() !== value || controlCharacters.test(value))) {
    throw invalidField(path, value, "Value has leading or trailing whitespace, or control characters");
  }
  return value;
}

/**
 * An id reference (`imageRef`, `flavorRef`): a string, an integer (flavor ids), or an href
 * whose last path segment is the id, as Nova accepts (common.get_id_from_href).
 */
export function readReference(object: JsonObject, key: string, path: string): string {
  const value = object[key];
  let text: string;
  if (typeof value === "number" && Number.isSafeInteger(value)) text = String(value);
  else if (typeof value === "string") text = value;
  else if (value === undefined) throw invalidField(path, value, `'${key}' is a required property`);
  else throw invalidField(path, value, `${quote(value)} is not of type 'string', 'integer'`);
  const id = text.replace(/\/+$/, "").split("/").pop() ?? "";
  if (id === "" || id.length > nameLengthMax) throw invalidField(path, value, `${quote(value)} is not a valid reference`);
  return id;
}

/** A metadata object: Nova's key pattern, string values up to 255, at most 128 items. */
export function readMetadata(value: unknown, path: string): Record<string, string> {
  if (!isJsonObject(value)) throw invalidField(path, value, `${quote(value)} is not of type 'object'`);
  const entries = Object.entries(value);
  if (entries.length > metadataItemsMax) {
    throw new ComputeError("EFORBIDDEN", `Quota exceeded for metadata items: at most ${metadataItemsMax} are allowed.`);
  }
  const metadata: Record<string, string> = {};
  for (const [key, item] of entries) {
    if (!metadataKeyPattern.test(key)) throw invalidField(path, key, `Additional properties are not allowed ('${key.slice(0, quotedValueLengthMax)}' was unexpected)`);
    if (typeof item !== "string") throw invalidField(`${path}.${key}`, item, `${quote(item)} is not of type 'string'`);
    if ([...item].length > metadataValueLengthMax) throw invalidField(`${path}.${key}`, item, `${quote(item)} is too long`);
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

/** A non-negative integer query parameter (`limit`, `minRam`), Nova's messages. */
export function queryNonNegativeInteger(query: unknown, key: string): number | undefined {
  const text = queryValue(query, key);
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text.trim())) throw new ComputeError("EBAD_REQUEST", `${key} param must be an integer`);
  const value = Number(text.trim());
  if (!Number.isSafeInteger(value)) throw new ComputeError("EBAD_REQUEST", `${key} param is too large`);
  return value;
}

/**
 * Python literals in query strings (openstack-clients.md pitfall 16): `True`, `False`, `None`,
 * and oslo's other spellings (strutils.bool_from_string, strict). None means "not given".
 */
export function queryPythonBoolean(query: unknown, key: string): boolean | null | undefined {
  const text = queryValue(query, key);
  if (text === undefined) return undefined;
  const lowered = text.trim().toLowerCase();
  if (lowered === "none") return null;
  if (["1", "t", "true", "on", "y", "yes"].includes(lowered)) return true;
  if (["0", "f", "false", "off", "n", "no"].includes(lowered)) return false;
  throw new ComputeError("EBAD_REQUEST", `Invalid ${key} filter [${text.slice(0, quotedValueLengthMax)}]`);
}

/** ISO 8601 (`2026-11-24T04:50:58Z`, with or without zone or fraction) to epoch ms. */
export function queryTimestamp(query: unknown, key: string): number | undefined {
  const text = queryValue(query, key);
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  // Without a zone, Nova (timeutils.normalize_time) reads the time as UTC.
  const zoned = /(?:Z|[+-]\d{2}:?\d{2})$/i.test(trimmed) ? trimmed : `${trimmed}Z`;
  const ms = /^\d{4}-\d{2}-\d{2}/.test(trimmed) ? Date.parse(zoned.replace(" ", "T")) : NaN;
  if (Number.isNaN(ms)) throw new ComputeError("EBAD_REQUEST", `Invalid input for query parameters ${key}. Value: ${text.slice(0, quotedValueLengthMax)}. It is not a valid date-time`);
  return ms;
}
