/**
 * Glance v2 over HTTP against the real server, on SQLite and PostgreSQL: discovery, create,
 * show, list (filters, paging), patch, delete, schemas, and every error in Glance's JSON.
 */
import { randomUUID } from "node:crypto";
import { expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { patternBytes } from "../pithos/testing/http.ts";
import { useImageHarness, type ImageUser } from "./testing/harness.ts";

const patchType = { "content-type": "application/openstack-images-v2.1-json-patch" };
const rawBare = { disk_format: "raw", container_format: "bare" };

async function create(user: ImageUser, json: Record<string, unknown>): Promise<Record<string, unknown>> {
  return user.expectJson("POST", "/v2/images", 201, { json });
}

function expectGlanceError(answer: { status: number; json: () => unknown; header: (name: string) => string | undefined }, status: number, message?: RegExp): void {
  expect(answer.status).toBe(status);
  expect(answer.header("content-type")).toMatch(/^application\/json/);
  const body = answer.json() as { message: string; code: string; title: string };
  expect(body.code).toMatch(new RegExp(`^${status} `));
  expect(typeof body.title).toBe("string");
  if (message !== undefined) expect(body.message).toMatch(message);
}

describeEachEngine("Glance v2 images", (databases) => {
  const harness = useImageHarness(databases, { blockSizeBytes: 4096 });

  it("serves the version document at /image and /image/versions with absolute hrefs, without a token", async () => {
    const alice = await harness().user("alice");
    for (const [path, status] of [["", 300], ["/", 300], ["/versions", 200]] as const) {
      const answer = await alice.image("GET", path, { token: null });
      expect(answer.status).toBe(status);
      const { versions } = answer.json<{ versions: Array<{ id: string; status: string; links: Array<{ rel: string; href: string }> }> }>();
      expect(versions[0]).toEqual({ id: "v2.7", status: "CURRENT", links: [{ rel: "self", href: `${harness().baseUrl}/image/v2/` }] });
    }
  });

  it("refuses requests without a valid token with keystonemiddleware's 401", async () => {
    const alice = await harness().user("alice");
    for (const token of [null, "not-a-token"]) {
      for (const path of ["/v2/images", "/v2/schemas/image", `/v2/images/${randomUUID()}/file`, "/v1/images", "/v1.0/shared-images/x"]) {
        const answer = await alice.image("GET", path, { token, headers: { accept: "*/*" } });
        expect(answer.status).toBe(401);
        expect(answer.header("www-authenticate")).toMatch(/^Keystone uri="http:\/\/127\.0\.0\.1:\d+\/identity"$/);
        expect(answer.json()).toEqual({ error: { code: 401, title: "Unauthorized", message: "The request you have made requires authentication." } });
      }
    }
    // The version documents need no token (discovery happens before authentication).
    expect((await alice.image("GET", "/v2/versions", { token: null })).status).toBe(200);
  });

  it("renders errors as webob does for the Accept header: JSON, HTML (glanceclient) or plain text (Accept: \"\")", async () => {
    const alice = await harness().user("alice");
    const path = `/v2/images/${randomUUID()}`;
    expectGlanceError(await alice.image("GET", path, { headers: { accept: "application/json" } }), 404, /No image found/);
    for (const accept of ["*/*", "text/html", "application/json;q=0.5, text/*"]) {
      const html = await alice.image("GET", path, { headers: { accept } });
      expect(html.status).toBe(404);
      expect(html.header("content-type")).toBe("text/html; charset=UTF-8");
      expect(html.text()).toMatch(/<h1>404 Not Found<\/h1>\n {2}No image found with ID [0-9a-f-]{36}<br \/><br \/>/);
    }
    const plain = await alice.image("GET", path, { headers: { accept: "" } });
    expect(plain.header("content-type")).toBe("text/plain; charset=UTF-8");
    expect(plain.text()).toMatch(/^404 Not Found\n\nNo image found with ID/);
    expect((await alice.image("HEAD", `/v1/images/${randomUUID()}`)).body.length).toBe(0);
  });

  it("creates a queued image over an empty file images/<id>, with extra properties at the top level", async () => {
    const alice = await harness().user("alice");
    const answer = await alice.image("POST", "/v2/images", {
      json: { name: "cirros", ...rawBare, min_disk: 1, tags: ["t1"], "owner_specified.openstack.md5": "", "owner_specified.openstack.object": "images/cirros" },
    });
    expect(answer.status).toBe(201);
    const image = answer.json<Record<string, unknown>>();
    const id = image["id"] as string;
    expect(answer.header("location")).toBe(`${harness().baseUrl}/image/v2/images/${id}`);
    expect(image).toMatchObject({
      name: "cirros",
      status: "queued",
      visibility: "private",
      protected: false,
      os_hidden: false,
      checksum: null,
      os_hash_algo: null,
      os_hash_value: null,
      owner: alice.uuid,
      size: null,
      virtual_size: null,
      min_ram: 0,
      min_disk: 1,
      disk_format: "raw",
      container_format: "bare",
      tags: ["t1"],
      self: `/v2/images/${id}`,
      file: `/v2/images/${id}/file`,
      schema: "/v2/schemas/image",
      "owner_specified.openstack.md5": "",
      "owner_specified.openstack.object": "images/cirros",
    });
    expect(image["created_at"]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    // The file is there, empty, in the caller's `images` container.
    const file = await alice.objectRequest("HEAD", `/images/${id}`);
    expect(file.status).toBe(200);
    expect(file.header("content-length")).toBe("0");
    expect(await alice.expectJson("GET", `/v2/images/${id}`, 200)).toEqual(image);

    // A client-chosen id is kept; taking it again is a conflict.
    const chosen = randomUUID();
    expect((await create(alice, { id: chosen.toUpperCase(), name: "chosen" }))["id"]).toBe(chosen);
    expectGlanceError(await alice.image("POST", "/v2/images", { json: { id: chosen } }), 409);
  });

  it("refuses bad create bodies: read-only 403, reserved 403, bad values 400, another owner 403", async () => {
    const alice = await harness().user("alice");
    expectGlanceError(await alice.image("POST", "/v2/images", { json: { status: "active" } }), 403, /Attribute 'status' is read-only/);
    expectGlanceError(await alice.image("POST", "/v2/images", { json: { self: "/x" } }), 403, /read-only/);
    expectGlanceError(await alice.image("POST", "/v2/images", { json: { location: "x" } }), 403, /Attribute 'location' is reserved/);
    expectGlanceError(await alice.image("POST", "/v2/images", { json: { os_glance_x: "x" } }), 403, /reserved/);
    expectGlanceError(await alice.image("POST", "/v2/images", { json: { disk_format: "floppy" } }), 400);
    expectGlanceError(await alice.image("POST", "/v2/images", { json: { min_disk: -1 } }), 400);
    expectGlanceError(await alice.image("POST", "/v2/images", { json: { protected: "yes" } }), 400);
    expectGlanceError(await alice.image("POST", "/v2/images", { json: { custom: 5 } }), 400);
    expectGlanceError(await alice.image("POST", "/v2/images", { json: { name: "x".repeat(256) } }), 400);
    expectGlanceError(await alice.image("POST", "/v2/images", { json: { id: "not-a-uuid" } }), 400);
    expectGlanceError(await alice.image("POST", "/v2/images", { json: { visibility: "community" } }), 400);
    expectGlanceError(await alice.image("POST", "/v2/images", { json: { owner: randomUUID() } }), 403);
    expectGlanceError(await alice.image("POST", "/v2/images", { json: [1] }), 400);
    expectGlanceError(await alice.image("POST", "/v2/images", { body: "{not json", headers: { "content-type": "application/json" } }), 400);
    expectGlanceError(await alice.image("POST", "/v2/images", {}), 400, /Body expected/);
    // Nothing was created by the refused requests.
    expect((await alice.expectJson<{ images: unknown[] }>("GET", `/v2/images?owner=${alice.uuid}`, 200)).images).toEqual([]);
  });

  it("shows 404 for unknown ids, names and others' private images, then finds by ?name=", async () => {
    const alice = await harness().user("alice");
    const bob = await harness().user("bob");
    const image = await create(alice, { name: "only-alice", ...rawBare });
    expectGlanceError(await alice.image("GET", `/v2/images/${randomUUID()}`), 404, /No image found with ID/);
    expectGlanceError(await alice.image("GET", "/v2/images/only-alice"), 404);
    expectGlanceError(await bob.image("GET", `/v2/images/${String(image["id"])}`), 404);
    const byName = await alice.expectJson<{ images: Array<{ id: string }> }>("GET", "/v2/images?name=only-alice", 200);
    expect(byName.images.map((found) => found.id)).toEqual([image["id"]]);
    expect((await bob.expectJson<{ images: unknown[] }>("GET", "/v2/images?name=only-alice", 200)).images).toEqual([]);
  });

  it("lists with filters, hides os_hidden images unless asked, and pages with an endpoint-relative next", async () => {
    const alice = await harness().user("alice");
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await create(alice, { name: `img-${i}`, ...rawBare, tags: i % 2 === 0 ? ["even"] : [] }))["id"] as string);
    const hidden = await create(alice, { name: "hidden", ...rawBare, os_hidden: true });

    const all = await alice.expectJson<{ images: Array<{ id: string; name: string }>; first: string; schema: string }>("GET", "/v2/images", 200);
    expect(all.images.map((image) => image.name).sort()).toEqual(["img-0", "img-1", "img-2", "img-3", "img-4"]);
    expect(all).toMatchObject({ first: "/v2/images", schema: "/v2/schemas/images" });
    expect((await alice.expectJson<{ images: Array<{ id: string }> }>("GET", "/v2/images?os_hidden=True", 200)).images.map((image) => image.id)).toEqual([hidden["id"]]);
    expect((await alice.expectJson<{ images: unknown[] }>("GET", "/v2/images?tag=even", 200)).images).toHaveLength(3);
    expect((await alice.expectJson<{ images: unknown[] }>("GET", "/v2/images?status=active", 200)).images).toHaveLength(0);
    expect((await alice.expectJson<{ images: unknown[] }>("GET", "/v2/images?visibility=private", 200)).images).toHaveLength(5);
    expect((await alice.expectJson<{ images: unknown[] }>("GET", "/v2/images?visibility=public", 200)).images).toHaveLength(0);
    expect((await alice.expectJson<{ images: unknown[] }>(`GET`, `/v2/images?owner=${alice.uuid}`, 200)).images).toHaveLength(5);

    // Pages of two by name, following `next` exactly as the SDK does (endpoint-relative).
    const seen: string[] = [];
    let path: string | undefined = "/v2/images?limit=2&sort_key=name&sort_dir=asc";
    while (path !== undefined) {
      const page: { images: Array<{ name: string }>; next?: string } = await alice.expectJson("GET", path, 200);
      seen.push(...page.images.map((image) => image.name));
      if (page.next !== undefined) expect(page.next).toMatch(/^\/v2\/images\?limit=2&sort_key=name&sort_dir=asc&marker=[0-9a-f-]{36}$/);
      path = page.next;
    }
    expect(seen).toEqual(["img-0", "img-1", "img-2", "img-3", "img-4"]);
    const newSyntax = await alice.expectJson<{ images: Array<{ name: string }> }>("GET", "/v2/images?sort=name:desc&limit=1", 200);
    expect(newSyntax.images.map((image) => image.name)).toEqual(["img-4"]);

    expectGlanceError(await alice.image("GET", "/v2/images?sort_key=color"), 400, /Invalid sort key/);
    expectGlanceError(await alice.image("GET", "/v2/images?sort_dir=up"), 400);
    expectGlanceError(await alice.image("GET", "/v2/images?sort=name&sort_key=name"), 400);
    expectGlanceError(await alice.image("GET", "/v2/images?limit=-1"), 400);
    expectGlanceError(await alice.image("GET", "/v2/images?visibility=everyone"), 400);
    expectGlanceError(await alice.image("GET", `/v2/images?marker=${randomUUID()}`), 400, /marker/);
    expectGlanceError(await alice.image("GET", "/v2/images?os_hidden=maybe"), 400);
  });

  it("patches with JSON patch: add replaces, properties, tags, visibility through the file's sharing", async () => {
    const alice = await harness().user("alice");
    const bob = await harness().user("bob");
    const id = (await create(alice, { name: "p", ...rawBare, extra: "1", gone: "x" }))["id"] as string;
    // What OSC sends for `image set --name renamed --property foo=bar --tag t1 --min-disk 2 --public`.
    const patched = await alice.expectJson("PATCH", `/v2/images/${id}`, 200, {
      headers: { ...patchType, accept: "" },
      body: JSON.stringify([
        { op: "add", path: "/foo", value: "bar" },
        { op: "add", path: "/min_disk", value: 2 },
        { op: "add", path: "/name", value: "renamed" },
        { op: "add", path: "/tags", value: ["t1"] },
        { op: "add", path: "/visibility", value: "public" },
        { op: "replace", path: "/extra", value: "2" },
        { op: "remove", path: "/gone" },
        { op: "add", path: "/a~1b", value: "slash" },
      ]),
    });
    expect(patched).toMatchObject({ name: "renamed", min_disk: 2, tags: ["t1"], visibility: "public", foo: "bar", extra: "2", "a/b": "slash" });
    expect(patched).not.toHaveProperty("gone");
    // Public is `*` in the file's read sharing: bob sees the image and the file.
    expect((await bob.expectJson("GET", `/v2/images/${id}`, 200))["name"]).toBe("renamed");
    const sharing = await alice.objectRequest("HEAD", `/images/${id}`);
    expect(sharing.header("x-object-sharing")).toBe("read=*");

    const privateAgain = await alice.expectJson("PATCH", `/v2/images/${id}`, 200, { headers: patchType, body: JSON.stringify([{ op: "replace", path: "/visibility", value: "private" }]) });
    expect(privateAgain["visibility"]).toBe("private");
    expectGlanceError(await bob.image("GET", `/v2/images/${id}`), 404);
  });

  it("refuses bad patches: 415, 400 shapes, 403 read-only and base removal, 409 missing properties, 403 for others", async () => {
    const alice = await harness().user("alice");
    const bob = await harness().user("bob");
    const id = (await create(alice, { name: "p", ...rawBare, visibility: "public" }))["id"] as string;
    const patch = (user: ImageUser, body: unknown, headers: Record<string, string> = patchType) =>
      user.image("PATCH", `/v2/images/${id}`, { headers, body: typeof body === "string" ? body : JSON.stringify(body) });

    const unsupported = await patch(alice, [], { "content-type": "application/json" });
    expectGlanceError(unsupported, 415);
    expect(unsupported.header("accept-patch")).toBe("application/openstack-images-v2.1-json-patch");
    expectGlanceError(await patch(alice, "[{"), 400);
    expectGlanceError(await patch(alice, { op: "add" }), 400, /JSON array/);
    expectGlanceError(await patch(alice, [1]), 400, /JSON objects/);
    expectGlanceError(await patch(alice, [{ op: "move", path: "/name", value: "x" }]), 400, /Invalid operation/);
    expectGlanceError(await patch(alice, [{ op: "add", path: "name", value: "x" }]), 400, /does not start with/);
    expectGlanceError(await patch(alice, [{ op: "add", path: "/a/b", value: "x" }]), 400, /Invalid JSON pointer/);
    expectGlanceError(await patch(alice, [{ op: "add", path: "/name" }]), 400, /requires a member named "value"/);
    expectGlanceError(await patch(alice, [{ op: "add", path: "/min_ram", value: "lots" }]), 400);
    expectGlanceError(await patch(alice, [{ op: "add", path: "/status", value: "active" }]), 403, /read-only/);
    expectGlanceError(await patch(alice, [{ op: "add", path: "/id", value: randomUUID() }]), 403, /read-only/);
    expectGlanceError(await patch(alice, [{ op: "add", path: "/deleted", value: "x" }]), 403, /reserved/);
    expectGlanceError(await patch(alice, [{ op: "remove", path: "/name" }]), 403, /may not be removed/);
    expectGlanceError(await patch(alice, [{ op: "replace", path: "/nope", value: "x" }]), 409, /does not exist/);
    expectGlanceError(await patch(alice, [{ op: "remove", path: "/nope" }]), 409);
    // bob sees the public image but may not change it.
    expectGlanceError(await patch(bob, [{ op: "add", path: "/name", value: "bob's" }]), 403);
    expectGlanceError(await bob.image("PATCH", `/v2/images/${randomUUID()}`, { headers: patchType, body: "[]" }), 404);
    // A failed patch changed nothing, not even the operations before the failing one.
    await patch(alice, [{ op: "add", path: "/name", value: "changed" }, { op: "remove", path: "/nope" }]);
    expect((await alice.expectJson("GET", `/v2/images/${id}`, 200))["name"]).toBe("p");
  });

  it("deletes the image and the file it created; protected images and others' images are refused", async () => {
    const alice = await harness().user("alice");
    const bob = await harness().user("bob");
    const id = (await create(alice, { name: "d", ...rawBare, visibility: "public", protected: true }))["id"] as string;
    expectGlanceError(await bob.image("DELETE", `/v2/images/${id}`), 403);
    expectGlanceError(await alice.image("DELETE", `/v2/images/${id}`), 403, /protected/);
    await alice.expectJson("PATCH", `/v2/images/${id}`, 200, { headers: patchType, body: JSON.stringify([{ op: "replace", path: "/protected", value: false }]) });
    // glanceclient sends a Content-Type even on bodiless requests.
    const deleted = await alice.image("DELETE", `/v2/images/${id}`, { headers: { "content-type": "application/octet-stream" } });
    expect(deleted.status).toBe(204);
    expectGlanceError(await alice.image("GET", `/v2/images/${id}`), 404);
    expect((await alice.objectRequest("HEAD", `/images/${id}`)).status).toBe(404);
    expectGlanceError(await alice.image("DELETE", `/v2/images/${id}`), 404);
  });

  it("serves the schemas the glance CLI filters requests through", async () => {
    const alice = await harness().user("alice");
    const image = await alice.expectJson<{ name: string; properties: Record<string, { maxLength?: number }>; additionalProperties: unknown }>("GET", "/v2/schemas/image", 200);
    expect(image.name).toBe("image");
    expect(image.properties["os_hash_value"]!.maxLength).toBe(128);
    expect(Object.keys(image.properties)).toEqual(expect.arrayContaining(["id", "name", "status", "visibility", "disk_format", "container_format", "tags"]));
    expect(image.additionalProperties).toEqual({ type: "string" });
    const images = await alice.expectJson<{ name: string; properties: { images: { items: { name: string } } } }>("GET", "/v2/schemas/images", 200);
    expect(images.properties.images.items.name).toBe("image");
    expect((await alice.expectJson("GET", "/v2/schemas/member", 200))["name"]).toBe("member");
    expect((await alice.expectJson("GET", "/v2/schemas/members", 200))["name"]).toBe("members");
    expectGlanceError(await alice.image("GET", "/v2/schemas/metadefs/namespace"), 404);
    expectGlanceError(await alice.image("GET", "/v2/schemas/nothing"), 404);
    expectGlanceError(await alice.image("GET", "/v2/nothing/here"), 404);
  });

  it("follows its file: a Pithos+ MOVE keeps the image (same uuid), a delete of the file ends it", async () => {
    const alice = await harness().user("alice");
    const uploaded = await alice.uploadImage("moving", patternBytes(5000));
    const id = uploaded["id"] as string;
    await alice.container("elsewhere");
    const moved = await alice.objectRequest("MOVE", `/images/${id}`, { headers: { destination: "/elsewhere/disk.raw" } });
    expect(moved.status).toBe(201);
    expect(await alice.expectJson("GET", `/v2/images/${id}`, 200)).toMatchObject({ status: "active", size: 5000 });
    const v1 = await alice.image("HEAD", `/v1/images/${id}`);
    expect(v1.header("x-image-meta-location")).toBe(`pithos://${alice.uuid}/elsewhere/disk.raw`);
    expect((await alice.objectRequest("DELETE", "/elsewhere/disk.raw")).status).toBe(204);
    expectGlanceError(await alice.image("GET", `/v2/images/${id}`), 404);
  });
});
