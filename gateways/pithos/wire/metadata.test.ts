import { once } from "node:events";
import { createServer, type IncomingHttpHeaders } from "node:http";
import { connect, type AddressInfo } from "node:net";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PithosError } from "./errors.ts";
import { decodeHeaderText, encodeHeaderText, titleCaseHeaderName } from "./header-text.ts";
import { applyMetadata, MetadataError, metadataHeaders, parseMetadataHeaders, type Metadata } from "./metadata.ts";

/** What Node hands a server for these UTF-8 header values: one latin1 character per byte. */
function asNodeReceivesIt(value: string): string {
  return Buffer.from(value, "utf8").toString("latin1");
}

function errorOf(action: () => unknown): MetadataError {
  try {
    action();
  } catch (error) {
    if (error instanceof MetadataError) return error;
    throw error;
  }
  throw new Error("no error");
}

describe("titleCaseHeaderName (Python str.title, as Swift spells header names)", () => {
  it.each([
    ["mtime", "Mtime"],
    ["foo-bar", "Foo-Bar"],
    ["a1b", "A1B"],
    ["FOO", "Foo"],
    ["x_y", "X-Y"],
    ["o'neil", "O'Neil"],
    ["abc9def-Ghi", "Abc9Def-Ghi"],
  ])("%s → %s", (name, title) => {
    expect(titleCaseHeaderName(name)).toBe(title);
  });
});

describe("parseMetadataHeaders", () => {
  it("sets, removes by empty value and by X-Remove-, ignores other scopes and headers", () => {
    const changes = parseMetadataHeaders("object", {
      "x-object-meta-mtime": "1795491814.634490000",
      "x-object-meta-color": "",
      "x-remove-object-meta-size": "x",
      "x-container-meta-other": "no",
      "content-type": "text/plain",
    });
    expect(changes).toEqual({ set: { Mtime: "1795491814.634490000" }, remove: ["Color", "Size"] });
  });

  it("each scope reads its own prefix", () => {
    expect(parseMetadataHeaders("account", { "x-account-meta-quota-note": "v" }).set).toEqual({ "Quota-Note": "v" });
    expect(parseMetadataHeaders("container", { "x-container-meta-web-index": "index.html" }).set).toEqual({ "Web-Index": "index.html" });
  });

  it("decodes UTF-8 values as Node delivers them (latin1 per byte)", () => {
    expect(parseMetadataHeaders("object", { "x-object-meta-name": asNodeReceivesIt("résumé €😀") }).set).toEqual({ Name: "résumé €😀" });
  });

  it("refuses bytes that are not UTF-8, and NUL", () => {
    expect(errorOf(() => parseMetadataHeaders("object", { "x-object-meta-a": "\xe9t\xe9" })).message).toBe("Metadata must be valid UTF-8");
    expect(errorOf(() => parseMetadataHeaders("container", { "x-container-meta-a": "a\0b" })).message).toBe("Metadata must be valid UTF-8");
  });

  it("enforces /info's limits with Swift's sentences, as 400 text/plain", () => {
    const error = errorOf(() => parseMetadataHeaders("object", { "x-object-meta-": "v" }));
    expect(error).toBeInstanceOf(PithosError);
    expect(error.status).toBe(400);
    expect(error.contentType).toBe("text/plain");
    expect(error.message).toBe("Metadata name cannot be empty");
    expect(errorOf(() => parseMetadataHeaders("object", { [`x-object-meta-${"n".repeat(129)}`]: "v" })).message).toBe(
      `Metadata name too long: x-object-meta-N${"n".repeat(128)}`,
    );
    expect(errorOf(() => parseMetadataHeaders("object", { "x-object-meta-big": "v".repeat(257) })).message).toBe(
      "Metadata value longer than 256: x-object-meta-Big",
    );
    // 129 UTF-8 bytes in 128 characters is too long: limits count bytes.
    expect(() => parseMetadataHeaders("object", { "x-object-meta-v": asNodeReceivesIt(`${"v".repeat(254)}é`) })).not.toThrow();
    expect(errorOf(() => parseMetadataHeaders("object", { "x-object-meta-v": asNodeReceivesIt(`${"v".repeat(255)}é`) })).message).toMatch(/^Metadata value longer/);
    const ninetyOne = Object.fromEntries(Array.from({ length: 91 }, (_, i) => [`x-object-meta-k${i}`, "v"]));
    expect(errorOf(() => parseMetadataHeaders("object", ninetyOne)).message).toBe("Too many metadata items; max 90");
    const large = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`x-object-meta-k${i}`, "v".repeat(250)]));
    expect(errorOf(() => parseMetadataHeaders("object", large)).message).toBe("Total metadata too large; max 4096");
    expect(errorOf(() => parseMetadataHeaders("object", { "user-agent": "x".repeat(8193) })).message).toBe("Header value too long: User-Agent");
  });

  it("accepts exactly the limits", () => {
    const ninety = Object.fromEntries(Array.from({ length: 90 }, (_, i) => [`x-object-meta-k${i}`, "v"]));
    expect(Object.keys(parseMetadataHeaders("object", ninety).set)).toHaveLength(90);
    expect(() => parseMetadataHeaders("object", { [`x-object-meta-${"n".repeat(128)}`]: "v".repeat(256) })).not.toThrow();
  });

  it("throws nothing but MetadataError on arbitrary headers", () => {
    const nameCharacter = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789_-");
    const name = fc
      .tuple(fc.constantFrom("x-object-meta-", "x-object-meta-", "x-remove-object-meta-", "x-account-meta-", ""), fc.string({ unit: nameCharacter, maxLength: 140 }))
      .map(([prefix, rest]) => prefix + rest);
    const value = fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: "binary", maxLength: 100 }).map(asNodeReceivesIt), fc.array(fc.string(), { maxLength: 3 }));
    fc.assert(
      fc.property(fc.dictionary(name, value, { maxKeys: 30 }), (headers) => {
        try {
          parseMetadataHeaders("object", headers);
        } catch (error) {
          expect(error).toBeInstanceOf(MetadataError);
        }
      }),
    );
  });

  it("round-trips: metadataHeaders, as Node receives them, parse back to the same metadata", () => {
    const metaName = fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/).map(titleCaseHeaderName);
    const metaValue = fc.string({ unit: "grapheme", minLength: 1, maxLength: 60 }).filter((v) => !v.includes("\0"));
    fc.assert(
      fc.property(fc.dictionary(metaName, metaValue, { maxKeys: 20 }), (meta) => {
        const sent = metadataHeaders("object", meta);
        const received: IncomingHttpHeaders = Object.fromEntries(Object.entries(sent).map(([name, value]) => [name.toLowerCase(), value]));
        expect(parseMetadataHeaders("object", received)).toEqual({ set: meta, remove: [] });
      }),
    );
  });
});

describe("applyMetadata", () => {
  const existing: Metadata = { Color: "red", Size: "big" };

  it("replace keeps only what the request sets (Swift object POST)", () => {
    const changes = parseMetadataHeaders("object", { "x-object-meta-shape": "round", "x-remove-object-meta-color": "1" });
    expect(applyMetadata(existing, changes, "replace")).toEqual({ Shape: "round" });
  });

  it("merge updates, removes and adds (Swift account/container POST, Pithos+ ?update)", () => {
    const changes = parseMetadataHeaders("container", { "x-container-meta-size": "", "x-remove-container-meta-color": "1", "x-container-meta-shape": "round" });
    expect(applyMetadata(existing, changes, "merge")).toEqual({ Shape: "round" });
    expect(applyMetadata({ color: "red" }, parseMetadataHeaders("container", { "x-container-meta-COLOR": "blue" }), "merge")).toEqual({ Color: "blue" });
  });

  it("checks the merged total against the limits", () => {
    const many = Object.fromEntries(Array.from({ length: 90 }, (_, i) => [`K${i}`, "v"]));
    expect(errorOf(() => applyMetadata(many, parseMetadataHeaders("account", { "x-account-meta-one-more": "v" }), "merge")).message).toBe("Too many metadata items; max 90");
  });
});

describe("metadataHeaders", () => {
  it("spells names as Swift returns them and encodes values for Node", () => {
    expect(metadataHeaders("object", { Mtime: "1.5", "Foo-Bar": "é", Empty: "" })).toEqual({
      "X-Object-Meta-Mtime": "1.5",
      "X-Object-Meta-Foo-Bar": "\xc3\xa9",
    });
    expect(Object.keys(metadataHeaders("account", { A: "1" }))).toEqual(["X-Account-Meta-A"]);
  });
});

describe("UTF-8 header values through Node's http, both ways", () => {
  async function exchange(sendBody: "buffer" | "string" | "none"): Promise<{ received: string | undefined; responseBytes: Buffer }> {
    let received: string | undefined;
    const server = createServer((request, response) => {
      const changes = parseMetadataHeaders("object", request.headers);
      received = changes.set.Name;
      for (const [name, value] of Object.entries(metadataHeaders("object", changes.set))) response.setHeader(name, value);
      if (sendBody === "buffer") response.end(Buffer.from("ok"));
      else if (sendBody === "string") response.end("ok");
      else response.end();
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    try {
      const socket = connect((server.address() as AddressInfo).port, "127.0.0.1");
      await once(socket, "connect");
      socket.end(
        Buffer.concat([
          Buffer.from("POST /v1/a/c/o HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 0\r\nX-Object-Meta-Name: "),
          Buffer.from("é€😀", "utf8"),
          Buffer.from("\r\n\r\n"),
        ]),
      );
      const chunks: Buffer[] = [];
      socket.on("data", (chunk: Buffer) => chunks.push(chunk));
      await once(socket, "close");
      return { received, responseBytes: Buffer.concat(chunks) };
    } finally {
      server.close();
    }
  }

  const expectedHeaderLine = Buffer.concat([Buffer.from("X-Object-Meta-Name: "), Buffer.from("é€😀", "utf8"), Buffer.from("\r\n")]);

  it("raw UTF-8 bytes in comes back as the same bytes out, with a Buffer body or none", async () => {
    for (const body of ["buffer", "none"] as const) {
      const { received, responseBytes } = await exchange(body);
      expect(received).toBe("é€😀");
      expect(responseBytes.includes(expectedHeaderLine)).toBe(true);
    }
  });

  it("a string body makes Node re-encode the headers as UTF-8 (why renderers return Buffers)", async () => {
    const { responseBytes } = await exchange("string");
    expect(responseBytes.includes(expectedHeaderLine)).toBe(false);
    expect(responseBytes.includes(Buffer.from(`X-Object-Meta-Name: ${encodeHeaderText("é€😀")}\r\n`, "utf8"))).toBe(true);
  });

  it("decodeHeaderText leaves ASCII and already-decoded text alone", () => {
    expect(decodeHeaderText("plain")).toBe("plain");
    expect(decodeHeaderText("€ from inject")).toBe("€ from inject");
    expect(decodeHeaderText("\xe9")).toBeUndefined();
  });
});
