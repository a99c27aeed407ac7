/**
 * Large objects and bulk delete over HTTP (swift.md 8, 9): DLO (`X-Object-Manifest`), SLO
 * (`?multipart-manifest=put|get|delete`), ranges across segment boundaries, and
 * `?bulk-delete` as the swift CLI and rclone send it.
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { md5Hex, patternBytes, useHarness, type TestUser } from "./testing/http.ts";

const blockSizeBytes = 4096;

/** Segments of unequal sizes that cross block edges; returns their bytes in order. */
async function uploadSegments(user: TestUser, container: string, prefix: string): Promise<Buffer[]> {
  const segments = [patternBytes(5000, 1), patternBytes(4096, 2), patternBytes(1, 3), patternBytes(7000, 4)];
  for (const [index, segment] of segments.entries()) await user.put(`/${container}/${prefix}${String(index).padStart(8, "0")}`, segment);
  return segments;
}

/** swift.md 9: `"<md5 of the concatenated segment ETag hex strings>"`. */
function manifestEtag(segments: readonly Buffer[]): string {
  return `"${createHash("md5").update(segments.map((segment) => md5Hex(segment)).join("")).digest("hex")}"`;
}

describeEachEngine("pithos HTTP: large objects and bulk delete", (databases) => {
  const harness = useHarness(databases, { blockSizeBytes });

  describe("DLO (X-Object-Manifest)", () => {
    it("a 0-byte manifest: GET concatenates the segments in listing order; HEAD sums; quoted Etag of the segment etags", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.container("c_segments");
      const segments = await uploadSegments(alice, "c_segments", "big/1700000000/17097/");
      const data = Buffer.concat(segments);
      const put = await alice.request("PUT", "/c/big", { body: "", headers: { "x-object-manifest": "c_segments/big/1700000000/17097/" } });
      expect(put.status).toBe(201);
      const head = await alice.request("HEAD", "/c/big");
      expect(head.status).toBe(200);
      expect(head.header("content-length")).toBe(String(data.length));
      expect(head.header("etag")).toBe(manifestEtag(segments));
      expect(head.header("x-object-manifest")).toBe("c_segments/big/1700000000/17097/");
      const get = await alice.request("GET", "/c/big");
      expect(get.body.equals(data)).toBe(true);
      expect(get.header("etag")).toBe(manifestEtag(segments));
      // The listing shows the manifest itself: 0 bytes, the empty MD5 (swift.md 8).
      const listed = (await alice.request("GET", "/c?format=json")).json<Array<{ name: string; bytes: number; hash: string }>>();
      expect(listed).toEqual([expect.objectContaining({ name: "big", bytes: 0, hash: "d41d8cd98f00b204e9800998ecf8427e" })]);
      // Conditional requests compare against the manifest's ETag, quoted or bare.
      expect((await alice.request("GET", "/c/big", { headers: { "if-none-match": manifestEtag(segments) } })).status).toBe(304);
      expect((await alice.request("GET", "/c/big", { headers: { "if-none-match": manifestEtag(segments).slice(1, -1) } })).status).toBe(304);
    });

    it("ranges across segment boundaries, and a multi-range", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const segments = await uploadSegments(alice, "c", "seg/");
      const data = Buffer.concat(segments);
      await alice.put("/c/dlo", "", { "x-object-manifest": "c/seg/" });
      for (const [start, end] of [[4990, 5010], [9090, 9100], [0, data.length - 1], [9096, 9096], [100, 16_000]] as const) {
        const answer = await alice.request("GET", "/c/dlo", { headers: { range: `bytes=${start}-${end}` } });
        expect(answer.status).toBe(206);
        expect(answer.header("content-range")).toBe(`bytes ${start}-${end}/${data.length}`);
        expect(answer.body.equals(data.subarray(start, end + 1)), `${start}-${end}`).toBe(true);
      }
      const suffix = await alice.request("GET", "/c/dlo", { headers: { range: "bytes=-7001" } });
      expect(suffix.body.equals(data.subarray(data.length - 7001))).toBe(true);
      const multi = await alice.request("GET", "/c/dlo", { headers: { range: "bytes=4999-5000,9096-9097" } });
      expect(multi.status).toBe(206);
      expect(multi.body.includes(data.subarray(4999, 5001))).toBe(true);
      expect(multi.body.includes(Buffer.from(`Content-Range: bytes 9096-9097/${data.length}`))).toBe(true);
    });

    it("is dynamic: a segment added later is part of the next GET; a chunked 0-byte manifest works (rclone)", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/parts/1", "one,");
      expect((await alice.request("PUT", "/c/whole", { chunks: [], headers: { "x-object-manifest": "c/parts/" } })).status).toBe(201);
      expect((await alice.request("GET", "/c/whole")).text()).toBe("one,");
      await alice.put("/c/parts/2", "two");
      expect((await alice.request("GET", "/c/whole")).text()).toBe("one,two");
    });

    it("a malformed X-Object-Manifest is 400 and stores nothing", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      for (const manifest of ["nocontainer", "/c/x", "c/", "c/a?b"]) {
        expect((await alice.request("PUT", "/c/m", { body: "", headers: { "x-object-manifest": manifest } })).status, manifest).toBe(400);
      }
      expect((await alice.request("HEAD", "/c/m")).status).toBe(404);
    });

    it("copying a DLO copies the assembled content into a plain object (swift.md 9)", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const segments = await uploadSegments(alice, "c", "seg/");
      const data = Buffer.concat(segments);
      await alice.put("/c/dlo", "", { "x-object-manifest": "c/seg/" });
      expect((await alice.request("PUT", "/c/plain", { body: "", headers: { "x-copy-from": "/c/dlo" } })).status).toBe(201);
      const head = await alice.request("HEAD", "/c/plain");
      expect(head.header("x-object-manifest")).toBeUndefined();
      expect(head.header("etag")).toBe(md5Hex(data));
      // Removing the segments leaves the copy whole.
      for (let index = 0; index < segments.length; index++) await alice.request("DELETE", `/c/seg/${String(index).padStart(8, "0")}`);
      expect((await alice.request("GET", "/c/plain")).body.equals(data)).toBe(true);
    });
  });

  describe("SLO (?multipart-manifest)", () => {
    async function sloSetup(alice: TestUser): Promise<{ segments: Buffer[]; data: Buffer; manifest: Array<{ path: string; etag: string; size_bytes: number }> }> {
      await alice.container("c");
      await alice.container("c_segments");
      const segments = await uploadSegments(alice, "c_segments", "obj/slo/");
      const manifest = segments.map((segment, index) => ({ path: `/c_segments/obj/slo/${String(index).padStart(8, "0")}`, etag: md5Hex(segment), size_bytes: segment.length }));
      return { segments, data: Buffer.concat(segments), manifest };
    }

    it("PUT ?multipart-manifest=put → 201 with the quoted Etag; HEAD and GET serve the concatenation", async () => {
      const alice = await harness().user("alice");
      const { segments, data, manifest } = await sloSetup(alice);
      const put = await alice.request("PUT", "/c/obj?multipart-manifest=put", { body: JSON.stringify(manifest) });
      expect(put.status).toBe(201);
      expect(put.header("etag")).toBe(manifestEtag(segments));
      const head = await alice.request("HEAD", "/c/obj");
      expect(head.header("x-static-large-object")).toBe("True");
      expect(head.header("content-length")).toBe(String(data.length));
      expect(head.header("etag")).toBe(manifestEtag(segments));
      const get = await alice.request("GET", "/c/obj");
      expect(get.body.equals(data)).toBe(true);
      const range = await alice.request("GET", "/c/obj", { headers: { range: "bytes=4998-9097" } });
      expect(range.status).toBe(206);
      expect(range.body.equals(data.subarray(4998, 9098))).toBe(true);
    });

    it("?multipart-manifest=get returns the stored manifest; &format=raw the PUT form", async () => {
      const alice = await harness().user("alice");
      const { manifest } = await sloSetup(alice);
      await alice.put("/c/obj?multipart-manifest=put", JSON.stringify(manifest));
      const stored = await alice.request("GET", "/c/obj?multipart-manifest=get");
      expect(stored.status).toBe(200);
      expect(stored.header("content-type")).toBe("application/json; charset=utf-8");
      expect(stored.json()).toEqual(manifest.map((segment) => expect.objectContaining({ name: segment.path, bytes: segment.size_bytes, hash: segment.etag })));
      const raw = await alice.request("GET", "/c/obj?multipart-manifest=get&format=raw");
      expect(raw.json()).toEqual(manifest);
    });

    it("SLO HEAD carries X-Manifest-Etag, the MD5 of the stored manifest (swift.md 9)", async () => {
      const alice = await harness().user("alice");
      const { manifest } = await sloSetup(alice);
      await alice.put("/c/obj?multipart-manifest=put", JSON.stringify(manifest));
      expect((await alice.request("HEAD", "/c/obj")).header("x-manifest-etag")).toMatch(/^[0-9a-f]{32}$/);
    });

    it("?multipart-manifest=get entries carry last_modified (swift.md 9)", async () => {
      const alice = await harness().user("alice");
      const { manifest } = await sloSetup(alice);
      await alice.put("/c/obj?multipart-manifest=put", JSON.stringify(manifest));
      const stored = await alice.request("GET", "/c/obj?multipart-manifest=get");
      for (const entry of stored.json<Array<Record<string, unknown>>>()) expect(entry["last_modified"]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
    });

    it("an SLO's listing entry has bytes = the total size and slo_etag (swift.md 8)", async () => {
      const alice = await harness().user("alice");
      const { segments, data, manifest } = await sloSetup(alice);
      await alice.put("/c/obj?multipart-manifest=put", JSON.stringify(manifest));
      const listed = (await alice.request("GET", "/c?format=json")).json<Array<Record<string, unknown>>>();
      expect(listed[0]).toMatchObject({ name: "obj", bytes: data.length, slo_etag: manifestEtag(segments) });
    });

    it("a manifest naming a missing segment, or with a wrong etag or size, is 400 and stores nothing", async () => {
      const alice = await harness().user("alice");
      const { manifest } = await sloSetup(alice);
      const bad = [
        [{ ...manifest[0]!, path: "/c_segments/missing" }],
        [{ ...manifest[0]!, etag: md5Hex("other") }],
        [{ ...manifest[0]!, size_bytes: 1 }],
        [],
        { not: "a list" },
      ];
      for (const body of bad) {
        expect((await alice.request("PUT", "/c/obj?multipart-manifest=put", { body: JSON.stringify(body) })).status, JSON.stringify(body)).toBe(400);
      }
      expect((await alice.request("PUT", "/c/obj?multipart-manifest=put", { body: "[not json" })).status).toBe(400);
      expect((await alice.request("HEAD", "/c/obj")).status).toBe(404);
      // null etag and size_bytes are accepted as "don't check" (swift.md 9).
      expect((await alice.request("PUT", "/c/obj?multipart-manifest=put", { body: JSON.stringify([{ path: manifest[1]!.path, etag: null, size_bytes: null }]) })).status).toBe(201);
    });

    it("DELETE ?multipart-manifest=delete removes the manifest and its segments: 200 with a bulk report", async () => {
      const alice = await harness().user("alice");
      const { manifest } = await sloSetup(alice);
      await alice.put("/c/obj?multipart-manifest=put", JSON.stringify(manifest));
      const deleted = await alice.request("DELETE", "/c/obj?multipart-manifest=delete", { headers: { accept: "application/json" } });
      expect(deleted.status).toBe(200);
      expect(deleted.json()).toEqual({ "Response Status": "200 OK", "Response Body": "", "Number Deleted": manifest.length + 1, "Number Not Found": 0, Errors: [] });
      expect((await alice.request("HEAD", "/c/obj")).status).toBe(404);
      expect((await alice.request("GET", "/c_segments")).status).toBe(204);
    });
  });

  describe("bulk delete", () => {
    it("POST ?bulk-delete (swift CLI): URL-encoded lines, JSON report with counts; containers after their objects", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.container("gone");
      await alice.put("/c/a b", "1");
      await alice.put(`/c/${encodeURIComponent("é+ü")}`, "2");
      await alice.put("/c/keep", "3");
      await alice.put("/gone/x", "4");
      const body = ["/c/a%20b", `/c/${encodeURIComponent("é+ü")}`, "/c/missing", "/gone", "/gone/x"].join("\n");
      const answer = await alice.request("POST", "?bulk-delete", { body, headers: { "content-type": "text/plain", accept: "application/json" } });
      expect(answer.status).toBe(200);
      expect(answer.header("content-type")).toMatch(/^application\/json/);
      expect(answer.json()).toEqual({ "Response Status": "200 OK", "Response Body": "", "Number Deleted": 4, "Number Not Found": 1, Errors: [] });
      expect((await alice.request("GET", "/c")).text()).toBe("keep\n");
      expect((await alice.request("HEAD", "/gone")).status).toBe(404);
    });

    it("DELETE ?bulk-delete=1 (rclone) works the same; a non-empty container is an error entry", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/a", "1");
      await alice.put("/c/b", "2");
      const answer = await alice.request("DELETE", "?bulk-delete=1", { body: "/c/a\n/c\n", headers: { "content-type": "text/plain", accept: "application/json" } });
      expect(answer.status).toBe(200);
      expect(answer.json()).toEqual({ "Response Status": "400 Bad Request", "Response Body": "", "Number Deleted": 1, "Number Not Found": 0, Errors: [["/c", "409 Conflict"]] });
      expect((await alice.request("GET", "/c")).text()).toBe("b\n");
    });

    it("without Accept: application/json the report is text", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/a", "1");
      const answer = await alice.request("POST", "?bulk-delete", { body: "/c/a\n/c/zz\n", headers: { "content-type": "text/plain" } });
      expect(answer.status).toBe(200);
      expect(answer.header("content-type")).toMatch(/^text\/plain/);
      expect(answer.text()).toContain("Number Deleted: 1\n");
      expect(answer.text()).toContain("Number Not Found: 1\n");
      expect(answer.text()).toContain("Response Status: 200 OK\n");
    });
  });
});
