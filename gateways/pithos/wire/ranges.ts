/**
 * `Range: bytes=…` as Swift 2.30.1 answers it (swift.md 6; swob.py Range and
 * Response._response_iter), and the `multipart/byteranges` framing of a multi-range reply.
 *
 * | Range (size 1000)          | parseRange                      | reply                          |
 * |----------------------------|---------------------------------|--------------------------------|
 * | bytes=0-9                  | ranges [0-9]                    | 206 bytes 0-9/1000             |
 * | bytes=-5                   | ranges [995-999]                | 206                            |
 * | bytes=990- / 995-5000      | ranges [990-999] / [995-999]    | 206, clamped                   |
 * | bytes=-5000                | ranges [0-999]                  | 206 (whole object, still 206)  |
 * | bytes=1000- / 5000-6000 / -0 | unsatisfiable                 | 416 bytes *\/1000              |
 * | bytes=5-2, items=0-3, junk | whole                           | 200, header ignored            |
 * | bytes=0-0,5-6              | ranges [0-0, 5-6]               | 206 multipart/byteranges       |
 *
 * A syntactically invalid spec anywhere makes the whole header ignored (RFC 9110 14.2: "MUST
 * ignore"), as swob does; a valid but unsatisfiable spec is dropped and only if none is left is
 * the answer 416.
 */
import { randomBytes } from "node:crypto";

/** A byte range, both ends inclusive as in Content-Range. */
export interface ByteRange {
  start: number;
  end: number;
}

export type RangeRequest = { kind: "whole" } | { kind: "unsatisfiable" } | { kind: "ranges"; ranges: ByteRange[] };

/*
 * RFC 9110 14.2 / RFC 7233 6.1: servers "ought to ignore, coalesce, or reject egregious range
 * requests". Swift rejects (416) rather than coalesces, with these limits (swob.py MAX_RANGES,
 * MAX_RANGE_OVERLAPS, MAX_NONASCENDING_RANGES); we copy them, and do not coalesce either: a
 * client gets the parts it asked for, in its order, or a 416.
 */
/** More satisfiable ranges than this → 416. */
export const maxRanges = 50;
/** More pairs of overlapping ranges than this → 416. */
export const maxRangeOverlaps = 2;
/** This many ranges or more, not in ascending order → 416. */
export const maxNonAscendingRanges = 8;

/** A byte-range-spec as written: `first-last`, `first-` or `-suffix` (digits kept as text). */
interface RangeSpec {
  first: string | undefined;
  last: string | undefined;
}

/** swob Range.__init__: undefined when the header must be ignored. */
function parseRangeSpecs(header: string): RangeSpec[] | undefined {
  // swob removes every space before parsing; we remove tabs too (both are OWS).
  const value = header.replace(/[ \t]/g, "");
  if (value.slice(0, 6).toLowerCase() !== "bytes=") return undefined;
  const specs: RangeSpec[] = [];
  for (const spec of value.slice(6).split(",")) {
    const dash = spec.indexOf("-");
    if (dash === -1) return undefined;
    const first = spec.slice(0, dash);
    const last = spec.slice(dash + 1);
    // ASCII digits only: Python's int() would also take "+5" or "1_0", which no client sends.
    if (first !== "" && !/^[0-9]+$/.test(first)) return undefined;
    if (last !== "" && !/^[0-9]+$/.test(last)) return undefined;
    if (first === "" && last === "") return undefined;
    if (first !== "" && last !== "" && compareDecimal(last, first) < 0) return undefined;
    specs.push({ first: first === "" ? undefined : first, last: last === "" ? undefined : last });
  }
  return specs;
}

/** Compares two strings of ASCII digits as numbers, exactly, however long they are. */
function compareDecimal(a: string, b: string): number {
  const x = a.replace(/^0+(?=.)/, "");
  const y = b.replace(/^0+(?=.)/, "");
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Digits as a number; beyond 2^53 the value is approximate but still compares right against a size. */
function decimal(digits: string): number {
  return Number(digits);
}

/**
 * What a GET of an object of `sizeBytes` bytes should send for this Range header. HEAD ignores
 * Range (swift.md 5) and is not the caller of this.
 */
export function parseRange(header: string | undefined, sizeBytes: number): RangeRequest {
  if (header === undefined || header === "") return { kind: "whole" };
  const specs = parseRangeSpecs(header);
  if (specs === undefined || specs.length === 0) return { kind: "whole" };
  // Half-open [start, stop) while computing, as swob's ranges_for_length does.
  const halfOpen: Array<[number, number]> = [];
  for (const { first, last } of specs) {
    if (first === undefined) {
      const suffix = decimal(last!);
      if (suffix === 0) continue; // bytes=-0
      halfOpen.push(suffix > sizeBytes ? [0, sizeBytes] : [sizeBytes - suffix, sizeBytes]);
      continue;
    }
    const start = decimal(first);
    if (start >= sizeBytes) continue;
    halfOpen.push([start, last === undefined ? sizeBytes : Math.min(decimal(last) + 1, sizeBytes)]);
  }
  if (halfOpen.length === 0 || isEgregious(halfOpen)) return { kind: "unsatisfiable" };
  // A suffix range of an empty object: there are no byte positions for a Content-Range, so
  // Swift (like Apache and nginx) sends the whole, empty object with 200.
  if (sizeBytes === 0) return { kind: "whole" };
  return { kind: "ranges", ranges: halfOpen.map(([start, stop]) => ({ start, end: stop - 1 })) };
}

/** swob ranges_for_length's denial-of-service checks, on half-open ranges, as Swift counts them. */
function isEgregious(ranges: Array<[number, number]>): boolean {
  if (ranges.length > maxRanges) return true;
  let overlaps = 0;
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      const [start1, end1] = ranges[i]!;
      const [start2, end2] = ranges[j]!;
      // Strict comparisons, exactly swob's: identical ranges do not count as overlapping.
      if ((start1 < start2 && start2 < end1) || (start1 < end2 && end2 < end1) || (start2 < start1 && start1 < end2) || (start2 < end1 && end1 < end2)) {
        overlaps++;
        if (overlaps > maxRangeOverlaps) return true;
      }
    }
  }
  const ascending = ranges.every((range, i) => i === 0 || !tupleGreater(ranges[i - 1]!, range));
  return !ascending && ranges.length >= maxNonAscendingRanges;
}

function tupleGreater(a: [number, number], b: [number, number]): boolean {
  return a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);
}

/** `Content-Range` of a 206 part: `bytes 0-9/1000` (RFC 9110 14.4). */
export function contentRange(start: number, end: number, sizeBytes: number): string {
  return `bytes ${start}-${end}/${sizeBytes}`;
}

/** A multipart boundary as Swift makes one: 32 lower-case hex digits (swob `%.32x`). */
export function newBoundary(): string {
  return randomBytes(16).toString("hex");
}

/** The Content-Type of a multi-range reply; Swift writes no space after the semicolon. */
export function multipartContentType(boundary: string): string {
  return `multipart/byteranges;boundary=${boundary}`;
}

export interface MultipartFraming {
  /** preambles[i] goes before part i's bytes (it closes part i-1's line first). */
  preambles: Buffer[];
  /** Goes after the last part's bytes. */
  epilogue: Buffer;
  /** The whole body: framing plus every part's bytes, for Content-Length up front. */
  totalLength: number;
}

/**
 * The framing of a `multipart/byteranges` body, byte for byte Swift's (swob multi_range_iterator,
 * RFC 9110 14.6), around part bodies the caller streams:
 *
 *   --B CRLF Content-Type: T CRLF Content-Range: bytes s-e/N CRLF CRLF <bytes s..e> CRLF
 *   --B CRLF …                                                        <bytes>       CRLF
 *   --B--
 *
 * No CRLF before the first boundary and none after the last: what Swift sends.
 */
export function multipartFraming(boundary: string, contentType: string, sizeBytes: number, ranges: readonly ByteRange[]): MultipartFraming {
  const preambles = ranges.map(({ start, end }, i) =>
    Buffer.from(`${i === 0 ? "" : "\r\n"}--${boundary}\r\nContent-Type: ${contentType}\r\nContent-Range: ${contentRange(start, end, sizeBytes)}\r\n\r\n`, "utf8"),
  );
  const epilogue = Buffer.from(`${ranges.length === 0 ? "" : "\r\n"}--${boundary}--`, "utf8");
  const partBytes = ranges.reduce((sum, { start, end }) => sum + (end - start + 1), 0);
  const totalLength = preambles.reduce((sum, preamble) => sum + preamble.length, 0) + partBytes + epilogue.length;
  return { preambles, epilogue, totalLength };
}
