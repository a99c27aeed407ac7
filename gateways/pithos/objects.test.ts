/**
 * Objects over HTTP (swift.md 5, 10, 11): uploads with a length, chunked and with
 * 100-continue, ETag checks, create-only PUT, HEAD/GET headers, metadata POST, type guessing,
 * the names clients send, delete and expiry, multi-block data at 4 KiB blocks.
 */
import { describe, expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { encodePath, expectedLastModified, headerBytes, md5Hex, patternBytes, rawRequest, useHarness, xTimestampPattern } from "./testing/http.ts";

const emptyMd5 = "d41d8cd98f00b204e9800998ecf8427e";
const blockSizeBytes = 4096;

describeEachEngine("pithos HTTP: objects", (databases) => {
  const harness = useHarness(databases, { blockSizeBytes });

  describe("PUT", () => {
    it("with Content-Length: 201, bare MD5 Etag, Last-Modified, empty body; GET returns the bytes", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const put = await alice.request("PUT", "/c/hello.txt", { body: "hello world" });
      expect(put.status).toBe(201);
      expect(put.header("etag")).toBe(md5Hex("hello world"));
      expect(put.header("last-modified")).toMatch(/ GMT$/);
      expect(put.body.length).toBe(0);
      const get = await alice.request("GET", "/c/hello.txt");
      expect(get.status).toBe(200);
      expect(get.text()).toBe("hello world");
      expect(get.header("content-length")).toBe("11");
      expect(get.header("etag")).toBe(md5Hex("hello world"));
      expect(get.header("last-modified")).toBe(put.header("last-modified"));
    });

    it("chunked (rclone): the chunks are the object, Etag their MD5", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const chunks = [patternBytes(1000, 1), patternBytes(5000, 2), patternBytes(1, 3), patternBytes(7000, 4)];
      const data = Buffer.concat(chunks);
      const put = await alice.request("PUT", "/c/chunked", { chunks });
      expect(put.status).toBe(201);
      expect(put.header("etag")).toBe(md5Hex(data));
      const get = await alice.request("GET", "/c/chunked");
      expect(get.header("content-length")).toBe(String(data.length));
      expect(get.body.equals(data)).toBe(true);
    });

    it("neither Content-Length nor chunked → 411, nothing stored", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const answer = await rawRequest(
        harness().baseUrl,
        `PUT /object-store/v1/${alice.account}/c/nolength HTTP/1.1\r\nHost: test\r\nX-Auth-Token: ${alice.token}\r\nConnection: close\r\n\r\n`,
      );
      expect(answer.status).toBe(411);
      expect(answer.body.toString()).toBe("<html><h1>Length Required</h1><p>Content-Length header required.</p></html>");
      expect((await alice.request("HEAD", "/c/nolength")).status).toBe(404);
    });

    it("Expect: 100-continue is answered and the body then taken", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const put = await alice.request("PUT", "/c/continued", { body: "after the 100", expectContinue: true });
      expect(put.status).toBe(201);
      expect((await alice.request("GET", "/c/continued")).text()).toBe("after the 100");
    });

    it("ETag that matches (bare or quoted) → 201; one that does not → 422 and nothing stored", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      expect((await alice.request("PUT", "/c/bare", { body: "abc", headers: { etag: md5Hex("abc") } })).status).toBe(201);
      expect((await alice.request("PUT", "/c/quoted", { body: "abc", headers: { etag: `"${md5Hex("abc")}"` } })).status).toBe(201);
      const mismatch = await alice.request("PUT", "/c/wrong", { body: "abc", headers: { etag: md5Hex("abd") } });
      expect(mismatch.status).toBe(422);
      expect((await alice.request("HEAD", "/c/wrong")).status).toBe(404);
      // Over an existing object: the old version stays.
      const over = await alice.request("PUT", "/c/bare", { body: "new data", headers: { etag: md5Hex("other") } });
      expect(over.status).toBe(422);
      expect((await alice.request("GET", "/c/bare")).text()).toBe("abc");
      expect((await alice.request("HEAD", "/c")).header("x-container-object-count")).toBe("2");
    });

    it("If-None-Match: * → 201 for a new object, 412 over an existing one (data kept)", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      expect((await alice.request("PUT", "/c/once", { body: "first", headers: { "if-none-match": "*" } })).status).toBe(201);
      expect((await alice.request("PUT", "/c/once", { body: "second", headers: { "if-none-match": "*" } })).status).toBe(412);
      expect((await alice.request("GET", "/c/once")).text()).toBe("first");
    });

    it("an overwrite replaces data and Etag and makes a new X-Object-Version", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const first = await alice.put("/c/o", "one");
      const second = await alice.put("/c/o", "two!");
      expect(Number(second.header("x-object-version"))).toBeGreaterThan(Number(first.header("x-object-version")));
      const get = await alice.request("GET", "/c/o");
      expect(get.text()).toBe("two!");
      expect(get.header("etag")).toBe(md5Hex("two!"));
      expect(get.header("x-object-version")).toBe(second.header("x-object-version"));
    });

    it("a 0-byte object (with Content-Length 0, and chunked as rclone sends it)", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      expect((await alice.put("/c/empty", "")).header("etag")).toBe(emptyMd5);
      expect((await alice.request("PUT", "/c/empty-chunked", { chunks: [] })).status).toBe(201);
      for (const name of ["empty", "empty-chunked"]) {
        const head = await alice.request("HEAD", `/c/${name}`);
        expect(head.status).toBe(200);
        expect(head.header("content-length")).toBe("0");
        expect(head.header("etag")).toBe(emptyMd5);
        const get = await alice.request("GET", `/c/${name}`);
        expect(get.status).toBe(200);
        expect(get.body.length).toBe(0);
      }
    });

    it("multi-block objects round-trip byte for byte (4 KiB blocks, lengths around block edges)", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      for (const length of [blockSizeBytes - 1, blockSizeBytes, blockSizeBytes + 1, 5 * blockSizeBytes + 123]) {
        const data = patternBytes(length, length);
        expect((await alice.put(`/c/blocks-${length}`, data)).header("etag")).toBe(md5Hex(data));
        const get = await alice.request("GET", `/c/blocks-${length}`);
        expect(get.body.equals(data), `length ${length}`).toBe(true);
      }
      // Blocks of zeros inside the data, chunked at sizes that cross block edges.
      const zeros = Buffer.concat([patternBytes(3000, 9), Buffer.alloc(2 * blockSizeBytes), patternBytes(4000, 10), Buffer.alloc(100)]);
      const chunks = [zeros.subarray(0, 4095), zeros.subarray(4095, 4097), zeros.subarray(4097, 12_000), zeros.subarray(12_000)];
      expect((await alice.request("PUT", "/c/zeros", { chunks })).status).toBe(201);
      const get = await alice.request("GET", "/c/zeros");
      expect(get.body.equals(zeros)).toBe(true);
      expect(get.header("etag")).toBe(md5Hex(zeros));
    });

    it("Content-Encoding and Content-Disposition are stored and returned; gzip is never applied", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const data = "x".repeat(5000);
      await alice.put("/c/plain", data);
      const get = await alice.request("GET", "/c/plain", { headers: { "accept-encoding": "gzip" } });
      expect(get.header("content-encoding")).toBeUndefined();
      expect(get.text()).toBe(data);
      expect(get.header("etag")).toBe(md5Hex(data));
      await alice.put("/c/packed", "zz", { "content-encoding": "gzip", "content-disposition": "attachment; filename=\"z.gz\"" });
      const head = await alice.request("HEAD", "/c/packed");
      expect(head.header("content-encoding")).toBe("gzip");
      expect(head.header("content-disposition")).toBe("attachment; filename=\"z.gz\"");
    });
  });

  describe("HEAD and GET headers", () => {
    it("Content-Type, Content-Length, Etag, X-Timestamp (5 decimals), Last-Modified its ceiling, Accept-Ranges, metadata", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/doc.txt", "some text", { "x-object-meta-colour": "green", "x-object-meta-mtime": "1700000000.123456789" });
      const head = await alice.request("HEAD", "/c/doc.txt");
      expect(head.status).toBe(200);
      expect(head.body.length).toBe(0);
      expect(head.header("content-type")).toBe("text/plain");
      expect(head.header("content-length")).toBe("9");
      expect(head.header("etag")).toBe(md5Hex("some text"));
      expect(head.header("accept-ranges")).toBe("bytes");
      const xTimestamp = head.header("x-timestamp") as string;
      expect(xTimestamp).toMatch(xTimestampPattern);
      expect(head.header("last-modified")).toBe(expectedLastModified(xTimestamp));
      expect(head.header("x-object-meta-colour")).toBe("green");
      // rclone's modification time must come back exactly (swift.md 11.10).
      expect(head.header("x-object-meta-mtime")).toBe("1700000000.123456789");
      const get = await alice.request("GET", "/c/doc.txt");
      for (const name of ["content-type", "etag", "x-timestamp", "last-modified", "x-object-meta-colour", "x-object-meta-mtime"]) {
        expect(get.header(name), name).toBe(head.header(name));
      }
    });

    it("HEAD with a Range is 200 with the whole length (swift.md 5)", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/o", "0123456789");
      const head = await alice.request("HEAD", "/c/o", { headers: { range: "bytes=0-1" } });
      expect(head.status).toBe(200);
      expect(head.header("content-length")).toBe("10");
      expect(head.header("content-range")).toBeUndefined();
    });

    it("UTF-8 metadata values are stored and returned as raw UTF-8", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/o", "x", { "x-object-meta-title": headerBytes("Καλημέρα κόσμε ✓") });
      const head = await alice.request("HEAD", "/c/o");
      expect(Buffer.from(head.headers["x-object-meta-title"] as string, "latin1").equals(Buffer.from("Καλημέρα κόσμε ✓"))).toBe(true);
    });

    it("Content-Type: guessed from the extension when absent, stored verbatim when given", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/a.txt", "x");
      await alice.put("/c/b.JPG", "x");
      await alice.put("/c/noext", "x");
      await alice.put("/c/weird.zzqq", "x");
      await alice.put("/c/form.txt", "x", { "content-type": "application/x-www-form-urlencoded" });
      const types = await Promise.all(["a.txt", "b.JPG", "noext", "weird.zzqq", "form.txt"].map(async (name) => (await alice.request("HEAD", `/c/${name}`)).header("content-type")));
      expect(types).toEqual(["text/plain", "image/jpeg", "application/octet-stream", "application/octet-stream", "application/x-www-form-urlencoded"]);
    });
  });

  describe("POST metadata", () => {
    it("replaces all user metadata (202), keeps Content-Type and data", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const put = await alice.put("/c/o.txt", "data", { "x-object-meta-a": "1", "x-object-meta-b": "2" });
      const post = await alice.request("POST", "/c/o.txt", { headers: { "x-object-meta-b": "two" } });
      expect(post.status).toBe(202);
      const head = await alice.request("HEAD", "/c/o.txt");
      expect(head.header("x-object-meta-a")).toBeUndefined();
      expect(head.header("x-object-meta-b")).toBe("two");
      expect(head.header("content-type")).toBe("text/plain");
      expect(head.header("etag")).toBe(put.header("etag"));
      expect((await alice.request("GET", "/c/o.txt")).text()).toBe("data");
    });

    it("a Content-Type in the POST changes it", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/o.txt", "data");
      expect((await alice.request("POST", "/c/o.txt", { headers: { "content-type": "application/json" } })).status).toBe(202);
      expect((await alice.request("HEAD", "/c/o.txt")).header("content-type")).toBe("application/json");
    });

    it("`?update` merges (Pithos+), and removes with an empty value", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/o", "data", { "x-object-meta-a": "1", "x-object-meta-b": "2" });
      expect((await alice.request("POST", "/c/o?update", { headers: { "x-object-meta-c": "3", "x-object-meta-a": "" } })).status).toBe(202);
      const head = await alice.request("HEAD", "/c/o");
      expect([head.header("x-object-meta-a"), head.header("x-object-meta-b"), head.header("x-object-meta-c")]).toEqual([undefined, "2", "3"]);
    });

    it("POST to a missing object is 404", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      expect((await alice.request("POST", "/c/missing", { headers: { "x-object-meta-a": "1" } })).status).toBe(404);
    });
  });

  describe("names", () => {
    it("`+`, `&`, `=` unencoded; %2F, spaces, `?`, `#`, `%`, quotes, UTF-8, trailing `/`: each its own object", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      // [path as sent, the object's name]
      const cases: Array<[string, string]> = [
        ["/tree/sub%20dir/a+b&c=d.txt", "tree/sub dir/a+b&c=d.txt"],
        ["/x%2Fy", "x/y"],
        ["/what%3F", "what?"],
        ["/hash%23tag", "hash#tag"],
        ["/100%25", "100%"],
        ["/%22quoted%27", "\"quoted'"],
        ["/%20leading", " leading"],
        [`/${encodePath("Ελληνικά/файл 😀")}`, "Ελληνικά/файл 😀"],
        ["/folder/", "folder/"],
      ];
      for (const [index, [path, name]] of cases.entries()) await alice.put(`/c${path}`, `content ${index}: ${name}`);
      for (const [index, [path, name]] of cases.entries()) {
        expect((await alice.request("GET", `/c${path}`)).text(), name).toBe(`content ${index}: ${name}`);
      }
      expect((await alice.request("GET", "/c/folder")).status).toBe(404);
      expect((await alice.request("GET", "/c/x/y")).text()).toBe("content 1: x/y");
      expect((await alice.request("GET", "/c/tree/sub%20dir/a%2Bb%26c%3Dd.txt")).text()).toBe("content 0: tree/sub dir/a+b&c=d.txt");
      const listed = (await alice.request("GET", "/c?format=json")).json<Array<{ name: string }>>().map((entry) => entry.name);
      expect(listed).toEqual(cases.map(([, name]) => name).sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))));
    });

    it("a name of 1024 bytes is taken, 1025 is 400", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      expect((await alice.request("PUT", `/c/${"n".repeat(1024)}`, { body: "x" })).status).toBe(201);
      expect((await alice.request("PUT", `/c/${"n".repeat(1025)}`, { body: "x" })).status).toBe(400);
    });
  });

  describe("DELETE and expiry", () => {
    it("DELETE 204, then GET, HEAD, DELETE 404", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/o", "x");
      const deleted = await alice.request("DELETE", "/c/o");
      expect(deleted.status).toBe(204);
      expect(deleted.body.length).toBe(0);
      for (const method of ["GET", "HEAD", "DELETE"]) expect((await alice.request(method, "/c/o")).status, method).toBe(404);
      expect((await alice.request("GET", "/c")).status).toBe(204);
    });

    it("X-Delete-At in the future is echoed; X-Delete-After makes the object 404 once past", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const at = Math.floor(Date.now() / 1000) + 3600;
      await alice.put("/c/later", "x", { "x-delete-at": String(at) });
      const head = await alice.request("HEAD", "/c/later");
      expect(head.status).toBe(200);
      expect(head.header("x-delete-at")).toBe(String(at));
      await alice.put("/c/soon", "x", { "x-delete-after": "1" });
      expect((await alice.request("GET", "/c/soon")).status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      expect((await alice.request("GET", "/c/soon")).status).toBe(404);
      expect((await alice.request("HEAD", "/c/soon")).status).toBe(404);
      expect((await alice.request("GET", "/c/later")).status).toBe(200);
    });
  });
});
