/**
 * Glance v2 image data, members and tags over HTTP, on SQLite and PostgreSQL: uploads with
 * Content-Length and chunked, downloads with Content-MD5, the status machine, quota, and the
 * members and tags routes with their errors.
 */
import { createHash, randomUUID } from "node:crypto";
import { expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { patternBytes } from "../pithos/testing/http.ts";
import { imageUser, useImageHarness } from "./testing/harness.ts";

const octets = { "content-type": "application/octet-stream" };
const rawBare = { disk_format: "raw", container_format: "bare" };

function md5(data: Buffer): string {
  return createHash("md5").update(data).digest("hex");
}

describeEachEngine("Glance v2 image data, members and tags", (databases) => {
  const harness = useImageHarness(databases, { blockSizeBytes: 4096 });

  it("uploads with Content-Length (Accept: \"\") and chunked, and downloads byte-identical with a hex Content-MD5", async () => {
    const alice = await harness().user("alice");
    for (const [name, data, chunked] of [["sized", patternBytes(10_000, 3), false], ["chunked", patternBytes(4096 * 3 + 17, 4), true], ["empty", Buffer.alloc(0), false]] as const) {
      const created = await alice.expectJson("POST", "/v2/images", 201, { json: { name, ...rawBare } });
      const id = created["id"] as string;
      const upload = chunked
        ? await alice.image("PUT", `/v2/images/${id}/file`, { headers: { ...octets, accept: "" }, chunks: [data.subarray(0, 263), data.subarray(263, 5000), data.subarray(5000)] })
        : await alice.image("PUT", `/v2/images/${id}/file`, { headers: { ...octets, accept: "" }, body: data });
      expect(upload.status).toBe(204);
      const image = await alice.expectJson("GET", `/v2/images/${id}`, 200);
      expect(image).toMatchObject({ status: "active", size: data.length, virtual_size: data.length, checksum: md5(data) });
      const download = await alice.image("GET", `/v2/images/${id}/file`);
      expect(download.status).toBe(200);
      expect(download.header("content-type")).toBe("application/octet-stream");
      expect(download.header("content-md5")).toBe(md5(data));
      expect(download.body.equals(data)).toBe(true);
      // The same bytes are the Pithos+ file images/<id>.
      const file = await alice.objectRequest("GET", `/images/${id}`);
      expect(file.body.equals(data)).toBe(true);
    }
  });

  it("walks the status machine: 204 download while queued, 409 on a second upload, 400 without formats, 415 for other media", async () => {
    const alice = await harness().user("alice");
    const id = (await alice.expectJson("POST", "/v2/images", 201, { json: { name: "s", ...rawBare } }))["id"] as string;
    expect((await alice.image("GET", `/v2/images/${id}/file`)).status).toBe(204);
    const wrongMedia = await alice.image("PUT", `/v2/images/${id}/file`, { headers: { "content-type": "text/plain" }, body: "x" });
    expect(wrongMedia.status).toBe(415);
    await alice.expectJson("PUT", `/v2/images/${id}/file`, 204, { headers: octets, body: Buffer.from("data") });
    const again = await alice.image("PUT", `/v2/images/${id}/file`, { headers: octets, body: Buffer.from("more") });
    expect(again.status).toBe(409);
    expect(again.json<{ message: string }>().message).toMatch(/active to saving/);

    const noFormats = (await alice.expectJson("POST", "/v2/images", 201, { json: { name: "f" } }))["id"] as string;
    const refused = await alice.image("PUT", `/v2/images/${noFormats}/file`, { headers: octets, body: Buffer.from("x") });
    expect(refused.status).toBe(400);
    expect(refused.json<{ message: string }>().message).toMatch(/disk_format, container_format must be set/);
    // The refusal left it queued: set the formats and upload.
    await alice.expectJson("PATCH", `/v2/images/${noFormats}`, 200, {
      headers: { "content-type": "application/openstack-images-v2.1-json-patch" },
      body: JSON.stringify([{ op: "add", path: "/disk_format", value: "raw" }, { op: "add", path: "/container_format", value: "bare" }]),
    });
    await alice.expectJson("PUT", `/v2/images/${noFormats}/file`, 204, { headers: octets, body: Buffer.from("x") });
    // Formats are fixed once the image has data (Glance).
    const fixed = await alice.image("PATCH", `/v2/images/${noFormats}`, {
      headers: { "content-type": "application/openstack-images-v2.1-json-patch" },
      body: JSON.stringify([{ op: "replace", path: "/disk_format", value: "iso" }]),
    });
    expect(fixed.status).toBe(403);
  });

  it("refuses uploads by others (403 if they see the image, 404 if not) and over quota (413, back to queued)", async () => {
    const alice = await harness().user("alice");
    const bob = await harness().user("bob");
    const shared = (await alice.expectJson("POST", "/v2/images", 201, { json: { name: "pub", ...rawBare, visibility: "public" } }))["id"] as string;
    const hidden = (await alice.expectJson("POST", "/v2/images", 201, { json: { name: "priv", ...rawBare } }))["id"] as string;
    expect((await bob.image("PUT", `/v2/images/${shared}/file`, { headers: octets, body: Buffer.from("x") })).status).toBe(403);
    expect((await bob.image("PUT", `/v2/images/${hidden}/file`, { headers: octets, body: Buffer.from("x") })).status).toBe(404);
    expect((await bob.image("GET", `/v2/images/${hidden}/file`)).status).toBe(404);
    expect((await bob.image("PUT", `/v2/images/${randomUUID()}/file`, { headers: octets, body: Buffer.from("x") })).status).toBe(404);

    const poor = await harness().pithos.user("poor", { diskspaceBytes: 1000 });
    const carol = imageUser(harness().pithos, poor);
    const id = (await carol.expectJson("POST", "/v2/images", 201, { json: { name: "big", ...rawBare } }))["id"] as string;
    const tooBig = await carol.image("PUT", `/v2/images/${id}/file`, { headers: octets, body: patternBytes(5000) });
    expect(tooBig.status).toBe(413);
    expect((await carol.expectJson("GET", `/v2/images/${id}`, 200))["status"]).toBe("queued");
    await carol.expectJson("PUT", `/v2/images/${id}/file`, 204, { headers: octets, body: patternBytes(900) });
  });

  it("a public image is readable by everyone; sharing it with a member shows it to that member only", async () => {
    const alice = await harness().user("alice");
    const bob = await harness().user("bob");
    const carol = await harness().user("carol");
    const data = patternBytes(9000, 7);
    const id = (await alice.uploadImage("to-share", data))["id"] as string;
    expect((await bob.image("GET", `/v2/images/${id}/file`)).status).toBe(404);

    const member = await alice.expectJson("POST", `/v2/images/${id}/members`, 200, { json: { member: bob.uuid } });
    expect(member).toMatchObject({ image_id: id, member_id: bob.uuid, status: "accepted", schema: "/v2/schemas/member" });
    expect((await alice.expectJson("GET", `/v2/images/${id}`, 200))["visibility"]).toBe("shared");
    expect((await alice.objectRequest("HEAD", `/images/${id}`)).header("x-object-sharing")).toBe(`read=${bob.uuid}`);
    const seen = await bob.image("GET", `/v2/images/${id}/file`);
    expect(seen.body.equals(data)).toBe(true);
    expect((await bob.expectJson<{ images: Array<{ id: string }> }>("GET", "/v2/images?visibility=shared", 200)).images.map((image) => image.id)).toEqual([id]);
    expect((await carol.image("GET", `/v2/images/${id}`)).status).toBe(404);

    // Members: the owner sees all, a member themself; errors in Glance's form.
    expect((await alice.expectJson<{ members: unknown[] }>("GET", `/v2/images/${id}/members`, 200)).members).toHaveLength(1);
    expect((await bob.expectJson<{ members: Array<{ member_id: string }> }>("GET", `/v2/images/${id}/members`, 200)).members.map((m) => m.member_id)).toEqual([bob.uuid]);
    expect((await alice.expectJson("GET", `/v2/images/${id}/members/${bob.uuid}`, 200))["member_id"]).toBe(bob.uuid);
    expect((await alice.image("GET", `/v2/images/${id}/members/${carol.uuid}`)).status).toBe(404);
    expect((await alice.image("POST", `/v2/images/${id}/members`, { json: { member: bob.uuid } })).status).toBe(409);
    expect((await alice.image("POST", `/v2/images/${id}/members`, { json: { member: "bob" } })).status).toBe(400);
    expect((await bob.image("POST", `/v2/images/${id}/members`, { json: { member: carol.uuid } })).status).toBe(403);
    expect((await alice.image("PUT", `/v2/images/${id}/members/${bob.uuid}`, { json: { status: "accepted" } })).status).toBe(403);
    expect((await bob.image("PUT", `/v2/images/${id}/members/${bob.uuid}`, { json: { status: "maybe" } })).status).toBe(400);
    expect((await bob.expectJson("PUT", `/v2/images/${id}/members/${bob.uuid}`, 200, { json: { status: "accepted" } }))["status"]).toBe("accepted");
    // Rejecting removes the member (the file's sharing is the membership).
    expect((await bob.expectJson("PUT", `/v2/images/${id}/members/${bob.uuid}`, 200, { json: { status: "rejected" } }))["status"]).toBe("rejected");
    expect((await bob.image("GET", `/v2/images/${id}`)).status).toBe(404);
    await alice.expectJson("POST", `/v2/images/${id}/members`, 200, { json: { member: carol.uuid } });
    expect((await alice.image("DELETE", `/v2/images/${id}/members/${carol.uuid}`)).status).toBe(204);
    expect((await alice.image("DELETE", `/v2/images/${id}/members/${carol.uuid}`)).status).toBe(404);
    expect((await carol.image("GET", `/v2/images/${id}`)).status).toBe(404);
    expect((await alice.expectJson("GET", `/v2/images/${id}`, 200))["visibility"]).toBe("private");
  });

  it("adds and removes tags", async () => {
    const alice = await harness().user("alice");
    const bob = await harness().user("bob");
    const id = (await alice.expectJson("POST", "/v2/images", 201, { json: { name: "t", ...rawBare, visibility: "public" } }))["id"] as string;
    expect((await alice.image("PUT", `/v2/images/${id}/tags/one`)).status).toBe(204);
    expect((await alice.image("PUT", `/v2/images/${id}/tags/two`)).status).toBe(204);
    expect((await alice.image("PUT", `/v2/images/${id}/tags/one`)).status).toBe(204);
    expect((await alice.expectJson("GET", `/v2/images/${id}`, 200))["tags"]).toEqual(["one", "two"]);
    expect((await alice.image("DELETE", `/v2/images/${id}/tags/one`)).status).toBe(204);
    expect((await alice.image("DELETE", `/v2/images/${id}/tags/one`)).status).toBe(404);
    expect((await bob.image("PUT", `/v2/images/${id}/tags/bob`)).status).toBe(403);
    expect((await alice.expectJson("GET", `/v2/images/${id}`, 200))["tags"]).toEqual(["two"]);
  });
});
