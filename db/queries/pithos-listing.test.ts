import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compareNames, listNames, scanListing, successorOf, type ListingEntry, type ListingOptions, type NameRange } from "./pithos-listing.ts";

/** Characters whose UTF-8 and UTF-16 orders disagree (U+FFFD vs 😀), and the usual suspects. */
const alphabet = ["a", "b", "z", "Z", "/", "-", ".", "0", "é", "\u{ffff}", "\ufffd", "😀", "\u{10ffff}", " "];
const nameArbitrary = fc.array(fc.constantFrom(...alphabet), { minLength: 1, maxLength: 5 }).map((chars) => chars.join(""));

const listingOptionsArbitrary = (names: readonly string[]): fc.Arbitrary<ListingOptions> => {
  const someString = fc.oneof(nameArbitrary, names.length > 0 ? fc.constantFrom(...names) : nameArbitrary);
  const prefixOf = fc.oneof(
    fc.constant(""),
    names.length > 0 ? fc.tuple(fc.constantFrom(...names), fc.nat(5)).map(([name, n]) => name.slice(0, n)) : fc.constant("a"),
    nameArbitrary,
  );
  return fc.record(
    {
      prefix: prefixOf,
      delimiter: fc.constantFrom("/", "-", "a/", "😀"),
      marker: someString,
      endMarker: someString,
      limit: fc.integer({ min: 1, max: 12 }),
      reverse: fc.boolean(),
    },
    { requiredKeys: [] },
  );
};

/** An in-memory "table" answering range queries the way the SQL fetchers do. */
function memoryFetch(names: readonly string[]) {
  const sorted = [...new Set(names)].sort(compareNames);
  let queries = 0;
  const fetch = async (range: NameRange, reverse: boolean, limit: number): Promise<string[]> => {
    queries++;
    const inRange = sorted.filter((name) => {
      if (range.lower) {
        const order = compareNames(name, range.lower.value);
        if (order < 0 || (order === 0 && !range.lower.inclusive)) return false;
      }
      if (range.upper) {
        const order = compareNames(name, range.upper.value);
        if (order > 0 || (order === 0 && !range.upper.inclusive)) return false;
      }
      return true;
    });
    return (reverse ? inRange.reverse() : inRange).slice(0, limit);
  };
  return { fetch, queries: () => queries };
}

const flat = (entries: Array<ListingEntry<string>>) => entries.map((entry) => (entry.kind === "row" ? entry.name : `[${entry.subdir}]`));

describe("compareNames", () => {
  it("is UTF-8 byte order", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), fc.string({ unit: "grapheme" }), (a, b) => {
        expect(Math.sign(compareNames(a, b))).toBe(Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))));
      }),
      { numRuns: 2000 },
    );
    expect(["é", "z", "Z", "a/b", "a-b", "😀", "\ufffd", "a"].sort(compareNames)).toEqual(["Z", "a", "a-b", "a/b", "z", "é", "\ufffd", "😀"]);
  });
});

describe("successorOf", () => {
  it("bounds every extension of a prefix and nothing more", () => {
    fc.assert(
      fc.property(nameArbitrary, nameArbitrary, nameArbitrary, (prefix, suffix, other) => {
        const successor = successorOf(prefix);
        if (successor === undefined) return;
        expect(compareNames(prefix + suffix, successor)).toBeLessThan(0);
        // Anything greater than the prefix that does not start with it is ≥ the successor.
        if (compareNames(other, prefix) > 0 && !other.startsWith(prefix)) expect(compareNames(other, successor)).toBeGreaterThanOrEqual(0);
      }),
      { numRuns: 2000 },
    );
    expect(successorOf("a/")).toBe("a0");
    expect(successorOf("a\u{10ffff}")).toBe("b");
    expect(successorOf("\u{d7ff}")).toBe("\u{e000}");
    expect(successorOf("")).toBeUndefined();
    expect(successorOf("\u{10ffff}")).toBeUndefined();
  });
});

describe("scanListing", () => {
  it("lists as the in-memory model does", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(nameArbitrary, { maxLength: 30 }).chain((names) => fc.tuple(fc.constant(names), listingOptionsArbitrary(names))),
        async ([names, options]) => {
          const limit = options.limit ?? 10_000;
          const scanned = await scanListing(memoryFetch(names).fetch, (name) => name, options, limit);
          expect(flat(scanned)).toEqual(flat(listNames(names, options, limit)));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("pages with the last entry as the marker, forward and reverse", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(nameArbitrary, { maxLength: 30 }),
        fc.constantFrom(undefined, "/", "-"),
        fc.boolean(),
        fc.integer({ min: 1, max: 4 }),
        async (names, delimiter, reverse, pageSize) => {
          const { fetch } = memoryFetch(names);
          const all = await scanListing(fetch, (name) => name, { delimiter, reverse }, 10_000);
          const paged: Array<ListingEntry<string>> = [];
          let marker: string | undefined;
          for (;;) {
            const page = await scanListing(fetch, (name) => name, { delimiter, reverse, marker }, pageSize);
            paged.push(...page);
            if (page.length < pageSize) break;
            const last = page.at(-1)!;
            marker = last.kind === "row" ? last.name : last.subdir;
          }
          expect(flat(paged)).toEqual(flat(all));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("reads one row per subdir, not the subdir's contents", async () => {
    const names = ["a", ...Array.from({ length: 5000 }, (_, i) => `big/${String(i).padStart(5, "0")}`), "c/1", "c/2", "d"];
    const memory = memoryFetch(names);
    const entries = await scanListing(memory.fetch, (name) => name, { delimiter: "/" }, 100);
    expect(flat(entries)).toEqual(["a", "[big/]", "[c/]", "d"]);
    expect(memory.queries()).toBeLessThanOrEqual(4);
  });

  it("follows Swift on markers inside and at a subdir", () => {
    const names = ["a/1", "a/2", "b"];
    expect(flat(listNames(names, { delimiter: "/", marker: "a/" }, 10))).toEqual(["b"]);
    expect(flat(listNames(names, { delimiter: "/", marker: "a/1" }, 10))).toEqual(["[a/]", "b"]);
    expect(flat(listNames(names, { delimiter: "/", reverse: true }, 10))).toEqual(["b", "[a/]"]);
    expect(flat(listNames(names, { delimiter: "/", reverse: true, marker: "b" }, 10))).toEqual(["[a/]"]);
    expect(flat(listNames(["folder/"], { delimiter: "/" }, 10))).toEqual(["[folder/]"]);
  });
});
