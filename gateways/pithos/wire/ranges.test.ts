import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { contentRange, maxRanges, multipartContentType, multipartFraming, newBoundary, parseRange, type ByteRange } from "./ranges.ts";

const size = 1000;

describe("parseRange: swift.md 6, a 1000-byte object", () => {
  it.each([
    ["bytes=0-9", [{ start: 0, end: 9 }]],
    ["bytes=-5", [{ start: 995, end: 999 }]],
    ["bytes=990-", [{ start: 990, end: 999 }]],
    ["bytes=995-5000", [{ start: 995, end: 999 }]],
    ["bytes=-5000", [{ start: 0, end: 999 }]],
    ["bytes=0-0,5-6", [{ start: 0, end: 0 }, { start: 5, end: 6 }]],
  ])("%s → 206 with %j", (header, ranges) => {
    expect(parseRange(header, size)).toEqual({ kind: "ranges", ranges });
  });

  it.each(["bytes=1000-", "bytes=5000-6000", "bytes=-0", "bytes=1000-,-0"])("%s → 416", (header) => {
    expect(parseRange(header, size)).toEqual({ kind: "unsatisfiable" });
  });

  it.each(["bytes=5-2", "items=0-3", "bytes=", "bytes=-", "bytes=45", "bytes=0-1,,2-3", "bytes=a-b", "bytes=+5-9", "bytes=--0", "bytes=0-1, bytes=2-3", "", "junk"])(
    "%j is ignored → whole object",
    (header) => {
      expect(parseRange(header, size)).toEqual({ kind: "whole" });
    },
  );

  it("no header → whole object", () => {
    expect(parseRange(undefined, size)).toEqual({ kind: "whole" });
  });

  it("spaces anywhere and the unit's case do not matter (swob strips spaces)", () => {
    expect(parseRange("Bytes = 0 - 9 , 20-29", size)).toEqual({ kind: "ranges", ranges: [{ start: 0, end: 9 }, { start: 20, end: 29 }] });
  });

  it("unsatisfiable specs are dropped when another one is satisfiable", () => {
    expect(parseRange("bytes=2000-3000,0-5", size)).toEqual({ kind: "ranges", ranges: [{ start: 0, end: 5 }] });
  });

  it("numbers beyond 2^53 still clamp and compare exactly", () => {
    expect(parseRange("bytes=0-99999999999999999999999999", size)).toEqual({ kind: "ranges", ranges: [{ start: 0, end: 999 }] });
    expect(parseRange("bytes=-99999999999999999999999999", size)).toEqual({ kind: "ranges", ranges: [{ start: 0, end: 999 }] });
    expect(parseRange("bytes=99999999999999999999999999-", size)).toEqual({ kind: "unsatisfiable" });
    // 9007199254740993 and ...992 are the same double; the text comparison still sees last < first.
    expect(parseRange("bytes=9007199254740993-9007199254740992", size)).toEqual({ kind: "whole" });
    expect(parseRange("bytes=007-0010", size)).toEqual({ kind: "ranges", ranges: [{ start: 7, end: 10 }] });
  });

  it("an empty object: a suffix range is the whole (empty) object, anything else 416 (swob)", () => {
    expect(parseRange("bytes=-5", 0)).toEqual({ kind: "whole" });
    expect(parseRange("bytes=0-", 0)).toEqual({ kind: "unsatisfiable" });
    expect(parseRange("bytes=0-0", 0)).toEqual({ kind: "unsatisfiable" });
  });
});

describe("parseRange: Swift's limits on egregious requests (swob MAX_RANGES…)", () => {
  const header = (ranges: Array<[number, number]>) => `bytes=${ranges.map(([start, end]) => `${start}-${end}`).join(",")}`;

  it("50 ranges are served, 51 are 416", () => {
    const fifty = Array.from({ length: maxRanges }, (_, i): [number, number] => [i * 10, i * 10 + 1]);
    expect(parseRange(header(fifty), size)).toMatchObject({ kind: "ranges" });
    expect(parseRange(header([...fifty, [600, 601]]), size)).toEqual({ kind: "unsatisfiable" });
  });

  it("two overlapping pairs are served, three are 416; identical ranges do not count", () => {
    expect(parseRange(header([[0, 10], [5, 15], [12, 20]]), size)).toMatchObject({ kind: "ranges" });
    expect(parseRange(header([[0, 10], [5, 15], [8, 20]]), size)).toEqual({ kind: "unsatisfiable" });
    expect(parseRange(header([[0, 10], [0, 10], [0, 10], [0, 10]]), size)).toMatchObject({ kind: "ranges" });
  });

  it("seven ranges out of order are served, eight are 416", () => {
    const descending = (n: number) => Array.from({ length: n }, (_, i): [number, number] => [(n - i) * 10, (n - i) * 10 + 1]);
    expect(parseRange(header(descending(7)), size)).toMatchObject({ kind: "ranges" });
    expect(parseRange(header(descending(8)), size)).toEqual({ kind: "unsatisfiable" });
    expect(parseRange(header(descending(8).reverse()), size)).toMatchObject({ kind: "ranges" });
  });
});

describe("parseRange: properties", () => {
  it("never throws, and every range it returns lies inside the object", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.stringMatching(/^bytes=[-0-9, ]{0,40}$/)), fc.nat({ max: 1 << 40 }), (header, sizeBytes) => {
        const result = parseRange(header, sizeBytes);
        if (result.kind !== "ranges") return;
        expect(result.ranges.length).toBeGreaterThan(0);
        expect(result.ranges.length).toBeLessThanOrEqual(maxRanges);
        for (const { start, end } of result.ranges) {
          expect(Number.isSafeInteger(start) && Number.isSafeInteger(end)).toBe(true);
          expect(0 <= start && start <= end && end < sizeBytes).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("round-trips: ascending, disjoint ranges written as a header come back unchanged", () => {
    const arbitraryRanges = fc
      .uniqueArray(fc.nat({ max: 10_000 }), { minLength: 2, maxLength: 2 * maxRanges })
      .map((points) => points.sort((a, b) => a - b))
      .map((points) => {
        const ranges: ByteRange[] = [];
        for (let i = 0; i + 1 < points.length; i += 2) ranges.push({ start: points[i]!, end: points[i + 1]! });
        return ranges;
      });
    fc.assert(
      fc.property(arbitraryRanges, fc.nat({ max: 5000 }), (ranges, extra) => {
        const sizeBytes = ranges[ranges.length - 1]!.end + 1 + extra;
        const header = `bytes=${ranges.map(({ start, end }) => `${start}-${end}`).join(",")}`;
        expect(parseRange(header, sizeBytes)).toEqual({ kind: "ranges", ranges });
      }),
    );
  });
});

describe("contentRange and the multipart framing", () => {
  it("Content-Range is `bytes first-last/size`", () => {
    expect(contentRange(0, 9, 1000)).toBe("bytes 0-9/1000");
  });

  it("boundaries are 32 hex digits; the type has no space after ';' (swob)", () => {
    const boundary = newBoundary();
    expect(boundary).toMatch(/^[0-9a-f]{32}$/);
    expect(multipartContentType(boundary)).toBe(`multipart/byteranges;boundary=${boundary}`);
  });

  /** swob's multi_range_iterator and _prepare_for_ranges, transcribed: the reference. */
  function swiftMultipart(boundary: string, contentType: string, data: Buffer, ranges: ByteRange[]): { body: Buffer; swiftLength: number } {
    const chunks: Buffer[] = [];
    for (const { start, end } of ranges) {
      chunks.push(Buffer.from(`--${boundary}\r\nContent-Type: ${contentType}\r\n`));
      chunks.push(Buffer.from(`Content-Range: bytes ${start}-${end}/${data.length}\r\n\r\n`));
      chunks.push(data.subarray(start, end + 1));
      chunks.push(Buffer.from("\r\n"));
    }
    chunks.push(Buffer.from(`--${boundary}--`));
    const fixed = 2 + boundary.length + 2 + "Content-Type: ".length + Buffer.byteLength(contentType) + 2 + "Content-Range: ".length + 2 + 2;
    let swiftLength = 0;
    for (const { start, end } of ranges) swiftLength += fixed + `bytes ${start}-${end}/${data.length}`.length + (end - start + 1) + 2;
    swiftLength += boundary.length + 4;
    return { body: Buffer.concat(chunks), swiftLength };
  }

  function assemble(data: Buffer, framing: ReturnType<typeof multipartFraming>, ranges: ByteRange[]): Buffer {
    return Buffer.concat([...ranges.flatMap(({ start, end }, i) => [framing.preambles[i]!, data.subarray(start, end + 1)]), framing.epilogue]);
  }

  it("frames parts byte for byte as Swift does, with the length Swift computes", () => {
    const data = Buffer.from("0123456789".repeat(100));
    const ranges = [{ start: 0, end: 0 }, { start: 5, end: 6 }];
    const boundary = "0123456789abcdef0123456789abcdef";
    const framing = multipartFraming(boundary, "text/plain", data.length, ranges);
    const body = assemble(data, framing, ranges);
    expect(body.toString()).toBe(
      `--${boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-0/1000\r\n\r\n0\r\n` +
        `--${boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 5-6/1000\r\n\r\n56\r\n--${boundary}--`,
    );
    expect(framing.totalLength).toBe(body.length);
  });

  it("matches the Swift reference for any ranges and content type", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 300 }),
        fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 1, maxLength: 8 }),
        fc.string({ unit: "grapheme", maxLength: 30 }),
        (bytes, pairs, contentType) => {
          const data = Buffer.from(bytes);
          const ranges = pairs.map(([a, b]) => {
            const [start, end] = [a % data.length, b % data.length].sort((x, y) => x - y);
            return { start: start!, end: end! };
          });
          const framing = multipartFraming(newBoundary(), contentType, data.length, ranges);
          const boundary = framing.epilogue.toString().slice(4, -2);
          const { body, swiftLength } = swiftMultipart(boundary, contentType, data, ranges);
          expect(assemble(data, framing, ranges).equals(body)).toBe(true);
          expect(framing.totalLength).toBe(swiftLength);
        },
      ),
    );
  });
});
