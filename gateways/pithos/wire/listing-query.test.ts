import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PithosError } from "./errors.ts";
import { listingFormat, negotiateListing, parseListingQuery } from "./listing-query.ts";

function failure(action: () => unknown): { status: number; message: string } {
  try {
    action();
  } catch (error) {
    if (error instanceof PithosError) return { status: error.status, message: error.message };
    throw error;
  }
  throw new Error("no error");
}

describe("negotiateListing (swift.md 8; swob Accept)", () => {
  it.each([
    [undefined, undefined, "text", "text/plain; charset=utf-8"],
    ["json", undefined, "json", "application/json; charset=utf-8"],
    ["JSON", "application/xml", "json", "application/json; charset=utf-8"],
    ["xml", undefined, "xml", "application/xml; charset=utf-8"],
    ["plain", "application/json", "text", "text/plain; charset=utf-8"],
    ["yaml", "application/json", "text", "text/plain; charset=utf-8"],
    ["", "application/json", "json", "application/json; charset=utf-8"],
    [undefined, "application/json", "json", "application/json; charset=utf-8"],
    [undefined, "application/xml", "xml", "application/xml; charset=utf-8"],
    [undefined, "text/xml", "xml", "text/xml; charset=utf-8"],
    [undefined, "*/*", "text", "text/plain; charset=utf-8"],
    [undefined, "application/*", "json", "application/json; charset=utf-8"],
    [undefined, "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "xml", "application/xml; charset=utf-8"],
    [undefined, "text/plain;q=0.5, application/json", "json", "application/json; charset=utf-8"],
    [undefined, "*/*;q=0.9, application/json;q=0.9", "json", "application/json; charset=utf-8"],
    [undefined, "application/json;q=0", "json", "application/json; charset=utf-8"],
    [undefined, "text/plain; charset=\"utf,8\"", undefined, undefined],
  ])("format=%j Accept=%j → %s", (format, accept, expectedFormat, contentType) => {
    if (expectedFormat === undefined) {
      expect(failure(() => negotiateListing(format, accept))).toEqual({ status: 400, message: "Invalid Accept header" });
      return;
    }
    expect(negotiateListing(format, accept)).toEqual({ format: expectedFormat, contentType });
    expect(listingFormat(format, accept)).toBe(expectedFormat);
  });

  it("nothing acceptable → 406; malformed → 400 Invalid Accept header", () => {
    expect(failure(() => negotiateListing(undefined, "image/png")).status).toBe(406);
    for (const accept of ["json", "text/plain,", "text/plain;q=abc", "text/plain;q=1;q=1", "text/plain;a=b=c"]) {
      expect(failure(() => negotiateListing(undefined, accept))).toEqual({ status: 400, message: "Invalid Accept header" });
    }
  });

  it("throws nothing but PithosError on arbitrary input", () => {
    fc.assert(
      fc.property(fc.option(fc.string()), fc.option(fc.oneof(fc.string(), fc.stringMatching(/^[a-z*]+\/[a-z*+]+(;q=[0-9.]+)?(, ?[a-z*]+\/[a-z*]+)*$/))), (format, accept) => {
        try {
          expect(["text", "json", "xml"]).toContain(listingFormat(format ?? undefined, accept ?? undefined));
        } catch (error) {
          expect(error).toBeInstanceOf(PithosError);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe("parseListingQuery", () => {
  it("defaults", () => {
    expect(parseListingQuery({})).toEqual({
      prefix: undefined,
      delimiter: undefined,
      marker: undefined,
      endMarker: undefined,
      limit: 10_000,
      reverse: false,
      path: undefined,
    });
  });

  it("reads every parameter; empty values are absent except path", () => {
    expect(parseListingQuery({ prefix: "a/", delimiter: "/", marker: "a/1", end_marker: "a/9", limit: "1000", reverse: "On", path: "" })).toEqual({
      prefix: "a/",
      delimiter: "/",
      marker: "a/1",
      endMarker: "a/9",
      limit: 1000,
      reverse: true,
      path: "",
    });
    expect(parseListingQuery({ prefix: "", delimiter: "", marker: "", end_marker: "", limit: "", reverse: "" })).toMatchObject({
      prefix: undefined,
      delimiter: undefined,
      limit: 10_000,
      reverse: false,
    });
  });

  it("limit: above the maximum is 412, never clamped; non-digits are ignored (swift.md 8)", () => {
    expect(failure(() => parseListingQuery({ limit: "10001" }))).toEqual({ status: 412, message: "Maximum limit is 10000" });
    expect(failure(() => parseListingQuery({ limit: "99999999999999999999999" })).status).toBe(412);
    expect(parseListingQuery({ limit: "10000" }).limit).toBe(10_000);
    expect(parseListingQuery({ limit: "0" }).limit).toBe(0);
    expect(parseListingQuery({ limit: "abc" }).limit).toBe(10_000);
    expect(parseListingQuery({ limit: "-5" }).limit).toBe(10_000);
  });

  it("the account maximum is the caller's", () => {
    expect(failure(() => parseListingQuery({ limit: "11" }, 10))).toEqual({ status: 412, message: "Maximum limit is 10" });
  });

  it("repeated parameters: the last one wins; multi-character delimiters are kept (Swift ≥ 2.23)", () => {
    expect(parseListingQuery({ marker: ["a", "b"], delimiter: "--" })).toMatchObject({ marker: "b", delimiter: "--" });
  });

  it("takes URLSearchParams too", () => {
    expect(parseListingQuery(new URLSearchParams("marker=a&marker=b+c&limit=5&path="))).toMatchObject({ marker: "b c", limit: 5, path: "" });
    expect(parseListingQuery(new URLSearchParams("prefix=x")).path).toBeUndefined();
  });

  it.each(["true", "1", "yes", "on", "t", "y", "TRUE"])("reverse=%s is true", (value) => {
    expect(parseListingQuery({ reverse: value }).reverse).toBe(true);
  });

  it.each(["false", "0", "no", "2"])("reverse=%s is false", (value) => {
    expect(parseListingQuery({ reverse: value }).reverse).toBe(false);
  });

  it("throws nothing but PithosError on arbitrary queries", () => {
    const names = ["prefix", "delimiter", "marker", "end_marker", "limit", "reverse", "path", "format"];
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...names), fc.oneof(fc.string(), fc.array(fc.string()), fc.nat().map(String))), (query) => {
        try {
          const parsed = parseListingQuery(query);
          expect(parsed.limit >= 0 && parsed.limit <= 10_000).toBe(true);
        } catch (error) {
          expect(error).toBeInstanceOf(PithosError);
        }
      }),
    );
  });
});
