/**
 * Swift/Pithos listings (swift.md 8) over any table of names: byte order, prefix, delimiter
 * roll-up into `subdir` entries, marker / end_marker (exclusive), limit, reverse.
 *
 * Byte order: UTF-8 byte order is code point order, which JavaScript's `<` (UTF-16 code
 * units) is not: U+FFFD (EF BF BD) sorts before 😀 U+1F600 (F0 9F 98 80) in bytes but after
 * it in code units (FFFD > D83D). SQLite (BINARY) and PostgreSQL (COLLATE "C") compare bytes;
 * compareNames does the same in JavaScript.
 *
 * The roll-up never reads a whole subdir. Forward, once a name under `a/` shows up, `a/` is
 * emitted and the next query starts at successor("a/") = "a0", past every name under `a/`:
 *
 *   names   a/1  a/2 … a/99999  a0  b
 *           └── one row read ──┘ ↑ next query: name >= "a0"
 *
 * Reverse, the next query ends below `a/` (every name under `a/` is ≥ `a/`). This is Swift's
 * own algorithm (container/backend.py list_objects_iter): one query per subdir.
 */
import { DbError } from "../errors.ts";

/** Compares strings in UTF-8 byte order (= code point order). */
export function compareNames(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (D800–DFFF) encode code points above FFFF, which sort after E000–FFFF.
    const xHigh = x >= 0xd800 && x <= 0xdfff;
    const yHigh = y >= 0xd800 && y <= 0xdfff;
    if (xHigh !== yHigh) return xHigh ? 1 : -1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/**
 * The least string greater than every string that starts with `prefix` (its last code point
 * plus one), or undefined when there is none (empty, or all U+10FFFF).
 */
export function successorOf(prefix: string): string | undefined {
  const codePoints = Array.from(prefix, (char) => char.codePointAt(0)!);
  while (codePoints.length > 0) {
    const last = codePoints.pop()!;
    if (last < 0x10ffff) {
      codePoints.push(last + 1 === 0xd800 ? 0xe000 : last + 1); // no surrogate code points
      return String.fromCodePoint(...codePoints);
    }
  }
  return undefined;
}

export interface ListingOptions {
  prefix?: string;
  delimiter?: string;
  /** Forward: names after it. Reverse: names before it (Swift swaps the markers). */
  marker?: string;
  /** Forward: names before it. Reverse: names after it. */
  endMarker?: string;
  /** Entries (names and subdirs) at most; default and maximum pithosListingLimitMax. */
  limit?: number;
  /** Descending byte order. */
  reverse?: boolean;
}

export interface Bound {
  value: string;
  inclusive: boolean;
}

/** The names a query may return: lower < (or ≤) name < (or ≤) upper. */
export interface NameRange {
  lower?: Bound;
  upper?: Bound;
}

/** Reads up to `limit` rows in the range, ordered by name (descending when `reverse`). */
export type FetchNames<R> = (range: NameRange, reverse: boolean, limit: number) => Promise<R[]>;

export type ListingEntry<R> = { kind: "row"; name: string; row: R } | { kind: "subdir"; subdir: string };

/**
 * Rows per query. A delimiter listing may discard most of a batch (the rows after the first
 * under a subdir); without one, a batch is the rest of the page.
 */
const batchRowsMax = 1000;

function tighterLower(a: Bound | undefined, b: Bound | undefined): Bound | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  const order = compareNames(a.value, b.value);
  if (order !== 0) return order > 0 ? a : b;
  return a.inclusive ? b : a;
}

function tighterUpper(a: Bound | undefined, b: Bound | undefined): Bound | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  const order = compareNames(a.value, b.value);
  if (order !== 0) return order < 0 ? a : b;
  return a.inclusive ? b : a;
}

function isEmpty({ lower, upper }: NameRange): boolean {
  if (lower === undefined || upper === undefined) return false;
  const order = compareNames(lower.value, upper.value);
  return order > 0 || (order === 0 && !(lower.inclusive && upper.inclusive));
}

/** The range the options select before any roll-up. */
export function initialRange(options: ListingOptions): NameRange {
  const prefix = options.prefix ?? "";
  const after = options.reverse ? options.endMarker : options.marker;
  const before = options.reverse ? options.marker : options.endMarker;
  const successor = prefix === "" ? undefined : successorOf(prefix);
  return {
    lower: tighterLower(
      after === undefined ? undefined : { value: after, inclusive: false },
      prefix === "" ? undefined : { value: prefix, inclusive: true },
    ),
    upper: tighterUpper(
      before === undefined ? undefined : { value: before, inclusive: false },
      successor === undefined ? undefined : { value: successor, inclusive: false },
    ),
  };
}

/** Lists with roll-up; `nameOf` reads a row's name. */
export async function scanListing<R>(
  fetch: FetchNames<R>,
  nameOf: (row: R) => string,
  options: ListingOptions,
  limit: number,
): Promise<Array<ListingEntry<R>>> {
  const prefix = options.prefix ?? "";
  const delimiter = options.delimiter === "" ? undefined : options.delimiter;
  const reverse = options.reverse === true;
  // Swift: a subdir equal to the marker the listing starts after is the previous page's last
  // entry, not repeated. (One inside it, marker `a/b`, is: Swift emits `a/` again.)
  const startAfter = reverse ? options.endMarker : options.marker;
  const entries: Array<ListingEntry<R>> = [];
  let range = initialRange(options);
  while (entries.length < limit && !isEmpty(range)) {
    const want = Math.min(limit - entries.length, batchRowsMax);
    const rows = await fetch(range, reverse, want);
    let jumped = false;
    for (const row of rows) {
      const name = nameOf(row);
      const at = delimiter === undefined ? -1 : name.indexOf(delimiter, prefix.length);
      if (at >= 0) {
        const subdir = name.slice(0, at + delimiter!.length);
        if (subdir !== startAfter) entries.push({ kind: "subdir", subdir });
        if (reverse) {
          range = { ...range, upper: tighterUpper(range.upper, { value: subdir, inclusive: false }) };
        } else {
          const successor = successorOf(subdir);
          if (successor === undefined) return entries.slice(0, limit);
          range = { ...range, lower: tighterLower(range.lower, { value: successor, inclusive: true }) };
        }
        jumped = true;
        break;
      }
      entries.push({ kind: "row", name, row });
      range = reverse ? { ...range, upper: { value: name, inclusive: false } } : { ...range, lower: { value: name, inclusive: false } };
      if (entries.length >= limit) break;
    }
    if (!jumped && rows.length < want) break; // the range is exhausted
  }
  return entries;
}

/** For the fetchers: the bound as a Kysely comparison. */
export function lowerOperator(bound: Bound): ">=" | ">" {
  return bound.inclusive ? ">=" : ">";
}

export function upperOperator(bound: Bound): "<=" | "<" {
  return bound.inclusive ? "<=" : "<";
}

export function checkListingOptions(options: ListingOptions): void {
  for (const key of ["prefix", "delimiter", "marker", "endMarker"] as const) {
    const value = options[key];
    if (value !== undefined && (typeof value !== "string" || !value.isWellFormed())) {
      throw new DbError("EINVALID", `${key} must be a well-formed string`, { [key]: value });
    }
  }
}

/**
 * The same listing over names in memory, the obvious way: filter, sort, roll up. The reference
 * model the tests hold scanListing (and the databases' order) to.
 */
export function listNames(names: Iterable<string>, options: ListingOptions, limit: number): Array<ListingEntry<string>> {
  const prefix = options.prefix ?? "";
  const delimiter = options.delimiter === "" ? undefined : options.delimiter;
  const after = options.reverse ? options.endMarker : options.marker;
  const before = options.reverse ? options.marker : options.endMarker;
  const selected = [...new Set(names)]
    .filter((name) => name.startsWith(prefix))
    .filter((name) => (after === undefined || compareNames(name, after) > 0) && (before === undefined || compareNames(name, before) < 0))
    .sort(compareNames);
  if (options.reverse) selected.reverse();
  const entries: Array<ListingEntry<string>> = [];
  for (const name of selected) {
    if (entries.length >= limit) break;
    const at = delimiter === undefined ? -1 : name.indexOf(delimiter, prefix.length);
    if (at < 0) {
      entries.push({ kind: "row", name, row: name });
      continue;
    }
    const subdir = name.slice(0, at + delimiter!.length);
    const last = entries.at(-1);
    if (subdir === after || (last?.kind === "subdir" && last.subdir === subdir)) continue;
    entries.push({ kind: "subdir", subdir });
  }
  return entries;
}
