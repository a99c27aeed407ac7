/**
 * Nova's image proxy over HTTP (images.ts): the shapes of views/images.py, the filters and
 * paging, metadata's merge/replace/one-key forms, and the faults: 404 itemNotFound for an
 * image the caller does not see, 403 forbidden for a change by someone who only sees it.
 */
import { describe, expect, it } from "vitest";
import { computeHarness, expectFault, testUsers } from "./testing/harness.ts";

const api = "/compute/v2.1";
const base = "http://cloud.test:8080";

describe("image listing and show", () => {
  it("lists summaries and details in Nova's shape, newest first, with the server of a snapshot", async () => {
    const h = await computeHarness();
    const plain = h.fake.addImage(testUsers.alice, { name: "cirros", metadata: { os_distro: "cirros" } });
    const serverId = "5e7e0000-0000-4000-8000-000000000001";
    const snapshot = h.fake.addImage(testUsers.alice, { name: "snap", status: "SAVING", progress: 25, sizeBytes: null, metadata: { instance_uuid: serverId, image_type: "snapshot", auto_disk_config: "True" } });

    const summary = await h.request("GET", `${api}/images`);
    expect(summary.statusCode).toBe(200);
    expect(summary.json()).toEqual({
      images: [snapshot, plain].map((image) => ({
        id: image.id,
        name: image.name,
        links: [
          { rel: "self", href: `${base}${api}/images/${image.id}` },
          { rel: "bookmark", href: `${base}/compute/images/${image.id}` },
          { rel: "alternate", type: "application/vnd.openstack.image", href: `${base}/image/v2/images/${image.id}` },
        ],
      })),
    });

    const detail = (await h.request("GET", `${api}/images/detail`)).json() as { images: Array<Record<string, unknown>> };
    expect(detail.images[0]).toEqual({
      id: snapshot.id,
      name: "snap",
      minRam: 0,
      minDisk: 0,
      metadata: { instance_uuid: serverId, image_type: "snapshot", auto_disk_config: "True" },
      created: "2026-11-24T04:50:58Z",
      updated: "2026-11-24T04:50:58Z",
      status: "SAVING",
      progress: 25,
      "OS-EXT-IMG-SIZE:size": null,
      "OS-DCF:diskConfig": "AUTO",
      server: {
        id: serverId,
        links: [
          { rel: "self", href: `${base}${api}/servers/${serverId}` },
          { rel: "bookmark", href: `${base}/compute/servers/${serverId}` },
        ],
      },
      links: expect.any(Array),
    });
    expect(detail.images[1]).not.toHaveProperty("server");
    expect(detail.images[1]).toMatchObject({ status: "ACTIVE", progress: 100, "OS-EXT-IMG-SIZE:size": 1024 });

    const shown = await h.request("GET", `${api}/images/${plain.id}`, { headers: { "x-openstack-nova-api-version": "2.10" } });
    expect(shown.statusCode).toBe(200);
    expect((shown.json() as { image: unknown }).image).toEqual(detail.images[1]);
  });

  it("passes Nova's filters through: status lowercased, server as an href, numbers checked", async () => {
    const h = await computeHarness();
    await h.request("GET", `${api}/images/detail?name=cirros&status=ACTIVE&server=${base}${api}/servers/abc&type=snapshot&minRam=512&minDisk=1&changes-since=2026-11-24T00:00:00Z`);
    expect(h.fake.calls.at(-1)).toEqual({
      method: "listImages",
      args: [{ userUuid: testUsers.alice, isAdmin: false }, { name: "cirros", status: "active", serverId: "abc", type: "snapshot", minRamMiB: 512, minDiskGiB: 1, changesSince: Date.parse("2026-11-24T00:00:00Z"), limit: 1000 }],
    });
    expectFault(await h.request("GET", `${api}/images?minRam=lots`), 400, "badRequest");
    expectFault(await h.request("GET", `${api}/images?changes-since=yesterday`), 400, "badRequest");
  });

  it("pages with limit and marker, and links the next page when one is full", async () => {
    const h = await computeHarness();
    const images = [1, 2, 3].map((n) => h.fake.addImage(testUsers.alice, { name: `i${n}` })).reverse();
    const first = (await h.request("GET", `${api}/images?limit=2`)).json() as { images: Array<{ id: string }>; images_links: unknown };
    expect(first.images.map((image) => image.id)).toEqual([images[0]!.id, images[1]!.id]);
    expect(first.images_links).toEqual([{ rel: "next", href: `${base}${api}/images?limit=2&marker=${images[1]!.id}` }]);
    const second = (await h.request("GET", `${api}/images?limit=2&marker=${images[1]!.id}`)).json() as { images: Array<{ id: string }> };
    expect(second).toEqual({ images: [expect.objectContaining({ id: images[2]!.id })] });
    expect(expectFault(await h.request("GET", `${api}/images?marker=nosuch`), 400, "badRequest")).toContain("Marker nosuch");
  });

  it("shows others' public and shared images, and answers 404 itemNotFound for the rest", async () => {
    const h = await computeHarness();
    const publicImage = h.fake.addImage(testUsers.bob, { isPublic: true });
    const shared = h.fake.addImage(testUsers.bob, { members: [testUsers.alice] });
    const hidden = h.fake.addImage(testUsers.bob);
    const listed = (await h.request("GET", `${api}/images`)).json() as { images: Array<{ id: string }> };
    expect(listed.images.map((image) => image.id).sort()).toEqual([publicImage.id, shared.id].sort());
    expect((await h.request("GET", `${api}/images/${shared.id}`)).statusCode).toBe(200);
    expect(expectFault(await h.request("GET", `${api}/images/${hidden.id}`), 404, "itemNotFound")).toBe("Image not found.");
    expectFault(await h.request("GET", `${api}/images/${hidden.id}/metadata`), 404, "itemNotFound");
  });

  it("needs a token, and is gone at microversions from 2.36 (not negotiated here: 406)", async () => {
    const h = await computeHarness();
    expectFault(await h.request("GET", `${api}/images`, { token: null }), 401, "unauthorized");
    expectFault(await h.request("GET", `${api}/images`, { headers: { "x-openstack-nova-api-version": "2.36" } }), 406, "notAcceptable");
    expectFault(await h.request("POST", `${api}/images`, { json: { image: {} } }), 404, "itemNotFound");
  });
});

describe("image delete and metadata", () => {
  it("deletes the owner's image with 204; someone who only sees it gets 403 forbidden", async () => {
    const h = await computeHarness();
    const image = h.fake.addImage(testUsers.bob, { isPublic: true });
    expect(expectFault(await h.request("DELETE", `${api}/images/${image.id}`), 403, "forbidden")).toContain(image.id);
    const answer = await h.request("DELETE", `${api}/images/${image.id}`, { token: "bob" });
    expect([answer.statusCode, answer.body]).toEqual([204, ""]);
    expectFault(await h.request("DELETE", `${api}/images/${image.id}`, { token: "bob" }), 404, "itemNotFound");
  });

  it("reads, merges, replaces, sets one key and deletes one key", async () => {
    const h = await computeHarness();
    const image = h.fake.addImage(testUsers.alice, { metadata: { os_distro: "debian", kernel_id: "k" } });
    const url = `${api}/images/${image.id}/metadata`;
    expect((await h.request("GET", url)).json()).toEqual({ metadata: { os_distro: "debian", kernel_id: "k" } });
    expect((await h.request("POST", url, { json: { metadata: { os_version: "12" } } })).json()).toEqual({ metadata: { os_distro: "debian", kernel_id: "k", os_version: "12" } });
    expect((await h.request("PUT", url, { json: { metadata: { os_distro: "alpine" } } })).json()).toEqual({ metadata: { os_distro: "alpine" } });
    expect((await h.request("GET", `${url}/os_distro`)).json()).toEqual({ meta: { os_distro: "alpine" } });
    expectFault(await h.request("GET", `${url}/nosuch`), 404, "itemNotFound");
    expect((await h.request("PUT", `${url}/role`, { json: { meta: { role: "web" } } })).json()).toEqual({ meta: { role: "web" } });
    expect(h.fake.calls.at(-1)).toEqual({ method: "setImageMetadata", args: [expect.anything(), image.id, { role: "web" }, false] });
    const deleted = await h.request("DELETE", `${url}/role`);
    expect(deleted.statusCode).toBe(204);
    expect((await h.request("GET", url)).json()).toEqual({ metadata: { os_distro: "alpine" } });
    expect(expectFault(await h.request("DELETE", `${url}/role`), 404, "itemNotFound")).toBe("Invalid metadata key");
  });

  const refusals: Array<[string, string, string, unknown, string]> = [
    ["a body without metadata", "POST", "", { meta: {} }, "Malformed request body"],
    ["a number value", "POST", "", { metadata: { a: 1 } }, "metadata.a"],
    ["a key with a slash", "PUT", "", { metadata: { "a/b": "x" } }, "a/b"],
    ["a key mismatch", "PUT", "/a", { meta: { b: "x" } }, "Request body and URI mismatch"],
    ["two keys for one", "PUT", "/a", { meta: { a: "x", b: "y" } }, "too many items"],
  ];
  for (const [what, method, suffix, json, message] of refusals) {
    it(`refuses ${what} with 400 before calling the service`, async () => {
      const h = await computeHarness();
      const image = h.fake.addImage(testUsers.alice);
      expect(expectFault(await h.request(method, `${api}/images/${image.id}/metadata${suffix}`, { json }), 400, "badRequest")).toContain(message);
      expect(h.fake.calls).toEqual([]);
    });
  }

  it("refuses metadata changes by a member with 403, and more than 128 items with 403", async () => {
    const h = await computeHarness();
    const image = h.fake.addImage(testUsers.bob, { members: [testUsers.alice] });
    expectFault(await h.request("POST", `${api}/images/${image.id}/metadata`, { json: { metadata: { a: "b" } } }), 403, "forbidden");
    expectFault(await h.request("DELETE", `${api}/images/${image.id}/metadata/a`), 403, "forbidden");
    const many = Object.fromEntries(Array.from({ length: 129 }, (_, index) => [`k${index}`, "v"]));
    expectFault(await h.request("PUT", `${api}/images/${image.id}/metadata`, { json: { metadata: many }, token: "bob" }), 403, "forbidden");
  });
});
