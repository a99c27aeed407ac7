import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PithosError } from "./errors.ts";
import { accountUuid, parseAccountHeader, parseObjectManifest, parseObjectPathHeader, parseObjectStorePath, percentDecode } from "./names.ts";

const uuid = "0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b";

function failure(action: () => unknown): { status: number; message: string } {
  try {
    action();
  } catch (error) {
    if (error instanceof PithosError) return { status: error.status, message: error.message };
    throw error;
  }
  throw new Error("no error");
}

/** encodeURIComponent leaves !'()* alone; a client may or may not encode them, both must work. */
function encodeName(name: string): string {
  return encodeURIComponent(name).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

describe("percentDecode (Python's unquote, then strict UTF-8; vectors from Python 3.11)", () => {
  it.each([
    ["a+b%20c", "a+b c"],
    ["%zz%", "%zz%"],
    ["%2Fx%2f", "/x/"],
    ["%C3%A9", "é"],
    ["%e2%82%ac%F0%9F%98%80", "€😀"],
    ["100%", "100%"],
    ["%%41", "%A"],
  ])("%s → %s", (raw, decoded) => {
    expect(percentDecode(raw)).toBe(decoded);
  });

  it("inverts percent-encoding of any text without NUL, and throws only PithosError", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }).filter((text) => !text.includes("\0")), (text) => {
        expect(percentDecode(encodeName(text))).toBe(text);
      }),
    );
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.stringMatching(/^(%[0-9a-fA-F]{0,2}|[a-z+/])*$/)), (raw) => {
        try {
          percentDecode(raw);
        } catch (error) {
          expect(error).toBeInstanceOf(PithosError);
        }
      }),
    );
  });

  it.each(["%C3", "%FF", "%ED%A0%80", "a%00b", "\xff"])("%j → 412 Invalid UTF8 or contains NULL", (raw) => {
    expect(failure(() => percentDecode(raw))).toEqual({ status: 412, message: "Invalid UTF8 or contains NULL" });
  });
});

describe("parseObjectStorePath", () => {
  it("splits version, account, container and the object with its slashes", () => {
    expect(parseObjectStorePath(`/v1/AUTH_${uuid}/photos/2026/a+b&c=d.txt`)).toEqual({
      kind: "object",
      version: "v1",
      account: `AUTH_${uuid}`,
      accountUuid: uuid,
      container: "photos",
      object: "2026/a+b&c=d.txt",
    });
  });

  it.each([
    ["/v1", { kind: "root", version: "v1" }],
    ["/v1/", { kind: "root", version: "v1" }],
    [`/v1/${uuid}`, { kind: "account", version: "v1", account: uuid, accountUuid: uuid }],
    [`/v1.0/${uuid}/`, { kind: "account", version: "v1.0", account: uuid, accountUuid: uuid }],
    ["/v1/someone/c", { kind: "container", version: "v1", account: "someone", accountUuid: undefined, container: "c" }],
    ["/v1/a/c/", { kind: "container", version: "v1", account: "a", accountUuid: undefined, container: "c" }],
    ["/v1/a/c/folder/", { kind: "object", version: "v1", account: "a", accountUuid: undefined, container: "c", object: "folder/" }],
    ["/v1/a/c//x", { kind: "object", version: "v1", account: "a", accountUuid: undefined, container: "c", object: "/x" }],
    ["/v1/a/c%2Fd/e?format=json", { kind: "object", version: "v1", account: "a", accountUuid: undefined, container: "c", object: "d/e" }],
    ["/v1/a/c/%3F%23%25%3B%22%20lead", { kind: "object", version: "v1", account: "a", accountUuid: undefined, container: "c", object: "?#%;\" lead" }],
  ])("%s", (path, expected) => {
    expect(parseObjectStorePath(path)).toEqual(expected);
  });

  it.each([
    ["/v1//c", 412, "Bad URL"],
    ["/v1/a//o", 412, "Bad URL"],
    ["/v2/a/c", 400, "The server could not comply with the request since it is either malformed or otherwise incorrect."],
    ["v1/a", 404, "The resource could not be found."],
    ["//a", 404, "The resource could not be found."],
    ["/v1/a/c/o%00", 412, "Invalid UTF8 or contains NULL"],
    ["/v1/a/c/%C0%AF", 412, "Invalid UTF8 or contains NULL"],
    [`/v1/a/${"c".repeat(257)}`, 400, "Container name length of 257 longer than 256"],
    [`/v1/a/c/${"%C3%A9".repeat(513)}`, 400, "Object name length of 1026 longer than 1024"],
  ])("%s → %d %s", (path, status, message) => {
    expect(failure(() => parseObjectStorePath(path))).toEqual({ status, message });
  });

  it("accepts names of exactly 256 and 1024 bytes", () => {
    expect(parseObjectStorePath(`/v1/a/${"c".repeat(256)}/${"o".repeat(1024)}`).kind).toBe("object");
  });

  it("round-trips any container and object name, however it is percent-encoded", () => {
    const containerName = fc.string({ unit: "grapheme", minLength: 1, maxLength: 40 }).filter((n) => !n.includes("/") && !n.includes("\0"));
    const objectName = fc.string({ unit: "grapheme", minLength: 1, maxLength: 200 }).filter((n) => !n.includes("\0"));
    fc.assert(
      fc.property(containerName, objectName, fc.boolean(), (container, object, encodeSlashes) => {
        const encodedObject = encodeSlashes ? encodeName(object) : object.split("/").map(encodeName).join("/");
        const parsed = parseObjectStorePath(`/v1/AUTH_${uuid}/${encodeName(container)}/${encodedObject}`);
        expect(parsed).toEqual({ kind: "object", version: "v1", account: `AUTH_${uuid}`, accountUuid: uuid, container, object });
      }),
    );
  });

  it("throws nothing but PithosError on arbitrary paths", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string().map((s) => `/v1/a/${s}`), fc.string({ unit: "binary" })), (path) => {
        try {
          parseObjectStorePath(path);
        } catch (error) {
          expect(error).toBeInstanceOf(PithosError);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe("accountUuid", () => {
  it("knows AUTH_<uuid> and <uuid>, lower-case only", () => {
    expect(accountUuid(`AUTH_${uuid}`)).toBe(uuid);
    expect(accountUuid(uuid)).toBe(uuid);
    expect(accountUuid(uuid.toUpperCase())).toBeUndefined();
    expect(accountUuid("AUTH_test")).toBeUndefined();
    expect(accountUuid(`auth_${uuid}`)).toBeUndefined();
  });
});

describe("parseObjectPathHeader (X-Copy-From, Destination…)", () => {
  it.each([
    ["/c/o", { container: "c", object: "o" }],
    ["c/o", { container: "c", object: "o" }],
    ["/c/dir/o/", { container: "c", object: "dir/o/" }],
    ["/c%20x/%C3%A9+1", { container: "c x", object: "é+1" }],
  ])("%s", (value, expected) => {
    expect(parseObjectPathHeader("X-Copy-From", value)).toEqual(expected);
  });

  it.each(["bad", "/bad", "/c/", "//o", "", "/"])("%j → 412 (swift.md 9)", (value) => {
    expect(failure(() => parseObjectPathHeader("Destination", value))).toEqual({
      status: 412,
      message: "Destination header must be of the form <container name>/<object name>",
    });
  });

  it("throws nothing but PithosError on arbitrary values", () => {
    fc.assert(
      fc.property(fc.string(), (value) => {
        try {
          const { container, object } = parseObjectPathHeader("X-Copy-From", value);
          expect(container.length > 0 && object.length > 0).toBe(true);
        } catch (error) {
          expect(error).toBeInstanceOf(PithosError);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe("parseAccountHeader", () => {
  it("throws nothing but PithosError on arbitrary values", () => {
    fc.assert(
      fc.property(fc.string(), (value) => {
        try {
          expect(parseAccountHeader(value).account.length).toBeGreaterThan(0);
        } catch (error) {
          expect(error).toBeInstanceOf(PithosError);
        }
      }),
    );
  });

  it("decodes, and refuses empty names and slashes with 412", () => {
    expect(parseAccountHeader(`AUTH_${uuid}`)).toEqual({ account: `AUTH_${uuid}`, accountUuid: uuid });
    expect(failure(() => parseAccountHeader(""))).toEqual({ status: 412, message: "Account name cannot be empty" });
    expect(failure(() => parseAccountHeader("a%2Fb"))).toEqual({ status: 412, message: "Account name cannot contain slashes" });
  });
});

describe("parseObjectManifest (DLO)", () => {
  it("splits at the first slash and decodes both parts, keeping the raw value", () => {
    expect(parseObjectManifest("c_segments/big%20file/1700000000/")).toEqual({ value: "c_segments/big%20file/1700000000/", container: "c_segments", prefix: "big file/1700000000/" });
  });

  it.each(["c", "c/", "/p", "c//p", "c/p?x", "c/p&x", ""])("%j → 400", (value) => {
    expect(failure(() => parseObjectManifest(value))).toEqual({ status: 400, message: "X-Object-Manifest must be in the format container/prefix" });
  });

  it("throws nothing but PithosError on arbitrary values", () => {
    fc.assert(
      fc.property(fc.string(), (value) => {
        try {
          parseObjectManifest(value);
        } catch (error) {
          expect(error).toBeInstanceOf(PithosError);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
