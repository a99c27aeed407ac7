/**
 * Ranges and conditional requests on a 1000-byte object, row by row as swift.md 6 and 7 record
 * Swift 2.30.1's answers (If-Range as RFC 9110 13.1.5, which swift.md 6 allows).
 */
import { describe, expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { md5Hex, patternBytes, useHarness, type Answer, type TestUser } from "./testing/http.ts";

const data = patternBytes(1000, 7);
const etag = md5Hex(data);

/** One user with `/c/o` (the 1000 bytes) per test. */
async function withObject(user: TestUser): Promise<{ lastModified: string }> {
  await user.container("c");
  const put = await user.put("/c/o", data);
  return { lastModified: put.header("last-modified") as string };
}

function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}

function expectPartial(answer: Answer, start: number, end: number): void {
  expect(answer.status).toBe(206);
  expect(answer.header("content-range")).toBe(`bytes ${start}-${end}/1000`);
  expect(answer.header("content-length")).toBe(String(end - start + 1));
  expect(answer.body.equals(data.subarray(start, end + 1))).toBe(true);
}

function expectWhole(answer: Answer): void {
  expect(answer.status).toBe(200);
  expect(answer.header("content-range")).toBeUndefined();
  expect(answer.body.equals(data)).toBe(true);
}

describeEachEngine("pithos HTTP: ranges and conditional requests", (databases) => {
  const harness = useHarness(databases, { blockSizeBytes: 4096 });

  describe("Range (swift.md 6)", () => {
    it("single, suffix, open and clamped ranges are 206 with Content-Range", async () => {
      const alice = await harness().user("alice");
      await withObject(alice);
      const get = (range: string): Promise<Answer> => alice.request("GET", "/c/o", { headers: { range } });
      expectPartial(await get("bytes=0-9"), 0, 9);
      expectPartial(await get("bytes=-5"), 995, 999);
      expectPartial(await get("bytes=990-"), 990, 999);
      expectPartial(await get("bytes=995-5000"), 995, 999);
      expectPartial(await get("bytes=-5000"), 0, 999);
      expectPartial(await get("bytes=999-999"), 999, 999);
    });

    it("past the end → 416 with Content-Range bytes */1000 and the HTML page", async () => {
      const alice = await harness().user("alice");
      await withObject(alice);
      for (const range of ["bytes=1000-", "bytes=5000-6000", "bytes=-0"]) {
        const answer = await alice.request("GET", "/c/o", { headers: { range } });
        expect(answer.status, range).toBe(416);
        expect(answer.header("content-range"), range).toBe("bytes */1000");
        expect(answer.text()).toBe("<html><h1>Requested Range Not Satisfiable</h1><p>The Range requested is not available.</p></html>");
      }
    });

    it("invalid or unknown-unit ranges are ignored: 200 with the whole object", async () => {
      const alice = await harness().user("alice");
      await withObject(alice);
      for (const range of ["bytes=5-2", "items=0-3", "bytes=abc", "bytes=", "bytes=1-2-3", "bytes 0-5"]) {
        expectWhole(await alice.request("GET", "/c/o", { headers: { range } }));
      }
    });

    it("several ranges: 206 multipart/byteranges, Swift's framing byte for byte", async () => {
      const alice = await harness().user("alice");
      await withObject(alice);
      const answer = await alice.request("GET", "/c/o", { headers: { range: "bytes=0-0,5-6,998-" } });
      expect(answer.status).toBe(206);
      const match = /^multipart\/byteranges;boundary=([0-9a-f]{32})$/.exec(answer.header("content-type") ?? "");
      expect(match).not.toBeNull();
      const boundary = match![1]!;
      const part = (start: number, end: number): Buffer =>
        Buffer.concat([
          Buffer.from(`--${boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes ${start}-${end}/1000\r\n\r\n`),
          data.subarray(start, end + 1),
        ]);
      const expected = Buffer.concat([part(0, 0), Buffer.from("\r\n"), part(5, 6), Buffer.from("\r\n"), part(998, 999), Buffer.from(`\r\n--${boundary}--`)]);
      expect(answer.body.equals(expected)).toBe(true);
      expect(answer.header("content-length")).toBe(String(expected.length));
    });

    it("ranges across 4 KiB block edges of a multi-block object", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const big = patternBytes(3 * 4096 + 500, 3);
      await alice.put("/c/big", big);
      for (const [start, end] of [[4090, 4100], [4096, 8191], [100, 12_000], [12_287, 12_288]] as const) {
        const answer = await alice.request("GET", "/c/big", { headers: { range: `bytes=${start}-${end}` } });
        expect(answer.status).toBe(206);
        expect(answer.body.equals(big.subarray(start, end + 1)), `${start}-${end}`).toBe(true);
      }
    });
  });

  describe("conditional GET and HEAD (swift.md 7)", () => {
    it("If-None-Match: the ETag (bare or quoted) or * → 304 with Etag, Last-Modified, X-Timestamp, Content-Length 0", async () => {
      const alice = await harness().user("alice");
      const { lastModified } = await withObject(alice);
      for (const method of ["GET", "HEAD"]) {
        for (const value of [etag, `"${etag}"`, "*", `"other", "${etag}"`]) {
          const answer = await alice.request(method, "/c/o", { headers: { "if-none-match": value } });
          expect(answer.status, `${method} ${value}`).toBe(304);
          expect(answer.body.length).toBe(0);
          expect(answer.header("etag")).toBe(etag);
          expect(answer.header("last-modified")).toBe(lastModified);
          expect(answer.header("x-timestamp")).toBeDefined();
          expect(answer.header("content-length")).toBe("0");
        }
        expect((await alice.request(method, "/c/o", { headers: { "if-none-match": "\"other\"" } })).status).toBe(200);
      }
    });

    it("If-Match: the ETag (bare or quoted) or * → 200; another → 412 (GET and HEAD)", async () => {
      const alice = await harness().user("alice");
      await withObject(alice);
      for (const method of ["GET", "HEAD"]) {
        for (const value of [etag, `"${etag}"`, "*"]) {
          expect((await alice.request(method, "/c/o", { headers: { "if-match": value } })).status, `${method} ${value}`).toBe(200);
        }
        const failed = await alice.request(method, "/c/o", { headers: { "if-match": "\"0123\"" } });
        expect(failed.status).toBe(412);
      }
      expect((await alice.request("GET", "/c/o", { headers: { "if-match": etag } })).body.equals(data)).toBe(true);
    });

    it("If-Modified-Since: Last-Modified or later → 304; a second earlier → 200; garbage ignored", async () => {
      const alice = await harness().user("alice");
      const { lastModified } = await withObject(alice);
      const ms = Date.parse(lastModified);
      for (const method of ["GET", "HEAD"]) {
        expect((await alice.request(method, "/c/o", { headers: { "if-modified-since": lastModified } })).status).toBe(304);
        expect((await alice.request(method, "/c/o", { headers: { "if-modified-since": httpDate(ms + 60_000) } })).status).toBe(304);
        expect((await alice.request(method, "/c/o", { headers: { "if-modified-since": httpDate(ms - 1000) } })).status).toBe(200);
        expect((await alice.request(method, "/c/o", { headers: { "if-modified-since": "yesterday-ish" } })).status).toBe(200);
      }
    });

    it("If-Unmodified-Since: earlier than Last-Modified → 412; equal → 200; garbage ignored", async () => {
      const alice = await harness().user("alice");
      const { lastModified } = await withObject(alice);
      const ms = Date.parse(lastModified);
      expect((await alice.request("GET", "/c/o", { headers: { "if-unmodified-since": httpDate(ms - 1000) } })).status).toBe(412);
      expect((await alice.request("HEAD", "/c/o", { headers: { "if-unmodified-since": httpDate(ms - 1000) } })).status).toBe(412);
      expect((await alice.request("GET", "/c/o", { headers: { "if-unmodified-since": lastModified } })).status).toBe(200);
      expect((await alice.request("GET", "/c/o", { headers: { "if-unmodified-since": "not a date" } })).status).toBe(200);
    });

    it("with a Range: If-None-Match: ETag → 304; If-Match: ETag → 206", async () => {
      const alice = await harness().user("alice");
      await withObject(alice);
      expect((await alice.request("GET", "/c/o", { headers: { "if-none-match": etag, range: "bytes=0-9" } })).status).toBe(304);
      expectPartial(await alice.request("GET", "/c/o", { headers: { "if-match": etag, range: "bytes=0-9" } }), 0, 9);
    });

    it("If-Range: the ETag or the Last-Modified date → 206; anything else → 200 with the whole object", async () => {
      const alice = await harness().user("alice");
      const { lastModified } = await withObject(alice);
      const ranged = (ifRange: string): Promise<Answer> => alice.request("GET", "/c/o", { headers: { range: "bytes=10-19", "if-range": ifRange } });
      expectPartial(await ranged(`"${etag}"`), 10, 19);
      expectPartial(await ranged(etag), 10, 19);
      expectPartial(await ranged(lastModified), 10, 19);
      expectWhole(await ranged("\"another\""));
      expectWhole(await ranged(httpDate(Date.parse(lastModified) - 1000)));
    });
  });
});
