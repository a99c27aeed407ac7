/**
 * Conditional requests on objects (swift.md 7; RFC 9110 13).
 *
 * Every single-header case in swift.md 7 comes out as Swift answers it. Where Swift and RFC 9110
 * differ we follow the RFC, and say so:
 * - Precedence (RFC 9110 13.2.2): If-Match, else If-Unmodified-Since; then If-None-Match, else
 *   If-Modified-Since. Swift 2.30 checks If-None-Match first and always evaluates the date
 *   headers too, which only changes contradictory combinations (If-Match: other together with
 *   If-None-Match: current is 412 here, 304 in Swift).
 * - Weak tags: If-None-Match compares weakly (`W/"md5"` matches), If-Match and If-Range strongly
 *   (a weak tag never matches). Swift compares `W/"md5"` literally, so it never matches there.
 * - If-Range is honoured (RFC 9110 13.1.5); Swift 2.30 ignores it (swift.md 6).
 * ETags match quoted or bare (`"md5"` and `md5`), as Swift's normalize_etag does, on both sides:
 * plain objects have a bare MD5 ETag, DLO/SLO a quoted one (swift.md 9).
 */
import { headerValue, type IncomingHeaders } from "./header-text.ts";
import { parseHttpDate } from "./timestamps.ts";

export interface ConditionalResource {
  /** As sent in the ETag header, quoted or not. */
  etag: string;
  /** Already rounded up to the second as Last-Modified is (timestamps.ts lastModifiedSeconds × 1000). */
  lastModifiedMs: number;
}

export type ConditionOutcome = "proceed" | "not-modified" | "precondition-failed";

/** One member of an If-Match / If-None-Match list. */
interface EntityTagCondition {
  /** `*`, or the tag's opaque value without quotes. */
  tag: string;
  weak: boolean;
}

/**
 * An entity-tag list (RFC 9110 8.8.3): `"a", W/"b"`, plus bare tokens (`a`), which Swift accepts
 * and clients that echo Swift's bare ETag send. Commas inside quotes are part of the tag; empty
 * members are skipped; anything unparseable after a tag up to the next comma is ignored.
 */
export function parseEntityTagList(value: string): EntityTagCondition[] {
  const tags: EntityTagCondition[] = [];
  let i = 0;
  while (i < value.length) {
    while (i < value.length && /[\s,]/.test(value[i]!)) i++;
    if (i >= value.length) break;
    let weak = false;
    if (value.startsWith("W/\"", i)) {
      weak = true;
      i += 2;
    }
    if (value[i] === "\"") {
      const close = value.indexOf("\"", i + 1);
      const end = close === -1 ? value.length : close;
      tags.push({ tag: value.slice(i + 1, end), weak });
      i = end + 1;
      while (i < value.length && value[i] !== ",") i++;
      continue;
    }
    let end = value.indexOf(",", i);
    if (end === -1) end = value.length;
    const bare = value.slice(i, end).trim();
    if (bare !== "") tags.push({ tag: bare, weak: false });
    i = end;
  }
  return tags;
}

/** The opaque part of a resource's ETag: quotes removed, as swob normalize_etag. */
function opaqueTag(etag: string): string {
  return etag.length >= 2 && etag.startsWith("\"") && etag.endsWith("\"") ? etag.slice(1, -1) : etag;
}

function listMatches(list: EntityTagCondition[], etag: string, comparison: "strong" | "weak"): boolean {
  const current = opaqueTag(etag);
  return list.some(({ tag, weak }) => tag === "*" || (tag === current && (comparison === "weak" || !weak)));
}

/**
 * GET/HEAD of an existing object: carry on, 304, or 412. A 304 carries ETag, Last-Modified,
 * X-Timestamp and Content-Length 0 (swift.md 7); that is the route's part.
 */
export function evaluateConditions(method: "GET" | "HEAD", headers: IncomingHeaders, resource: ConditionalResource): ConditionOutcome {
  const ifMatch = headerValue(headers, "if-match");
  if (ifMatch !== undefined) {
    if (!listMatches(parseEntityTagList(ifMatch), resource.etag, "strong")) return "precondition-failed";
  } else {
    const since = parseHttpDate(headerValue(headers, "if-unmodified-since"));
    if (since !== undefined && resource.lastModifiedMs > since) return "precondition-failed";
  }
  const ifNoneMatch = headerValue(headers, "if-none-match");
  if (ifNoneMatch !== undefined) {
    if (listMatches(parseEntityTagList(ifNoneMatch), resource.etag, "weak")) return "not-modified";
  } else {
    // RFC 9110 13.1.3 limits If-Modified-Since to GET and HEAD, the only methods taken here;
    // both answer alike (swift.md 7: "304 (GET and HEAD)").
    // Last-Modified is rounded up, so "modified since" is "later than", at second resolution.
    const since = parseHttpDate(headerValue(headers, "if-modified-since"));
    if (since !== undefined && resource.lastModifiedMs <= since) return "not-modified";
  }
  return "proceed";
}

/**
 * Whether a Range request may be answered with 206 (true) or must get the whole object (false),
 * RFC 9110 13.1.5: no If-Range → true; an entity-tag → strong match with the current ETag; an
 * HTTP-date → exactly the Last-Modified second; anything else → false. A bare token that is no
 * date is compared as a bare ETag, for clients echoing Swift's unquoted ETag.
 */
export function ifRangeMatches(headers: IncomingHeaders, resource: ConditionalResource): boolean {
  const raw = headerValue(headers, "if-range");
  if (raw === undefined) return true;
  const value = raw.trim();
  if (value.startsWith("W/")) return false;
  if (value.startsWith("\"")) {
    return value.length >= 2 && value.endsWith("\"") && value.slice(1, -1) === opaqueTag(resource.etag);
  }
  const date = parseHttpDate(value);
  if (date !== undefined) return date === resource.lastModifiedMs;
  return value !== "" && value === opaqueTag(resource.etag);
}

/**
 * Preconditions of a PUT (create or overwrite), RFC 9110 13.1.1-13.1.2, checked before any data
 * is stored: `If-None-Match: *` on an existing object → 412, on a new one → go (swift.md 5, 11.9);
 * If-None-Match with tags → 412 when the current ETag is among them (Swift's proxy answers 400
 * "If-None-Match only supports *" instead; Pithos+ honours tags, synnefo.md B.2); If-Match → 412
 * unless the object exists and matches (`*` = exists). Swift ignores If-Match on PUT.
 */
export function putPreconditions(headers: IncomingHeaders, current: { etag: string } | undefined): "proceed" | "precondition-failed" {
  const ifMatch = headerValue(headers, "if-match");
  if (ifMatch !== undefined) {
    if (current === undefined || !listMatches(parseEntityTagList(ifMatch), current.etag, "strong")) return "precondition-failed";
  }
  const ifNoneMatch = headerValue(headers, "if-none-match");
  if (ifNoneMatch !== undefined && current !== undefined) {
    if (listMatches(parseEntityTagList(ifNoneMatch), current.etag, "weak")) return "precondition-failed";
  }
  return "proceed";
}
