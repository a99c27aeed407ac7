import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { httpDate, lastModifiedHeader, lastModifiedSeconds, listingLastModified, parseHttpDate, transId, xTimestamp } from "./timestamps.ts";

describe("Swift's timestamp forms (vectors from Swift's Timestamp under Python 3.11)", () => {
  it.each([
    [1_795_491_814_634.49, "1795491814.63449", 1_795_491_815, "2026-11-24T03:43:34.634490"],
    [1_795_491_814_000, "1795491814.00000", 1_795_491_814, "2026-11-24T03:43:34.000000"],
    [1_795_491_814_751.26, "1795491814.75126", 1_795_491_815, "2026-11-24T03:43:34.751260"],
    [0.01, "0000000000.00001", 1, "1970-01-01T00:00:00.000010"],
    [1_795_491_814_999.99, "1795491814.99999", 1_795_491_815, "2026-11-24T03:43:34.999990"],
  ])("%d ms → X-Timestamp %s, Last-Modified second %d, listing %s", (ms, timestamp, seconds, iso) => {
    expect(xTimestamp(ms)).toBe(timestamp);
    expect(lastModifiedSeconds(ms)).toBe(seconds);
    expect(listingLastModified(ms)).toBe(iso);
  });

  it("Last-Modified is the ceiling second in IMF-fixdate", () => {
    expect(lastModifiedHeader(1_795_491_814_001)).toBe("Tue, 24 Nov 2026 03:43:35 GMT");
    expect(lastModifiedHeader(1_795_491_814_000)).toBe("Tue, 24 Nov 2026 03:43:34 GMT");
    expect(httpDate(0)).toBe("Thu, 01 Jan 1970 00:00:00 GMT");
  });

  it("the three forms agree for any time of the next centuries", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4_102_444_800_000 * 100 }).map((tenMicro) => tenMicro / 100), (ms) => {
        const timestamp = xTimestamp(ms);
        expect(timestamp).toMatch(/^\d{10}\.\d{5}$/);
        const [whole, fraction] = timestamp.split(".");
        expect(lastModifiedSeconds(ms)).toBe(Number(whole) + (fraction === "00000" ? 0 : 1));
        expect(listingLastModified(ms)).toBe(`${new Date(Number(whole) * 1000).toISOString().slice(0, 19)}.${fraction}0`);
      }),
    );
  });
});

describe("parseHttpDate (RFC 9110 5.6.7)", () => {
  const expected = Date.UTC(1994, 10, 6, 8, 49, 37);

  it.each([
    "Sun, 06 Nov 1994 08:49:37 GMT",
    "sun, 06 nov 1994 08:49:37 gmt",
    "Sunday, 06-Nov-94 08:49:37 GMT",
    "Sun Nov  6 08:49:37 1994",
    "Sun, 6 Nov 1994 08:49:37 GMT",
    "Sun, 06 Nov 1994 08:49:37 +0000",
    "  Sun, 06 Nov 1994 08:49:37 UTC  ",
  ])("%j", (value) => {
    expect(parseHttpDate(value)).toBe(expected);
  });

  it.each([undefined, "", "garbage", "Sun, 31 Feb 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 +0200", "1994-11-06T08:49:37Z", "Sun, 06 Xyz 1994 08:49:37 GMT"])(
    "%j is no date",
    (value) => {
      expect(parseHttpDate(value)).toBeUndefined();
    },
  );

  it("reads RFC 850 two-digit years within 50 years of now", () => {
    const thisYear = new Date().getUTCFullYear();
    const twoDigits = (thisYear + 10) % 100;
    expect(new Date(parseHttpDate(`Monday, 01-Jan-${String(twoDigits).padStart(2, "0")} 00:00:00 GMT`)!).getUTCFullYear()).toBe(thisYear + 10);
  });

  it("round-trips every date it writes, and never throws", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 253_402_300_799 }), (seconds) => {
        expect(parseHttpDate(httpDate(seconds))).toBe(seconds * 1000);
      }),
    );
    fc.assert(
      fc.property(fc.string(), (value) => {
        const parsed = parseHttpDate(value);
        expect(parsed === undefined || Number.isFinite(parsed)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("transId", () => {
  it("is tx + 21 hex + - + 10 hex of the unix time (swift.md 2)", () => {
    const id = transId(1_795_491_814_634);
    expect(id).toMatch(/^tx[0-9a-f]{21}-[0-9a-f]{10}$/);
    expect(parseInt(id.slice(-10), 16)).toBe(1_795_491_814);
    expect(transId()).not.toBe(transId());
  });
});
