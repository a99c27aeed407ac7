/**
 * User metadata: `X-<Scope>-Meta-<Name>: value` in, the same out (swift.md 3-5; synnefo.md B.1).
 *
 * Names: HTTP header names are case-insensitive and Node lower-cases them, so a name's case
 * cannot survive the trip anyway. We store and return names the way Swift returns them,
 * Python-title-cased (`x-object-meta-mtime` → `Mtime`, `foo_bar` → `Foo-Bar`; header-text.ts),
 * which is also close to Pithos+'s "underscores become dashes, words capitalised". So
 * `X-Object-Meta-FOO` and `x-object-meta-foo` are the same item.
 *
 * Values are UTF-8 text (header-text.ts): non-ASCII bytes are decoded on the way in and encoded
 * on the way out, so they round-trip byte for byte. Bytes that are not UTF-8 are refused with
 * "Metadata must be valid UTF-8" for every scope; Swift refuses them only for accounts and
 * containers and stores object values as raw bytes, which we cannot keep as text.
 *
 * Removal: an empty value or `X-Remove-<Scope>-Meta-<Name>` (any value) removes the item.
 * Limits and error sentences are constraints.py check_metadata's (and db.py validate_metadata's
 * for the merged total), counted in UTF-8 bytes as Swift counts its WSGI strings.
 */
import { PithosError, plainContentType } from "./errors.ts";
import { decodeHeaderText, encodeHeaderText, titleCaseHeaderName, utf8ByteLength, type IncomingHeaders } from "./header-text.ts";
import { maxHeaderBytes, maxMetaCount, maxMetaNameBytes, maxMetaOverallBytes, maxMetaValueBytes } from "./info.ts";

export type MetadataScope = "account" | "container" | "object";

/** Title-cased name (without the `X-<Scope>-Meta-` prefix) → value text. */
export type Metadata = Record<string, string>;

export interface MetadataChanges {
  /** Items the request sets, non-empty values. */
  set: Metadata;
  /** Names the request removes (empty value or X-Remove-…). */
  remove: string[];
}

/** 400 with the sentence Swift gives, as text/plain like constraints.py does. */
export class MetadataError extends PithosError {
  constructor(message: string) {
    super("EBAD_REQUEST", message, { contentType: plainContentType });
    this.name = "MetadataError";
  }
}

function metaPrefix(scope: MetadataScope): string {
  return `x-${scope}-meta-`;
}

/**
 * The metadata a request's headers set and remove, checked against /info's limits as Swift's
 * check_metadata checks a request: each name and value, the count and the total of the items
 * the request sends (empty values included). Also Swift's check of every header's length.
 */
export function parseMetadataHeaders(scope: MetadataScope, headers: IncomingHeaders): MetadataChanges {
  const prefix = metaPrefix(scope);
  const removePrefix = `x-remove-${scope}-meta-`;
  const changes: MetadataChanges = { set: {}, remove: [] };
  let count = 0;
  let totalBytes = 0;
  for (const [lowerName, rawValue] of Object.entries(headers)) {
    if (rawValue === undefined) continue;
    const raw = Array.isArray(rawValue) ? rawValue.join(", ") : rawValue;
    // Node's strings are one character per byte here, so length is the byte count.
    if (raw.length > maxHeaderBytes) throw new MetadataError(`Header value too long: ${titleCaseHeaderName(lowerName).slice(0, maxMetaNameBytes)}`);
    const name = lowerName.toLowerCase();
    if (name.startsWith(removePrefix)) {
      const key = name.slice(removePrefix.length);
      if (key !== "") changes.remove.push(titleCaseHeaderName(key));
      continue;
    }
    if (!name.startsWith(prefix)) continue;
    const key = titleCaseHeaderName(name.slice(prefix.length));
    if (key === "") throw new MetadataError("Metadata name cannot be empty");
    const value = decodeHeaderText(raw);
    if (value === undefined || value.includes("\0")) throw new MetadataError("Metadata must be valid UTF-8");
    const nameBytes = utf8ByteLength(key);
    const valueBytes = utf8ByteLength(value);
    count++;
    totalBytes += nameBytes + valueBytes;
    if (nameBytes > maxMetaNameBytes) throw new MetadataError(`Metadata name too long: ${prefix}${key}`);
    if (valueBytes > maxMetaValueBytes) throw new MetadataError(`Metadata value longer than ${maxMetaValueBytes}: ${prefix}${key}`);
    if (count > maxMetaCount) throw new MetadataError(`Too many metadata items; max ${maxMetaCount}`);
    if (totalBytes > maxMetaOverallBytes) throw new MetadataError(`Total metadata too large; max ${maxMetaOverallBytes}`);
    if (value === "") changes.remove.push(key);
    else changes.set[key] = value;
  }
  return changes;
}

/**
 * The metadata after a request. `replace`: exactly what the request sets (Swift object POST,
 * which drops every item not re-sent, swift.md 5; Pithos+ POST without `?update`). `merge`: the
 * existing items, minus removals, plus the request's (Swift account/container POST; Pithos+
 * `?update`). The result is checked as a whole (db.py validate_metadata): count and total size.
 */
export function applyMetadata(existing: Metadata, changes: MetadataChanges, mode: "replace" | "merge"): Metadata {
  const result: Metadata = {};
  if (mode === "merge") {
    for (const [name, value] of Object.entries(existing)) result[titleCaseHeaderName(name)] = value;
    for (const name of changes.remove) delete result[name];
  }
  Object.assign(result, changes.set);
  checkMetadataTotals(result);
  return result;
}

function checkMetadataTotals(meta: Metadata): void {
  const entries = Object.entries(meta);
  if (entries.length > maxMetaCount) throw new MetadataError(`Too many metadata items; max ${maxMetaCount}`);
  const totalBytes = entries.reduce((sum, [name, value]) => sum + utf8ByteLength(name) + utf8ByteLength(value), 0);
  if (totalBytes > maxMetaOverallBytes) throw new MetadataError(`Total metadata too large; max ${maxMetaOverallBytes}`);
}

/**
 * Response headers for stored metadata: `X-Object-Meta-Mtime: …`, values encoded so that Node
 * writes their UTF-8 bytes (send a Buffer body with them, header-text.ts). Empty values are
 * not sent (they mean "removed").
 */
export function metadataHeaders(scope: MetadataScope, meta: Metadata): Record<string, string> {
  const headerPrefix = `X-${titleCaseHeaderName(scope)}-Meta-`;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(meta)) {
    if (value !== "") headers[`${headerPrefix}${titleCaseHeaderName(name)}`] = encodeHeaderText(value);
  }
  return headers;
}
