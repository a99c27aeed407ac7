import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { evaluateConditions, ifRangeMatches, parseEntityTagList, putPreconditions, type ConditionalResource } from "./conditionals.ts";
import { httpDate } from "./timestamps.ts";

const md5 = "d41d8cd98f00b204e9800998ecf8427e";
const other = "0cc175b9c0f1b6a831c399e269772661";
const lastModifiedSeconds = 1_795_491_815;
const object: ConditionalResource = { etag: md5, lastModifiedMs: lastModifiedSeconds * 1000 };
const lastModified = httpDate(lastModifiedSeconds);
const secondBefore = httpDate(lastModifiedSeconds - 1);
const secondAfter = httpDate(lastModifiedSeconds + 1);

describe("evaluateConditions: swift.md 7", () => {
  it.each([
    [{ "if-none-match": md5 }, "not-modified"],
    [{ "if-none-match": `"${md5}"` }, "not-modified"],
    [{ "if-none-match": "*" }, "not-modified"],
    [{ "if-none-match": other }, "proceed"],
    [{ "if-match": md5 }, "proceed"],
    [{ "if-match": `"${md5}"` }, "proceed"],
    [{ "if-match": "*" }, "proceed"],
    [{ "if-match": other }, "precondition-failed"],
    [{ "if-modified-since": lastModified }, "not-modified"],
    [{ "if-modified-since": secondAfter }, "not-modified"],
    [{ "if-modified-since": secondBefore }, "proceed"],
    [{ "if-modified-since": "garbage" }, "proceed"],
    [{ "if-unmodified-since": secondBefore }, "precondition-failed"],
    [{ "if-unmodified-since": lastModified }, "proceed"],
    [{ "if-unmodified-since": "garbage" }, "proceed"],
    [{}, "proceed"],
  ] as const)("%j → %s (GET and HEAD alike)", (headers, outcome) => {
    expect(evaluateConditions("GET", headers, object)).toBe(outcome);
    expect(evaluateConditions("HEAD", headers, object)).toBe(outcome);
  });

  it("lists: a match anywhere counts; quoted and bare members mix", () => {
    expect(evaluateConditions("GET", { "if-none-match": `"${other}", ${md5}` }, object)).toBe("not-modified");
    expect(evaluateConditions("GET", { "if-match": `${other}, "${md5}"` }, object)).toBe("proceed");
    expect(evaluateConditions("GET", { "if-match": `${other}, "x"` }, object)).toBe("precondition-failed");
  });

  it("a quoted resource ETag (DLO/SLO) matches quoted and bare conditions", () => {
    const manifest = { ...object, etag: `"${md5}"` };
    expect(evaluateConditions("GET", { "if-none-match": md5 }, manifest)).toBe("not-modified");
    expect(evaluateConditions("GET", { "if-match": `"${md5}"` }, manifest)).toBe("proceed");
  });

  it("weak tags: If-None-Match compares weakly, If-Match strongly (RFC 9110 8.8.3.2)", () => {
    expect(evaluateConditions("GET", { "if-none-match": `W/"${md5}"` }, object)).toBe("not-modified");
    expect(evaluateConditions("GET", { "if-match": `W/"${md5}"` }, object)).toBe("precondition-failed");
  });

  it("RFC 9110 13.2.2 precedence: If-Match before If-None-Match; tags shadow dates", () => {
    expect(evaluateConditions("GET", { "if-match": other, "if-none-match": md5 }, object)).toBe("precondition-failed");
    // If-None-Match present: If-Modified-Since is not evaluated.
    expect(evaluateConditions("GET", { "if-none-match": other, "if-modified-since": secondAfter }, object)).toBe("proceed");
    // If-Match present: If-Unmodified-Since is not evaluated.
    expect(evaluateConditions("GET", { "if-match": md5, "if-unmodified-since": secondBefore }, object)).toBe("proceed");
    expect(evaluateConditions("GET", { "if-unmodified-since": secondBefore, "if-none-match": md5 }, object)).toBe("precondition-failed");
  });

  it("an empty If-Match matches nothing (412, as Swift); an empty If-None-Match nothing (go on)", () => {
    expect(evaluateConditions("GET", { "if-match": "" }, object)).toBe("precondition-failed");
    expect(evaluateConditions("GET", { "if-none-match": "" }, object)).toBe("proceed");
  });

  it("never throws on arbitrary header values", () => {
    const names = ["if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "if-range"];
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...names), fc.oneof(fc.string(), fc.array(fc.string()))), fc.string(), (headers, etag) => {
        const resource = { etag, lastModifiedMs: object.lastModifiedMs };
        expect(["proceed", "not-modified", "precondition-failed"]).toContain(evaluateConditions("GET", headers, resource));
        expect(typeof ifRangeMatches(headers, resource)).toBe("boolean");
        expect(["proceed", "precondition-failed"]).toContain(putPreconditions(headers, resource));
      }),
      { numRuns: 2000 },
    );
  });
});

describe("parseEntityTagList", () => {
  it("reads quoted, weak, bare and `*` members; commas inside quotes belong to the tag", () => {
    expect(parseEntityTagList(` "a,b" , W/"c",d,, *, "unterminated`)).toEqual([
      { tag: "a,b", weak: false },
      { tag: "c", weak: true },
      { tag: "d", weak: false },
      { tag: "*", weak: false },
      { tag: "unterminated", weak: false },
    ]);
  });

  it("round-trips any list of entity-tags written per RFC 9110", () => {
    const etagc = fc.stringMatching(/^[!#-~]*$/);
    fc.assert(
      fc.property(fc.array(fc.record({ tag: etagc, weak: fc.boolean() })), (tags) => {
        const header = tags.map(({ tag, weak }) => `${weak ? "W/" : ""}"${tag}"`).join(", ");
        expect(parseEntityTagList(header)).toEqual(tags);
      }),
    );
  });
});

describe("ifRangeMatches (RFC 9110 13.1.5)", () => {
  it.each([
    [{}, true],
    [{ "if-range": `"${md5}"` }, true],
    [{ "if-range": md5 }, true],
    [{ "if-range": `"${other}"` }, false],
    [{ "if-range": `W/"${md5}"` }, false],
    [{ "if-range": lastModified }, true],
    [{ "if-range": secondAfter }, false],
    [{ "if-range": secondBefore }, false],
    [{ "if-range": "garbage" }, false],
    [{ "if-range": "" }, false],
  ])("%j → %s", (headers, expected) => {
    expect(ifRangeMatches(headers, object)).toBe(expected);
  });
});

describe("putPreconditions", () => {
  it.each([
    [{ "if-none-match": "*" }, { etag: md5 }, "precondition-failed"],
    [{ "if-none-match": "*" }, undefined, "proceed"],
    [{ "if-none-match": md5 }, { etag: md5 }, "precondition-failed"],
    [{ "if-none-match": other }, { etag: md5 }, "proceed"],
    [{ "if-match": "*" }, undefined, "precondition-failed"],
    [{ "if-match": "*" }, { etag: md5 }, "proceed"],
    [{ "if-match": md5 }, { etag: md5 }, "proceed"],
    [{ "if-match": other }, { etag: md5 }, "precondition-failed"],
    [{ "if-match": md5 }, undefined, "precondition-failed"],
    [{}, undefined, "proceed"],
    [{}, { etag: md5 }, "proceed"],
  ] as const)("%j with current %j → %s", (headers, current, outcome) => {
    expect(putPreconditions(headers, current)).toBe(outcome);
  });
});
