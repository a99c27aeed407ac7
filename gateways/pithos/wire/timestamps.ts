/**
 * Swift's clock on the wire (swift.md 2, 8; swift/common/utils Timestamp).
 *
 * Swift keeps a time as a count of 10 µs units (5 decimals). From it:
 *   X-Timestamp     1795491814.63449            %016.05f: 10 digits, dot, 5 digits
 *   Last-Modified   Tue, 24 Nov 2026 03:43:35 GMT   the *ceiling* second, RFC 1123
 *   last_modified   2026-11-24T03:43:34.634490   listing JSON/XML: 6 fractional digits, no zone
 * All three come from the same 10 µs count, so a listing, a HEAD and a conditional request agree.
 */
import { randomBytes } from "node:crypto";

/** 10 µs units per second: Swift's Timestamp precision (PRECISION = 1e-5). */
const unitsPerSecond = 100_000;

/** Milliseconds as Swift's 10 µs units, rounded as Timestamp does (round(t * 1e5)). */
function toUnits(ms: number): number {
  return Math.round(ms * 100);
}

/** `X-Timestamp`: seconds with exactly 5 decimals, zero-padded to 16 characters. */
export function xTimestamp(ms: number): string {
  const units = toUnits(ms);
  const seconds = Math.floor(units / unitsPerSecond);
  const fraction = units - seconds * unitsPerSecond;
  return `${String(seconds).padStart(10, "0")}.${String(fraction).padStart(5, "0")}`;
}

/** Whole seconds of Last-Modified: Timestamp.ceil(), so it can be later than Date (swift.md 2). */
export function lastModifiedSeconds(ms: number): number {
  return Math.ceil(toUnits(ms) / unitsPerSecond);
}

/** `Last-Modified` (and any other HTTP-date we send): IMF-fixdate, RFC 9110 5.6.7. */
export function httpDate(seconds: number): string {
  return new Date(seconds * 1000).toUTCString();
}

export function lastModifiedHeader(ms: number): string {
  return httpDate(lastModifiedSeconds(ms));
}

/** Listing `last_modified`: Timestamp.isoformat, microseconds always present, no `Z` (swift.md 8). */
export function listingLastModified(ms: number): string {
  const units = toUnits(ms);
  const seconds = Math.floor(units / unitsPerSecond);
  const microseconds = (units - seconds * unitsPerSecond) * 10;
  const date = new Date(seconds * 1000).toISOString().slice(0, 19);
  return `${date}.${String(microseconds).padStart(6, "0")}`;
}

const monthIndex: ReadonlyMap<string, number> = new Map(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"].map((name, i) => [name, i]));

/**
 * The three forms RFC 9110 5.6.7 obliges a recipient to accept, case-insensitively:
 *   IMF-fixdate  Sun, 06 Nov 1994 08:49:37 GMT
 *   RFC 850      Sunday, 06-Nov-94 08:49:37 GMT
 *   asctime      Sun Nov  6 08:49:37 1994
 * The weekday is not checked (Python's email.utils.parsedate, which Swift uses, ignores it too),
 * and `UTC`/`+0000` stand for GMT.
 */
const imfFixdate = /^[a-z]{3},\s+(\d{1,2})\s+([a-z]{3})\s+(\d{4})\s+(\d{2}):(\d{2}):(\d{2})\s+(?:gmt|utc|ut|[+-]0000)$/i;
const rfc850Date = /^[a-z]+,\s+(\d{1,2})-([a-z]{3})-(\d{2})\s+(\d{2}):(\d{2}):(\d{2})\s+(?:gmt|utc|ut|[+-]0000)$/i;
const asctimeDate = /^[a-z]{3}\s+([a-z]{3})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})\s+(\d{4})$/i;

/**
 * An HTTP-date as milliseconds since the epoch, or undefined for anything else: a garbage
 * If-Modified-Since is ignored, not an error (swift.md 7).
 */
export function parseHttpDate(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  let match = imfFixdate.exec(text);
  if (match !== null) return dateMs(Number(match[3]), match[2]!, match[1]!, match[4]!, match[5]!, match[6]!);
  match = rfc850Date.exec(text);
  if (match !== null) return dateMs(rfc850Year(Number(match[3])), match[2]!, match[1]!, match[4]!, match[5]!, match[6]!);
  match = asctimeDate.exec(text);
  if (match !== null) return dateMs(Number(match[6]), match[1]!, match[2]!, match[3]!, match[4]!, match[5]!);
  return undefined;
}

/** RFC 9110 5.6.7: a two-digit year more than 50 years in the future is in the past century. */
function rfc850Year(twoDigits: number): number {
  const thisYear = new Date().getUTCFullYear();
  const candidate = Math.floor(thisYear / 100) * 100 + twoDigits;
  return candidate > thisYear + 50 ? candidate - 100 : candidate;
}

function dateMs(year: number, monthName: string, day: string, hour: string, minute: string, second: string): number | undefined {
  const month = monthIndex.get(monthName.toLowerCase());
  if (month === undefined) return undefined;
  const ms = Date.UTC(year, month, Number(day), Number(hour), Number(minute), Number(second));
  const date = new Date(ms);
  // Reject what Date.UTC would silently roll over (31 Feb, 25:00).
  const exact =
    date.getUTCFullYear() === year && date.getUTCMonth() === month && date.getUTCDate() === Number(day) &&
    date.getUTCHours() === Number(hour) && date.getUTCMinutes() === Number(minute) && date.getUTCSeconds() === Number(second);
  return exact ? ms : undefined;
}

/**
 * `X-Trans-Id` / `X-Openstack-Request-Id`: `tx` + 21 random hex + `-` + the unix time as 10 hex
 * digits (swift.md 2; Swift's generate_trans_id: uuid4().hex[:21] and '%010x' % time).
 */
export function transId(nowMs: number = Date.now()): string {
  const random = randomBytes(11).toString("hex").slice(0, 21);
  return `tx${random}-${Math.floor(nowMs / 1000).toString(16).padStart(10, "0")}`;
}
