/**
 * What a listing request asks for: its format (query `format=` or the Accept header) and its
 * window (prefix, delimiter, markers, limit, reverse, path), as Swift 2.30.1 reads them
 * (swift.md 8; middleware/listing_formats.py get_listing_content_type, swob.py Accept,
 * request_helpers.py constrain_req_limit, container/backend.py list_objects_iter).
 */
import { PithosError } from "./errors.ts";
import { containerListingLimit } from "./info.ts";

export type ListingFormat = "text" | "json" | "xml";

export interface ListingNegotiation {
  format: ListingFormat;
  /** The reply's Content-Type, charset included: XML asked for as text/xml is sent as text/xml. */
  contentType: string;
}

/** listing_formats.py FORMAT2CONTENT_TYPE; any other `format=` (yaml…) means plain text. */
const formatMediaTypes: ReadonlyMap<string, string> = new Map([
  ["plain", "text/plain"],
  ["json", "application/json"],
  ["xml", "application/xml"],
]);

/** The types a listing can be sent as, in Swift's order of preference. */
const offeredMediaTypes = ["text/plain", "application/json", "application/xml", "text/xml"] as const;

const formatOfMediaType: Readonly<Record<(typeof offeredMediaTypes)[number], ListingFormat>> = {
  "text/plain": "text",
  "application/json": "json",
  "application/xml": "xml",
  "text/xml": "xml",
};

// swob.py Accept: RFC 2616 2.2 token, quoted-string and media-range with parameters.
const token = String.raw`[^()<>@,;:"/\[\]?={}\x00-\x20\x7f]+`;
const quotedString = String.raw`"(?:[^"]|\\.)*"`;
const mediaParameter = String.raw`(?:\s*;\s*(?:${token})\s*=\s*(?:${token}|${quotedString}))`;
const mediaRangePattern = new RegExp(String.raw`^\s*(${token})/(${token})(${mediaParameter}*?\s*)$`);

/**
 * swob Accept._get_types + best_match: media ranges sorted by q (then specific before `*`),
 * stable; the first range any offered type matches wins, in offer order. Unlike RFC 9110 a
 * q=0 range still matches (sorted last): Swift does that. Undefined = 406; a malformed
 * header throws 400 "Invalid Accept header" as Swift does.
 */
function bestMediaType(accept: string | undefined): (typeof offeredMediaTypes)[number] | undefined {
  if (accept === undefined || accept === "") return offeredMediaTypes[0];
  const ranges: Array<{ type: string; subtype: string; quality: number; specific: boolean }> = [];
  for (const item of accept.split(",")) {
    const match = mediaRangePattern.exec(item);
    if (match === null) throw new PithosError("EBAD_REQUEST", "Invalid Accept header");
    const [, type = "", subtype = "", parameters = ""] = match;
    let quality = 1;
    let seenQuality = false;
    for (const parameterText of parameters.split(";").map((p) => p.trim()).filter((p) => p !== "")) {
      const pieces = parameterText.split("=");
      if (pieces.length !== 2) throw new PithosError("EBAD_REQUEST", "Invalid Accept header");
      if (pieces[0]!.trim() !== "q") continue;
      if (seenQuality) throw new PithosError("EBAD_REQUEST", "Invalid Accept header");
      seenQuality = true;
      quality = pythonFloat(pieces[1]!.trim());
    }
    ranges.push({ type, subtype, quality, specific: type !== "*" && subtype !== "*" });
  }
  ranges.sort((a, b) => b.quality - a.quality || Number(b.specific) - Number(a.specific));
  for (const range of ranges) {
    const offer = offeredMediaTypes.find((candidate) => {
      const [type, subtype] = candidate.split("/");
      return (range.type === "*" || range.type === type) && (range.subtype === "*" || range.subtype === subtype);
    });
    if (offer !== undefined) return offer;
  }
  return undefined;
}

/** Python float() of a q-value; what it refuses is a malformed header (400). */
function pythonFloat(text: string): number {
  if (!/^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$/i.test(text)) throw new PithosError("EBAD_REQUEST", "Invalid Accept header");
  return Number(text);
}

/**
 * The listing's format: `format=json|xml|plain` (case-insensitive) overrides Accept, any other
 * value means text (format=yaml falls back to text, swift.md 8); without it, the Accept header
 * decides (`application/json` → JSON, `application/xml`/`text/xml` → XML, none/`*\/*` → text).
 */
export function negotiateListing(format: string | undefined, accept: string | undefined): ListingNegotiation {
  const effectiveAccept = format === undefined || format === "" ? accept : (formatMediaTypes.get(format.toLowerCase()) ?? "text/plain");
  const mediaType = bestMediaType(effectiveAccept);
  if (mediaType === undefined) throw new PithosError("ENOT_ACCEPTABLE");
  return { format: formatOfMediaType[mediaType], contentType: `${mediaType}; charset=utf-8` };
}

export function listingFormat(format: string | undefined, accept: string | undefined): ListingFormat {
  return negotiateListing(format, accept).format;
}

export interface ListingQuery {
  prefix: string | undefined;
  delimiter: string | undefined;
  /** Exclusive: entries after it. */
  marker: string | undefined;
  /** Exclusive: entries before it. */
  endMarker: string | undefined;
  limit: number;
  reverse: boolean;
  /**
   * `path=p`: prefix `p/` (p with its trailing slashes trimmed, then one added; `path=` is the
   * top level) and delimiter `/`, overriding both; unlike delimiter listings, entries below a
   * subdirectory are skipped without a `subdir` entry (container/backend.py list_objects_iter).
   */
  path: string | undefined;
}

/** A parsed query string: fastify's request.query, or URLSearchParams. */
export type ListingQueryParameters = Record<string, string | string[] | undefined> | URLSearchParams;

/** A repeated parameter's last value, as webob's MultiDict.get returns it. */
function parameter(query: ListingQueryParameters, name: string): string | undefined {
  const value = query instanceof URLSearchParams ? query.getAll(name) : Object.hasOwn(query, name) ? query[name] : undefined;
  return Array.isArray(value) ? value[value.length - 1] : value;
}

/** utils.py TRUE_VALUES, compared lower-cased (config_true_value). */
const trueValues = new Set(["true", "1", "yes", "on", "t", "y"]);

/**
 * The listing window. Empty values count as absent (Swift tests them for truth), except `path`,
 * where `path=` means the top level. `limit`: digits only, else ignored (swift.md 8: `limit=abc`
 * → 200); above `maxLimit` → 412 "Maximum limit is 10000" (swift.md 11.5: never clamp). The
 * delimiter may be any string: Swift accepts multi-character delimiters since 2.23 (commit
 * 1ded0d6c "Allow arbitrary UTF-8 strings as delimiters"); before that it was 412 "Bad delimiter".
 */
export function parseListingQuery(query: ListingQueryParameters, maxLimit: number = containerListingLimit): ListingQuery {
  const nonEmpty = (name: string): string | undefined => {
    const value = parameter(query, name);
    return value === undefined || value === "" ? undefined : value;
  };
  let limit = maxLimit;
  const givenLimit = nonEmpty("limit");
  if (givenLimit !== undefined && /^[0-9]+$/.test(givenLimit)) {
    limit = Number(givenLimit);
    if (limit > maxLimit) throw new PithosError("EPRECONDITION_FAILED", `Maximum limit is ${maxLimit}`);
  }
  const reverse = nonEmpty("reverse");
  return {
    prefix: nonEmpty("prefix"),
    delimiter: nonEmpty("delimiter"),
    marker: nonEmpty("marker"),
    endMarker: nonEmpty("end_marker"),
    limit,
    reverse: reverse !== undefined && trueValues.has(reverse.toLowerCase()),
    path: parameter(query, "path"),
  };
}
