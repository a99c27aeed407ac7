/**
 * Bad input keeps the object store serving (STYLE.md: "input that is merely wrong gets an error
 * reply and the session goes on"): metadata over Swift's limits (swift.md 5, /info), huge
 * headers, bad UTF-8 in paths, unknown methods, broken framing — and a fast-check fuzz of random
 * methods, paths, headers and bodies, each answered with a well-formed HTTP response under 500.
 */
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { rawRequest, send, transIdPattern, useHarness, type Answer, type TestUser } from "./testing/http.ts";

/** Runs of the HTTP fuzz per engine: ~200 requests keep it near a second on a 2-core machine. */
const fuzzRuns = 200;
/** Raw-socket fuzz runs: each opens a connection the server must answer and close. */
const rawFuzzRuns = 60;

/** Every object-store answer: a status under 500, a Swift transaction id, a body matching its length. */
function expectWellFormed(answer: Answer, method: string): void {
  expect(answer.status).toBeGreaterThanOrEqual(200);
  expect(answer.status).toBeLessThan(500);
  expect(answer.header("x-trans-id")).toMatch(transIdPattern);
  const length = answer.header("content-length");
  if (method !== "HEAD" && length !== undefined && answer.status !== 304 && answer.status !== 204) expect(answer.body.length).toBe(Number(length));
  if (answer.status === 401) expect(answer.header("www-authenticate")).toMatch(/^Swift realm="/);
}

/** A normal upload and download work (in a container of its own: the fuzz may empty `c`). */
/** Any bytes as a latin1 string (what a raw request line or header may hold). */
function anyLatin1(maxLength: number): fc.Arbitrary<string> {
  return fc.uint8Array({ maxLength }).map((bytes) => Buffer.from(bytes).toString("latin1"));
}

async function stillServes(user: TestUser): Promise<void> {
  expect([201, 202]).toContain((await user.request("PUT", "/health")).status);
  const name = `/health/${Math.random().toString(36).slice(2)}`;
  expect((await user.request("PUT", name, { body: "still here" })).status).toBe(201);
  expect((await user.request("GET", name)).text()).toBe("still here");
}

describeEachEngine("pithos HTTP: bad input and fuzz", (databases) => {
  const harness = useHarness(databases, { blockSizeBytes: 4096 });
  let alice: TestUser;
  let bob: TestUser;

  beforeAll(async () => {
    alice = await harness().user("alice");
    bob = await harness().user("bob");
    await alice.container("c");
    await alice.put("/c/o", "sentinel", { "x-object-sharing": `read=${bob.uuid}` });
  });

  describe("metadata limits (swift.md 5, /info)", () => {
    it("a name over 128 bytes, a value over 256, more than 90 items or 4096 bytes in all: 400 text, nothing stored", async () => {
      const tooMuch: Array<[string, Record<string, string>, RegExp]> = [
        ["long name", { [`x-object-meta-${"n".repeat(129)}`]: "v" }, /^Metadata name too long: /],
        ["long value", { "x-object-meta-k": "v".repeat(257) }, /^Metadata value longer than 256: /],
        ["too many", Object.fromEntries(Array.from({ length: 91 }, (_, i) => [`x-object-meta-k${i}`, "v"])), /^Too many metadata items; max 90$/],
        ["too large", Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`x-object-meta-k${i}`, "v".repeat(250)])), /^Total metadata too large; max 4096$/],
      ];
      for (const [what, headers, message] of tooMuch) {
        const put = await alice.request("PUT", "/c/meta-refused", { body: "x", headers });
        expect(put.status, what).toBe(400);
        expect(put.text(), what).toMatch(message);
        expect((await alice.request("POST", "/c/o", { headers })).status, what).toBe(400);
        expect((await alice.request("PUT", "/meta-refused", { headers: Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.replace("object", "container"), value])) })).status, what).toBe(400);
      }
      expect((await alice.request("HEAD", "/c/meta-refused")).status).toBe(404);
      expect((await alice.request("HEAD", "/meta-refused")).status).toBe(404);
      expect((await alice.request("GET", "/c/o")).text()).toBe("sentinel");
      // 128 and 256 bytes exactly are fine.
      expect((await alice.request("PUT", "/c/meta-ok", { body: "x", headers: { [`x-object-meta-${"n".repeat(128)}`]: "v".repeat(256) } })).status).toBe(201);
    });

    it("a header over 8192 bytes on a metadata request is 400; one over the server's header limit 431; service goes on", async () => {
      const long = await alice.request("PUT", "/c/long-header", { body: "x", headers: { "x-object-meta-big": "v".repeat(10_000) } });
      expect(long.status).toBe(400);
      expect(long.text()).toBe("Header value too long: X-Object-Meta-Big");
      const huge = await rawRequest(harness().baseUrl, `GET /object-store/v1/${alice.account}/c HTTP/1.1\r\nHost: t\r\nX-Auth-Token: ${alice.token}\r\nX-Huge: ${"v".repeat(64 * 1024)}\r\nConnection: close\r\n\r\n`);
      expect(huge.status).toBe(431);
      expect((await alice.request("HEAD", "/c/long-header")).status).toBe(404);
      await stillServes(alice);
    });

    it("bad X-Delete-At / X-Delete-After, policy and Accept headers are 400 (406 for an unservable Accept)", async () => {
      expect((await alice.request("PUT", "/c/x", { body: "x", headers: { "x-delete-at": "soon" } })).status).toBe(400);
      expect((await alice.request("PUT", "/c/x", { body: "x", headers: { "x-delete-after": "-5" } })).status).toBe(400);
      expect((await alice.request("HEAD", "/c/x")).status).toBe(404);
      expect((await alice.request("PUT", "/q", { headers: { "x-container-policy-quota": "lots" } })).status).toBe(400);
      const accept = await alice.request("GET", "/c", { headers: { accept: ";;;" } });
      expect(accept.status).toBe(400);
      expect(accept.text()).toBe("Invalid Accept header");
      expect((await alice.request("GET", "/c", { headers: { accept: "image/png" } })).status).toBe(406);
    });
  });

  describe("paths and methods", () => {
    it("%00 in a path is 412 `Invalid UTF8 or contains NULL`; so is a bad X-Copy-From", async () => {
      const nul = await alice.request("GET", "/c/a%00b");
      expect(nul.status).toBe(412);
      expect(nul.text()).toBe("Invalid UTF8 or contains NULL");
      expect((await alice.request("PUT", "/c/x", { body: "", headers: { "x-copy-from": "/c/%ff" } })).status).toBe(412);
      expect((await alice.request("PUT", "/c/x", { body: "", headers: { "x-copy-from": "/c/a%00" } })).status).toBe(412);
    });

    it("invalid UTF-8 in a path (%ff) is Swift's 412 `Invalid UTF8 or contains NULL` (swift.md 11.3, wire/names.ts)", async () => {
      for (const path of ["/c/%ff", "/%ff", "/c/%c3%28", "/c/%ed%a0%80"]) {
        const answer = await alice.request("GET", path);
        expect(answer.status, path).toBe(412);
        expect(answer.text()).toBe("Invalid UTF8 or contains NULL");
        expect(answer.header("x-trans-id")).toMatch(transIdPattern);
      }
    });

    it("a malformed escape (`%zz`, a lone `%`) stays literal, as Python's unquote leaves it (swift.md 11.3, wire/names.ts)", async () => {
      expect((await alice.request("PUT", "/c/100%zz", { body: "a" })).status).toBe(201);
      expect((await alice.request("PUT", "/c/50%", { body: "b" })).status).toBe(201);
      expect((await alice.request("GET", "/c/100%25zz")).text()).toBe("a");
      expect((await alice.request("GET", "/c?prefix=100")).text()).toBe("100%zz\n");
    });

    it("empty segments (`//`) are 412 Bad URL", async () => {
      const empty = await alice.request("GET", "//o");
      expect(empty.status).toBe(412);
      expect(empty.text()).toBe("Bad URL");
      expect((await send(`${harness().storageRoot}//c`, { headers: { "x-auth-token": alice.token } })).status).toBe(412);
    });

    it("a method a level does not have is 405 (PUT or DELETE on the account)", async () => {
      expect((await alice.request("PUT", "")).status).toBe(405);
      expect((await alice.request("DELETE", "")).status).toBe(405);
      expect((await alice.request("HEAD", "")).status).toBe(204);
    });

    it("an unknown method is 405 Method Not Allowed, not 404", async () => {
      for (const method of ["PATCH", "PROPFIND", "LOCK"]) {
        for (const path of ["", "/c", "/c/o"]) {
          const answer = await alice.request(method, path);
          expect(answer.status, `${method} ${path}`).toBe(405);
          expect(answer.text()).toBe("<html><h1>Method Not Allowed</h1><p>The method is not allowed for this resource.</p></html>");
        }
      }
    });
  });

  describe("framing", () => {
    it("a body shorter than its Content-Length (client gone) stores nothing", async () => {
      await rawRequest(
        harness().baseUrl,
        `PUT /object-store/v1/${alice.account}/c/short HTTP/1.1\r\nHost: t\r\nX-Auth-Token: ${alice.token}\r\nContent-Length: 100000\r\n\r\n${"0123456789".repeat(500)}`,
        { halfClose: true },
      );
      // The server may still be unwinding the upload; give it a moment.
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect((await alice.request("HEAD", "/c/short")).status).toBe(404);
      await stillServes(alice);
    });

    it("a chunked body cut off mid-chunk stores nothing", async () => {
      await rawRequest(
        harness().baseUrl,
        `PUT /object-store/v1/${alice.account}/c/cut HTTP/1.1\r\nHost: t\r\nX-Auth-Token: ${alice.token}\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n400\r\nonly a little`,
        { halfClose: true },
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect((await alice.request("HEAD", "/c/cut")).status).toBe(404);
      await stillServes(alice);
    });

    it("malformed requests get a 4xx from the HTTP layer and the server goes on", async () => {
      for (const bytes of [
        "\x00\x01garbage\r\n\r\n",
        `GET /object-store/v1/${alice.account}/c/a b HTTP/1.1\r\nHost: t\r\n\r\n`,
        `PUT /object-store/v1/${alice.account}/c/x HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n`,
        `PUT /object-store/v1/${alice.account}/c/x HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx`,
        `GET /object-store/v1/${alice.account}/c HTTP/1.1\r\nHost: t\r\n`,
        "GET / HTTP/9.9\r\n\r\n",
      ]) {
        const answer = await rawRequest(harness().baseUrl, bytes, { halfClose: true });
        expect(answer.statusLine, JSON.stringify(bytes)).toMatch(/^HTTP\/1\.1 4\d\d /);
      }
      await stillServes(alice);
    });
  });

  describe("fuzz", () => {
    const headerText = fc.stringMatching(/^[\x20-\x7e]{0,40}$/);
    const pathPiece = fc.oneof(
      fc.constantFrom("c", "o", "d", "c/o", "a/b/", "..", ".", "%2F", "%ff", "%00", "%c3%a9", "%25", "%", "%zz", "+", "?", "%3F", "~", "&x=y", "%20", "very".repeat(80)),
      fc.stringMatching(/^[A-Za-z0-9._~!$&'()*+,;=:@-]{1,12}$/),
    );
    const queryPiece = fc.constantFrom(
      "format=json", "format=xml", "format=raw", "hashmap", "version=list", "version=1", "version=x", "limit=5", "limit=99999", "marker=%ff", "prefix=a",
      "delimiter=/", "path=a", "update", "multipart-manifest=put", "multipart-manifest=get", "multipart-manifest=delete", "bulk-delete", "X-Auth-Token=garbage",
      "reverse=1", "shared", "public", "end_marker=z", "until=0",
    );
    const headerValue = fc.oneof(
      headerText,
      fc.constantFrom("bytes=0-1", "bytes=-5", "bytes=9999999999999999999-", "bytes=0-0,1-1,2-2", "bytes=4000-4200", "*", "\"abc\"", "W/\"x\"", "Thu, 01 Jan 1970 00:00:00 GMT",
        "/c/o", "c/o", "/c", "/d/o", "/c/new", "c/seg/", "d/", "read=*", "write=nobody", "true", "false", "application/directory", "application/octet-stream", "0", "-1",
        "99999999999999999999", "\u00e9\u00ff"),
    );
    const headerName = fc.constantFrom(
      "range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "if-range", "content-type", "content-encoding", "content-disposition",
      "x-object-meta-a", "x-object-meta-b_c", "x-remove-object-meta-a", "x-container-meta-a", "x-account-meta-a", "x-account-group-g", "x-copy-from", "x-move-from",
      "destination", "destination-account", "x-source-account", "x-object-manifest", "x-object-sharing", "x-object-public", "x-delete-at", "x-delete-after", "etag",
      "x-container-policy-versioning", "x-container-policy-quota", "accept", "x-fresh-metadata", "content-range", "x-object-bytes", "x-source-object", "expect-ct",
    );
    // Mostly requests that reach the handlers (alice on her own account, paths that exist or
    // could), some that are refused early: a fuzz that only collects 401s tests nothing.
    const knownPath = fc.constantFrom("", "/c", "/c/o", "/c/new", "/c/d/x", "/c/dir/", "/c/seg/1", "/c/seg/2", "/d", "/d/o");
    const randomPath = fc.array(pathPiece, { maxLength: 4 }).map((pieces) => (pieces.length === 0 ? "" : `/${pieces.join("/")}`));
    const request = fc.record({
      method: fc.oneof({ arbitrary: fc.constantFrom("GET", "HEAD", "PUT", "POST", "DELETE", "COPY", "MOVE"), weight: 9 }, { arbitrary: fc.constantFrom("PATCH", "OPTIONS"), weight: 1 }),
      who: fc.oneof({ arbitrary: fc.constant("alice" as const), weight: 6 }, { arbitrary: fc.constantFrom("bob" as const, "none" as const, "garbage" as const), weight: 1 }),
      account: fc.oneof({ arbitrary: fc.constant("alice" as const), weight: 6 }, { arbitrary: fc.constantFrom("bob" as const, "bare" as const, "stranger" as const, "junk" as const), weight: 1 }),
      path: fc.oneof({ arbitrary: knownPath, weight: 3 }, { arbitrary: randomPath, weight: 1 }),
      query: fc.array(queryPiece, { maxLength: 3 }),
      headers: fc.dictionary(headerName, headerValue, { maxKeys: 5 }),
      body: fc.oneof(
        fc.constant(undefined),
        fc.uint8Array({ maxLength: 9000 }).map((bytes) => Buffer.from(bytes)),
        fc.constantFrom('{"bytes": 0, "hashes": []}', "[]", '[{"path": "/c/o"}]', "/c/o\n/c\n", "{", "null").map((text) => Buffer.from(text)),
      ),
      chunked: fc.boolean(),
    });

    it(`${fuzzRuns} random requests: each a well-formed answer under 500; the server still serves`, async () => {
      const accounts = { alice: alice.account, bob: bob.account, bare: alice.uuid, stranger: "AUTH_00000000-0000-4000-8000-000000000000", junk: "AUTH_junk" };
      const tokens = { alice: alice.token, bob: bob.token, none: null, garbage: "garbage" };
      await fc.assert(
        fc.asyncProperty(request, async (r) => {
          const path = r.path;
          const query = r.query.length === 0 ? "" : `?${r.query.join("&")}`;
          const body = r.method === "HEAD" ? undefined : r.body;
          const answer = await alice.request(r.method, `${path}${query}`, {
            account: accounts[r.account],
            token: tokens[r.who],
            headers: r.headers,
            ...(body !== undefined && (r.chunked ? { chunks: [body.subarray(0, 7), body.subarray(7)] } : { body })),
          });
          expectWellFormed(answer, r.method);
        }),
        { numRuns: fuzzRuns },
      );
      expect((await alice.request("GET", "/c/o")).status).toBeLessThan(500);
      await stillServes(alice);
    });

    it(`${rawFuzzRuns} random raw requests: a status line under 500 or a closed connection; the server still serves`, async () => {
      const rawTarget = fc.oneof(
        fc.constant(`/object-store/v1/${alice.account}/c/o`),
        fc.uint8Array({ maxLength: 40 }).map((bytes) => `/object-store/v1/${alice.account}/${Buffer.from(bytes).toString("latin1")}`),
        fc.stringMatching(/^[\x21-\x7e]{0,30}$/),
      );
      const rawRequestBytes = fc.record({
        method: fc.oneof(fc.constantFrom("GET", "PUT", "POST", "DELETE", "COPY"), fc.stringMatching(/^[A-Z]{1,8}$/), anyLatin1(6)),
        target: rawTarget,
        version: fc.constantFrom("HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "", "HTTP/1.1 extra"),
        headerLines: fc.array(fc.oneof(fc.stringMatching(/^[A-Za-z-]{1,12}: [\x20-\x7e]{0,20}$/), anyLatin1(30)), { maxLength: 4 }),
        body: fc.uint8Array({ maxLength: 64 }),
      });
      await fc.assert(
        fc.asyncProperty(rawRequestBytes, async (r) => {
          const head = [`${r.method} ${r.target} ${r.version}`, "Host: fuzz", `X-Auth-Token: ${alice.token}`, ...r.headerLines, "Connection: close"].join("\r\n");
          const answer = await rawRequest(harness().baseUrl, Buffer.concat([Buffer.from(`${head}\r\n\r\n`, "latin1"), Buffer.from(r.body)]), { halfClose: true, timeoutMs: 3000 });
          if (answer.raw.length === 0) return;
          expect(answer.statusLine).toMatch(/^HTTP\/1\.1 \d{3} /);
          expect(answer.status).toBeLessThan(500);
        }),
        { numRuns: rawFuzzRuns },
      );
      await stillServes(alice);
    });
  });
});
