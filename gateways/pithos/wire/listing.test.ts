import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { renderAccountListing, renderContainerListing, xmlAttribute, xmlText, type ContainerListingEntry } from "./listing.ts";
import { pythonJsonDumps, type JsonValue } from "./python-json.ts";

const lastModifiedMs = 1_795_491_830_751.26; // 2026-11-24T03:43:50.751260

const entries: ContainerListingEntry[] = [
  { name: "a/1.txt", hash: "c4ca4238a0b923820dcc509a6f75849b", bytes: 1, contentType: "text/plain", lastModifiedMs },
  { subdir: "b/" },
];

describe("pythonJsonDumps (json.dumps defaults; vectors from Python 3.11)", () => {
  it("escapes as ensure_ascii does", () => {
    expect(
      pythonJsonDumps([{ name: "é\u2028😀\x7f\x01\"\\/\n\b\f", bytes: 1, x: null, t: true, f: 1.5, big: 1e20 }]),
    ).toBe(String.raw`[{"name": "\u00e9\u2028\ud83d\ude00\u007f\u0001\"\\/\n\b\f", "bytes": 1, "x": null, "t": true, "f": 1.5, "big": 100000000000000000000}]`);
    expect(pythonJsonDumps([])).toBe("[]");
    expect(pythonJsonDumps({})).toBe("{}");
  });

  it("is pure ASCII and parses back to the same value", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = pythonJsonDumps(value as JsonValue);
        expect(text).toMatch(/^[ -~]*$/);
        expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(value)));
      }),
    );
  });
});

describe("renderContainerListing (swift.md 8)", () => {
  it("text: one name per line, subdirs included", () => {
    expect(renderContainerListing("text", "c", entries)).toEqual({ status: 200, body: Buffer.from("a/1.txt\nb/\n") });
  });

  it("text: empty is 204 with no body; JSON and XML empty are 200", () => {
    expect(renderContainerListing("text", "c", [])).toEqual({ status: 204, body: Buffer.alloc(0) });
    expect(renderContainerListing("json", "c", [])).toEqual({ status: 200, body: Buffer.from("[]") });
    expect(renderContainerListing("xml", "c", [])).toEqual({ status: 200, body: Buffer.from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<container name=\"c\" />") });
  });

  it("json: Swift's key order, microseconds without a zone, extras last", () => {
    const withExtra: ContainerListingEntry[] = [{ ...entries[0]!, extra: { slo_etag: "\"abc\"" } }, entries[1]!];
    expect(renderContainerListing("json", "c", withExtra).body.toString()).toBe(
      `[{"bytes": 1, "hash": "c4ca4238a0b923820dcc509a6f75849b", "name": "a/1.txt", "content_type": "text/plain", ` +
        `"last_modified": "2026-11-24T03:43:50.751260", "slo_etag": "\\"abc\\""}, {"subdir": "b/"}]`,
    );
  });

  it("json escapes non-ASCII names; text and xml carry raw UTF-8", () => {
    const unicode: ContainerListingEntry[] = [{ ...entries[0]!, name: "é/😀" }];
    expect(renderContainerListing("json", "c", unicode).body.toString()).toContain(String.raw`"name": "\u00e9/\ud83d\ude00"`);
    expect(renderContainerListing("text", "c", unicode).body.equals(Buffer.from("é/😀\n", "utf8"))).toBe(true);
    expect(renderContainerListing("xml", "c", unicode).body.includes(Buffer.from("<name>é/😀</name>", "utf8"))).toBe(true);
  });

  it("xml: ElementTree's layout and escaping (vector from Python 3.11)", () => {
    const tricky: ContainerListingEntry[] = [{ ...entries[0]!, name: "a&b<c>\"'é\n\t\r" }, { subdir: "d&\"/" }];
    expect(renderContainerListing("xml", "c<&>\"'\n\t\ré", tricky).body.toString()).toBe(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" +
        "<container name=\"c&lt;&amp;&gt;&quot;'&#10;&#09;&#13;é\">" +
        "<object><name>a&amp;b&lt;c&gt;\"'é\n\t\r</name><hash>c4ca4238a0b923820dcc509a6f75849b</hash><bytes>1</bytes>" +
        "<content_type>text/plain</content_type><last_modified>2026-11-24T03:43:50.751260</last_modified></object>" +
        "<subdir name=\"d&amp;&quot;/\"><name>d&amp;\"/</name></subdir></container>",
    );
  });
});

describe("renderAccountListing", () => {
  const containers = [
    { name: "photos", count: 3, bytes: 1024, lastModifiedMs },
    { subdir: "p/" },
  ];

  it("json: name, count, bytes, last_modified", () => {
    expect(renderAccountListing("json", "AUTH_x", containers).body.toString()).toBe(
      `[{"name": "photos", "count": 3, "bytes": 1024, "last_modified": "2026-11-24T03:43:50.751260"}, {"subdir": "p/"}]`,
    );
  });

  it("xml: a newline after the opening tag and after each child (vector from Python 3.11)", () => {
    expect(renderAccountListing("xml", "AUTH_x", containers).body.toString()).toBe(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<account name=\"AUTH_x\">\n" +
        "<container><name>photos</name><count>3</count><bytes>1024</bytes><last_modified>2026-11-24T03:43:50.751260</last_modified></container>\n" +
        "<subdir name=\"p/\" />\n</account>",
    );
    expect(renderAccountListing("xml", "AUTH_x", []).body.toString()).toBe("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<account name=\"AUTH_x\">\n</account>");
  });

  it("text: names, 204 when none", () => {
    expect(renderAccountListing("text", "AUTH_x", containers)).toEqual({ status: 200, body: Buffer.from("photos\np/\n") });
    expect(renderAccountListing("text", "AUTH_x", []).status).toBe(204);
  });
});

describe("XML escaping", () => {
  it("leaves no markup characters unescaped", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), (text) => {
        expect(xmlText(text)).not.toMatch(/[<>]|&(?!amp;|lt;|gt;)/);
        expect(xmlAttribute(text)).not.toMatch(/[<>"\n\r\t]|&(?!amp;|lt;|gt;|quot;|#10;|#13;|#09;)/);
        const unescape = (s: string) =>
          s.replace(/&(amp|lt|gt|quot|#10|#13|#09);/g, (_, entity: string) => ({ amp: "&", lt: "<", gt: ">", quot: "\"", "#10": "\n", "#13": "\r", "#09": "\t" })[entity]!);
        expect(unescape(xmlAttribute(text))).toBe(text);
      }),
    );
  });
});
