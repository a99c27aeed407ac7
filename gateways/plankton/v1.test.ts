/**
 * Plankton v1 (synnefo.md C) over HTTP, on SQLite and PostgreSQL: registering a file already
 * in Pithos+ (and proving it moves no data), the X-Image-Meta-* headers, listings, update,
 * members, shared-images and unregister.
 */
import { randomUUID } from "node:crypto";
import { expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { md5Hex, patternBytes } from "../pithos/testing/http.ts";
import type { ServedPithos } from "../pithos/testing/server.ts";
import { useImageHarness, type ImageUser } from "./testing/harness.ts";

async function storeObjects(served: ServedPithos, prefix = ""): Promise<string[]> {
  const names: string[] = [];
  for await (const name of served.engine.objects.list(prefix)) names.push(name);
  return names.sort();
}

function register(user: ImageUser, headers: Record<string, string>) {
  return user.image("POST", "/v1/images", { headers });
}

describeEachEngine("Plankton v1", (databases) => {
  const harness = useImageHarness(databases, { blockSizeBytes: 4096 });

  async function fileOf(user: ImageUser, path = "debian.raw", data = patternBytes(3 * 4096 + 100, 9)): Promise<{ data: Buffer; location: string; hash: string }> {
    await user.container("disks");
    await user.put(`/disks/${path}`, data);
    const head = await user.objectRequest("HEAD", `/disks/${path}`);
    return { data, location: `pithos://${user.uuid}/disks/${path}`, hash: head.header("x-object-hash") as string };
  }

  it("registers an existing file with X-Image-Meta-* headers: no block, no map, nothing written to the store", async () => {
    const alice = await harness().user("alice");
    const { data, location, hash } = await fileOf(alice);
    const served = harness().pithos.served;
    const blocksBefore = await storeObjects(served, "b.");
    const everythingBefore = await storeObjects(served);

    const answer = await register(alice, {
      "x-image-meta-name": "Debian%20Base%20%E2%9C%93",
      "x-image-meta-location": location,
      "x-image-meta-disk-format": "diskdump",
      "x-image-meta-is-public": "true",
      "x-image-meta-size": String(data.length),
      "x-image-meta-checksum": hash,
      "x-image-meta-property-OSFAMILY": "linux",
      "x-image-meta-property-root-partition": "1",
      "x-image-meta-property-description": "Debian%20%C3%A9",
    });
    expect(answer.status).toBe(200);
    expect(answer.body.length).toBe(0);
    // Registration moves no data: not one block object, not one map, nothing at all.
    expect(await storeObjects(served, "b.")).toEqual(blocksBefore);
    expect(await storeObjects(served)).toEqual(everythingBefore);

    const id = answer.header("x-image-meta-id") as string;
    const file = await alice.objectRequest("HEAD", "/disks/debian.raw");
    expect(file.header("x-object-uuid") ?? id).toBe(id);
    expect(answer.headers).toMatchObject({
      "x-image-meta-name": "Debian%20Base%20%E2%9C%93",
      "x-image-meta-location": location,
      "x-image-meta-disk-format": "diskdump",
      "x-image-meta-container-format": "bare",
      "x-image-meta-size": String(data.length),
      "x-image-meta-checksum": hash,
      "x-image-meta-status": "AVAILABLE",
      "x-image-meta-is-public": "True",
      "x-image-meta-owner": alice.uuid,
      "x-image-meta-deleted-at": "",
      "x-image-meta-property-osfamily": "linux",
      "x-image-meta-property-root-partition": "1",
      "x-image-meta-property-description": "Debian%20%C3%A9",
    });
    expect(answer.header("x-image-meta-created-at")).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);

    // HEAD: the same headers; GET: those and the data; v2 sees the same image.
    const head = await alice.image("HEAD", `/v1/images/${id}`);
    expect(head.status).toBe(200);
    expect(head.header("x-image-meta-name")).toBe("Debian%20Base%20%E2%9C%93");
    const get = await alice.image("GET", `/v1.0/images/${id}`);
    expect(get.body.equals(data)).toBe(true);
    expect(get.header("x-image-meta-status")).toBe("AVAILABLE");
    expect(await alice.expectJson("GET", `/v2/images/${id}`, 200)).toMatchObject({
      name: "Debian Base ✓",
      status: "active",
      visibility: "public",
      size: data.length,
      checksum: md5Hex(data),
      osfamily: "linux",
      root_partition: "1",
    });
    // Another user sees a public image and reads it.
    const bob = await harness().user("bob");
    expect((await bob.image("GET", `/v1/images/${id}`)).body.equals(data)).toBe(true);
  });

  it("lists what the caller sees, summary and detail, with Plankton's filters and sort", async () => {
    const alice = await harness().user("alice");
    const bob = await harness().user("bob");
    await alice.container("disks");
    for (const [name, size] of [["b-image", 10], ["a-image", 30], ["c-image", 20]] as const) {
      await alice.put(`/disks/${name}`, patternBytes(size));
      expect((await register(alice, { "x-image-meta-name": name, "x-image-meta-location": `pithos://${alice.uuid}/disks/${name}` })).status).toBe(200);
    }
    // Other tests' public images are visible too: look at this test's own.
    const ours = (images: Array<Record<string, unknown>>) => images.filter((image) => String(image["name"]).endsWith("-image"));
    const summary = ours(await alice.expectJson<Array<Record<string, unknown>>>("GET", "/v1/images?sort_key=name&sort_dir=asc", 200));
    expect(summary.map((image) => image["name"])).toEqual(["a-image", "b-image", "c-image"]);
    expect(Object.keys(summary[0]!).sort()).toEqual(["container_format", "disk_format", "id", "name", "size", "status"]);
    expect(summary[0]).toMatchObject({ status: "AVAILABLE", disk_format: "diskdump", container_format: "bare", size: 30 });
    const detail = ours(await alice.expectJson<Array<Record<string, unknown>>>("GET", "/v1/images/detail?size_min=15&sort_key=size&sort_dir=asc", 200));
    expect(detail.map((image) => image["name"])).toEqual(["c-image", "a-image"]);
    expect(detail[0]).toMatchObject({ is_public: false, owner: alice.uuid, properties: {}, location: `pithos://${alice.uuid}/disks/c-image`, deleted_at: "" });
    expect((await alice.expectJson<unknown[]>("GET", "/v1/images?name=b-image", 200)).length).toBe(1);
    expect(ours(await alice.expectJson("GET", "/v1/images?status=AVAILABLE", 200))).toHaveLength(3);
    expect((await alice.expectJson<unknown[]>("GET", "/v1/images?status=nonsense", 200)).length).toBe(0);
    expect(ours(await bob.expectJson("GET", "/v1/images", 200))).toEqual([]);
    expect((await alice.image("GET", "/v1/images?sort_key=color")).status).toBe(400);
    expect((await alice.image("GET", "/v1/images?sort_dir=up")).status).toBe(400);
    expect((await alice.image("GET", "/v1/images?size_max=big")).status).toBe(400);
  });

  it("updates the fields given (properties merged), shares with members, lists shared-images, unregisters keeping the file", async () => {
    const alice = await harness().user("alice");
    const bob = await harness().user("bob");
    const carol = await harness().user("carol");
    const { data, location } = await fileOf(alice);
    const id = (await register(alice, { "x-image-meta-name": "orig", "x-image-meta-location": location, "x-image-meta-property-a": "1" })).header("x-image-meta-id") as string;

    const updated = await alice.image("PUT", `/v1/images/${id}`, { headers: { "x-image-meta-name": "new%20name", "x-image-meta-property-b": "2", "x-image-meta-disk-format": "raw" } });
    expect(updated.status).toBe(200);
    expect(updated.headers).toMatchObject({ "x-image-meta-name": "new%20name", "x-image-meta-disk-format": "raw", "x-image-meta-property-a": "1", "x-image-meta-property-b": "2" });
    expect((await bob.image("PUT", `/v1/images/${id}`, { headers: { "x-image-meta-name": "x" } })).status).toBe(404);
    expect((await alice.image("PUT", `/v1/images/${id}`, { headers: { "x-image-meta-location": "pithos://x/y/z" } })).status).toBe(400);
    expect((await alice.image("PUT", `/v1/images/${id}`, { headers: { "x-image-meta-owner": bob.uuid } })).status).toBe(403);
    expect((await alice.image("PUT", `/v1/images/${id}`, { headers: { "x-image-meta-status": "killed" } })).status).toBe(400);

    expect((await alice.image("PUT", `/v1/images/${id}/members/${bob.uuid}`)).status).toBe(204);
    expect((await bob.image("HEAD", `/v1/images/${id}`)).status).toBe(200);
    expect(await alice.expectJson("GET", `/v1/images/${id}/members`, 200)).toEqual({ members: [{ member_id: bob.uuid, can_share: false }] });
    expect(await alice.expectJson("GET", `/v1/shared-images/${bob.uuid}`, 200)).toEqual({ shared_images: [{ image_id: id, can_share: false }] });
    expect(await alice.expectJson("GET", `/v1/shared-images/${carol.uuid}`, 200)).toEqual({ shared_images: [] });
    expect((await bob.image("PUT", `/v1/images/${id}/members/${carol.uuid}`)).status).toBe(403);

    const replaced = await alice.image("PUT", `/v1/images/${id}/members`, { json: { memberships: [{ member_id: carol.uuid }] } });
    expect(replaced.status).toBe(204);
    expect((await bob.image("HEAD", `/v1/images/${id}`)).status).toBe(404);
    expect((await carol.image("HEAD", `/v1/images/${id}`)).status).toBe(200);
    expect((await alice.image("PUT", `/v1/images/${id}/members`, { json: { memberships: [{ member_id: "carol" }] } })).status).toBe(400);
    expect((await alice.image("PUT", `/v1/images/${id}/members`, { json: {} })).status).toBe(400);
    expect((await alice.image("DELETE", `/v1/images/${id}/members/${carol.uuid}`)).status).toBe(204);
    expect((await alice.image("DELETE", `/v1/images/${id}/members/${carol.uuid}`)).status).toBe(204);
    expect((await carol.image("HEAD", `/v1/images/${id}`)).status).toBe(404);

    // Public, then private again: is_public toggles `*` only.
    await alice.image("PUT", `/v1/images/${id}/members/${bob.uuid}`);
    await alice.image("PUT", `/v1/images/${id}`, { headers: { "x-image-meta-is-public": "True" } });
    expect((await carol.image("HEAD", `/v1/images/${id}`)).header("x-image-meta-is-public")).toBe("True");
    await alice.image("PUT", `/v1/images/${id}`, { headers: { "x-image-meta-is-public": "False" } });
    expect((await carol.image("HEAD", `/v1/images/${id}`)).status).toBe(404);
    expect((await bob.image("HEAD", `/v1/images/${id}`)).status).toBe(200);

    // Unregister: the image goes, the file stays; registering again finds the same file (same id).
    expect((await bob.image("DELETE", `/v1/images/${id}`)).status).toBe(403);
    expect((await alice.image("DELETE", `/v1/images/${id}`)).status).toBe(204);
    expect((await alice.image("HEAD", `/v1/images/${id}`)).status).toBe(404);
    expect((await alice.objectRequest("GET", "/disks/debian.raw")).body.equals(data)).toBe(true);
    const again = await register(alice, { "x-image-meta-name": "again", "x-image-meta-location": location });
    expect(again.header("x-image-meta-id")).toBe(id);
    // POST on a file that is already an image re-registers it (its fields replaced).
    const replacedAgain = await register(alice, { "x-image-meta-name": "third", "x-image-meta-location": location, "x-image-meta-property-c": "3" });
    expect(replacedAgain.status).toBe(200);
    expect(replacedAgain.header("x-image-meta-name")).toBe("third");
    expect(replacedAgain.header("x-image-meta-property-c")).toBe("3");
    expect(replacedAgain.header("x-image-meta-property-a")).toBeUndefined();
  });

  it("refuses bad registrations", async () => {
    const alice = await harness().user("alice");
    const bob = await harness().user("bob");
    const { location, hash, data } = await fileOf(alice);
    const expect400 = async (headers: Record<string, string>, message: RegExp) => {
      const answer = await register(alice, headers);
      expect(answer.status, JSON.stringify(headers)).toBe(400);
      expect(answer.json<{ message: string }>().message).toMatch(message);
    };
    await expect400({ "x-image-meta-location": location }, /'name' parameter is required/);
    await expect400({ "x-image-meta-name": "", "x-image-meta-location": location }, /Invalid image name/);
    await expect400({ "x-image-meta-name": "n" }, /'location' parameter is required/);
    await expect400({ "x-image-meta-name": "n", "x-image-meta-location": "http://x/y/z" }, /Invalid location/);
    await expect400({ "x-image-meta-name": "n", "x-image-meta-location": location, "x-image-meta-id": randomUUID() }, /Setting the image ID/);
    await expect400({ "x-image-meta-name": "n", "x-image-meta-location": location, "x-image-meta-color": "red" }, /Invalid parameters/);
    await expect400({ "x-image-meta-name": "n", "x-image-meta-location": location, "x-image-meta-disk-format": "floppy" }, /Invalid disk format/);
    await expect400({ "x-image-meta-name": "n", "x-image-meta-location": location, "x-image-meta-container-format": "box" }, /Invalid container format/);
    await expect400({ "x-image-meta-name": "n", "x-image-meta-location": location, "x-image-meta-store": "s3" }, /Invalid store/);
    await expect400({ "x-image-meta-name": "n", "x-image-meta-location": location, "x-image-meta-size": String(data.length + 1) }, /Invalid size/);
    await expect400({ "x-image-meta-name": "n", "x-image-meta-location": location, "x-image-meta-checksum": "0".repeat(64) }, /Invalid checksum/);
    // The file's MD5 is accepted as its checksum too.
    expect((await register(alice, { "x-image-meta-name": "n", "x-image-meta-location": location, "x-image-meta-checksum": md5Hex(data) })).status).toBe(200);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);

    expect((await register(bob, { "x-image-meta-name": "n", "x-image-meta-location": location })).status).toBe(403);
    expect((await register(alice, { "x-image-meta-name": "n", "x-image-meta-location": `pithos://${alice.uuid}/disks/missing` })).status).toBe(404);
    expect((await register(alice, { "x-image-meta-name": "n", "x-image-meta-location": `pithos://${alice.uuid}/nocontainer/x` })).status).toBe(404);
    // A large-object manifest is not one file.
    await alice.put("/disks/manifest", "", { "x-object-manifest": "disks/part" });
    await expect400({ "x-image-meta-name": "n", "x-image-meta-location": `pithos://${alice.uuid}/disks/manifest` }, /manifest/);
  });
});
