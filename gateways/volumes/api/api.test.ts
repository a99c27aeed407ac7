/**
 * The Cinder v3 API over a real VolumeService (each database engine), by fastify inject:
 * discovery, auth and project checks, microversions, every route's answer shape and status,
 * and the fault bodies cinderclient and the SDK read.
 */
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { describeEachEngine } from "../../../db/testing/databases.ts";
import { expectFault, volumeWorld, type VolumeWorld } from "../testing/world.ts";

type Json = Record<string, unknown>;

async function created(world: VolumeWorld, volume: Json): Promise<Json> {
  const answer = await world.request("POST", `${world.api}/volumes`, { json: { volume } });
  expect(answer.statusCode, answer.body).toBe(202);
  return (answer.json() as { volume: Json }).volume;
}

/** What compute/ writes when it attaches (db/queries/compute-attachments.ts). */
async function attach(world: VolumeWorld, volumeId: string): Promise<{ serverId: string; attachmentId: string }> {
  const serverId = randomUUID();
  const attachmentId = randomUUID();
  const now = Date.now();
  await world.db.kysely
    .insertInto("compute_servers")
    .values({
      id: serverId, user_uuid: world.alice.uuid, name: "vm", flavor_id: "1", vcpus: 1, ram_mib: 512, disk_gib: 1, image_id: null, root_volume: `server-${serverId}`,
      key_name: null, public_key: null, user_data: null, boot_properties: "{}", vm_state: "active", task_state: null, power_state: 1, progress: 100, fault: null,
      created_at: now, updated_at: now, launched_at: now, terminated_at: null, deleted_at: null,
    })
    .execute();
  await world.db.kysely.insertInto("compute_volume_attachments").values({ id: attachmentId, server_id: serverId, volume_id: volumeId, device: "/dev/vdb", state: "attached", created_at: now, updated_at: now }).execute();
  return { serverId, attachmentId };
}

describeEachEngine("Cinder v3 API", (databases) => {
  describe("discovery, tokens, projects, microversions", () => {
    it("answers the version list at /volume/ (300) and /volume/v3[/] (200) without a token, with absolute hrefs", async () => {
      const world = await volumeWorld(databases);
      const root = await world.request("GET", "/volume/", { token: null });
      expect(root.statusCode).toBe(300);
      for (const path of ["/volume/v3", "/volume/v3/"]) {
        const answer = await world.request("GET", path, { token: null });
        expect(answer.statusCode).toBe(200);
        expect(answer.json()).toEqual(root.json());
      }
      const [version] = (root.json() as { versions: Array<Json & { links: Array<{ rel: string; href: string }> }> }).versions;
      expect(version).toMatchObject({ id: "v3.0", status: "CURRENT", version: "3.0", min_version: "3.0" });
      expect(version!.links.find((link) => link.rel === "self")!.href).toBe("http://cloud.test:8080/volume/v3/");
    });

    it("401 without a token or with a bad one (keystonemiddleware's body); 400 for another project's URL; 404 off the map", async () => {
      const world = await volumeWorld(databases);
      for (const token of [null, { raw: "nonsense" }] as const) {
        const answer = await world.request("GET", `${world.api}/volumes`, { token });
        expect(answer.statusCode).toBe(401);
        expect(answer.json()).toEqual({ error: { code: 401, title: "Unauthorized", message: expect.any(String) as string } });
        expect(answer.headers["www-authenticate"]).toBe('Keystone uri="http://cloud.test:8080/identity"');
      }
      expect(expectFault(await world.request("GET", `/volume/v3/${world.bob.uuid}/volumes`), 400, "badRequest")).toBe("Malformed request url");
      expectFault(await world.request("GET", "/volume/v3/not-a-project!/volumes"), 404, "itemNotFound");
      expectFault(await world.request("GET", `${world.api}/nosuch`), 404, "itemNotFound");
      expectFault(await world.request("GET", `${world.api}/volumes/${randomUUID()}`), 404, "itemNotFound");
    });

    it("negotiates 3.0 from either header, echoes it; 406 outside the range, 400 when malformed", async () => {
      const world = await volumeWorld(databases);
      const headerSets: Array<Record<string, string>> = [{}, { "openstack-api-version": "volume 3.0" }, { "openstack-api-version": "volume latest" }, { "x-openstack-volume-api-version": "3.0" }, { "openstack-api-version": "compute 2.90" }];
      for (const headers of headerSets) {
        const answer = await world.request("GET", `${world.api}/volumes`, { headers });
        expect(answer.statusCode, JSON.stringify(headers)).toBe(200);
        expect(answer.headers["openstack-api-version"]).toBe("volume 3.0");
        expect(answer.headers["vary"]).toBe("OpenStack-API-Version");
      }
      expect(expectFault(await world.request("GET", `${world.api}/volumes`, { headers: { "openstack-api-version": "volume 3.71" } }), 406, "computeFault")).toBe(
        "Version 3.71 is not supported by the API. Minimum is 3.0 and maximum is 3.0.",
      );
      expectFault(await world.request("GET", `${world.api}/volumes`, { headers: { "openstack-api-version": "volume 2.0" } }), 406, "computeFault");
      expectFault(await world.request("GET", `${world.api}/volumes`, { headers: { "openstack-api-version": "volume 3.00" } }), 400, "badRequest");
    });
  });

  describe("volumes", () => {
    it("create answers 202 with every field OSC shows; show, list and detail agree; links are absolute", async () => {
      const world = await volumeWorld(databases);
      // cinderclient's body: every key present, most of them null.
      const volume = await created(world, {
        size: 1, consistencygroup_id: null, snapshot_id: null, name: " v1 ", description: null, volume_type: null, availability_zone: null, metadata: { a: "b" }, imageRef: null, source_volid: null, backup_id: null,
      });
      const id = String(volume["id"]);
      expect(volume).toMatchObject({
        name: "v1", status: "available", size: 1, availability_zone: "nova", volume_type: "__DEFAULT__", bootable: "false", multiattach: false, encrypted: false,
        attachments: [], metadata: { a: "b" }, snapshot_id: null, source_volid: null, description: null, user_id: world.alice.uuid, "os-vol-tenant-attr:tenant_id": world.alice.uuid,
      });
      expect(volume["created_at"]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
      expect(volume["links"]).toEqual([
        { rel: "self", href: `http://cloud.test:8080/volume/v3/${world.alice.uuid}/volumes/${id}` },
        { rel: "bookmark", href: `http://cloud.test:8080/volume/${world.alice.uuid}/volumes/${id}` },
      ]);
      expect(volume).not.toHaveProperty("volume_image_metadata");
      const shown = await world.request("GET", `${world.api}/volumes/${id}`);
      expect((shown.json() as { volume: Json }).volume).toEqual({ ...volume, updated_at: expect.any(String) as string });
      const list = (await world.request("GET", `${world.api}/volumes`)).json() as { volumes: Json[] };
      expect(list.volumes).toEqual([{ id, name: "v1", links: volume["links"] }]);
      const detail = (await world.request("GET", `${world.api}/volumes/detail`)).json() as { volumes: Json[] };
      expect(detail.volumes.map((item) => item["id"])).toEqual([id]);
      // bob sees nothing of it.
      expect(((await world.request("GET", `/volume/v3/${world.bob.uuid}/volumes/detail`, { token: "bob" })).json() as { volumes: Json[] }).volumes).toEqual([]);
      expectFault(await world.request("GET", `/volume/v3/${world.bob.uuid}/volumes/${id}`, { token: "bob" }), 404, "itemNotFound");
    });

    it("from an image: bootable \"true\" and volume_image_metadata; from a snapshot and a volume", async () => {
      const world = await volumeWorld(databases);
      const fromImage = await created(world, { size: 1, imageRef: world.imageId, name: "v3" });
      expect(fromImage).toMatchObject({ bootable: "true", volume_image_metadata: { image_id: world.imageId, image_name: "cirros", os_distro: "cirros" } });
      expectFault(await world.request("POST", `${world.api}/volumes`, { json: { volume: { size: 1, imageRef: randomUUID() } } }), 400, "badRequest");
      const snapshot = await world.request("POST", `${world.api}/snapshots`, { json: { snapshot: { volume_id: fromImage["id"], name: "s1", force: false, description: null, metadata: {} } } });
      expect(snapshot.statusCode, snapshot.body).toBe(202);
      const snapshotId = String((snapshot.json() as { snapshot: Json }).snapshot["id"]);
      const fromSnapshot = await created(world, { snapshot_id: snapshotId, name: "v2" });
      expect(fromSnapshot).toMatchObject({ size: 1, snapshot_id: snapshotId, bootable: "false" });
      const fromVolume = await created(world, { source_volid: fromImage["id"], size: 2 });
      expect(fromVolume).toMatchObject({ size: 2, source_volid: fromImage["id"] });
      expectFault(await world.request("POST", `${world.api}/volumes`, { json: { volume: { size: 1, snapshot_id: snapshotId, source_volid: fromImage["id"] } } }), 400, "badRequest");
    });

    it("refuses bad bodies with Cinder's schema wording", async () => {
      const world = await volumeWorld(databases);
      const cases: Array<[unknown, string]> = [
        [{ volume: { size: "x" } }, "Invalid input for field/attribute volume.size. Value: 'x'. 'x' does not match '^[0-9]+$'"],
        [{ volume: { size: 0 } }, "Invalid input for field/attribute volume.size. Value: 0. 0 is less than the minimum of 1"],
        [{ volume: { size: 1, metadata: { "bad key!": "v" } } }, "Invalid input for field/attribute volume.metadata"],
        [{ volume: { size: 1, snapshot_id: "nope" } }, "Invalid input for field/attribute volume.snapshot_id. Value: 'nope'. 'nope' is not a 'uuid'"],
        [{ volume: { size: 1, availability_zone: "elsewhere" } }, "Availability zone 'elsewhere' is invalid."],
        [{ volume: { size: 1, multiattach: true } }, "multiattach"],
        [{ volume: { size: 1 }, extra: 1 }, "Additional properties are not allowed ('extra' was unexpected)"],
        [{ volume: 1 }, "Invalid input for field/attribute volume. Value: 1. 1 is not of type 'object'"],
        [[1], "Malformed request body"],
        [{ volume: {} }, "size is required"],
        [{ volume: { size: 20_000 } }, "Volume size must be at most 16384 GiB"],
      ];
      for (const [body, message] of cases) expect(expectFault(await world.request("POST", `${world.api}/volumes`, { json: body }), 400, "badRequest")).toContain(message);
      expect(expectFault(await world.request("POST", `${world.api}/volumes`, { payload: "{not json" }), 400, "badRequest")).toBe("Malformed request body");
      expect(expectFault(await world.request("POST", `${world.api}/volumes`, { json: { volume: { size: 1, volume_type: "ssd" } } }), 404, "itemNotFound")).toBe("Volume type with name ssd could not be found.");
    });

    it("over quota: 413 overLimit with Cinder's message", async () => {
      const world = await volumeWorld(databases);
      await world.setDiskLimitGib(1);
      const message = expectFault(await world.request("POST", `${world.api}/volumes`, { json: { volume: { size: 2 } } }), 413, "overLimit");
      expect(message).toBe("VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed gigabytes quota. Requested 2G, quota is 1G and 0G has been consumed.");
    });

    it("lists by name and status, pages with volumes_links, sorts; refuses unknown sort keys and bad limits", async () => {
      const world = await volumeWorld(databases);
      for (const name of ["a", "b", "c"]) await created(world, { size: 1, name });
      const byName = (await world.request("GET", `${world.api}/volumes/detail?name=b`)).json() as { volumes: Json[] };
      expect(byName.volumes.map((volume) => volume["name"])).toEqual(["b"]);
      expect(((await world.request("GET", `${world.api}/volumes?status=in-use`)).json() as { volumes: Json[] }).volumes).toEqual([]);
      const names: unknown[] = [];
      let url: string | undefined = `${world.api}/volumes/detail?limit=2&sort=name:asc&all_tenants=False`;
      while (url !== undefined) {
        const page = (await world.request("GET", url)).json() as { volumes: Json[]; volumes_links?: Array<{ rel: string; href: string }> };
        names.push(...page.volumes.map((volume) => volume["name"]));
        const next = page.volumes_links?.find((link) => link.rel === "next")?.href;
        expect(next === undefined || next.startsWith("http://cloud.test:8080/volume/v3/")).toBe(true);
        url = next?.replace("http://cloud.test:8080", "");
      }
      expect(names).toEqual(["a", "b", "c"]);
      expect(((await world.request("GET", `${world.api}/volumes?sort_key=name&sort_dir=desc`)).json() as { volumes: Json[] }).volumes.map((volume) => volume["name"])).toEqual(["c", "b", "a"]);
      expectFault(await world.request("GET", `${world.api}/volumes?sort=colour`), 400, "badRequest");
      expectFault(await world.request("GET", `${world.api}/volumes?sort=name&sort_key=name`), 400, "badRequest");
      expectFault(await world.request("GET", `${world.api}/volumes?limit=x`), 400, "badRequest");
      expectFault(await world.request("GET", `${world.api}/volumes?marker=${randomUUID()}`), 404, "itemNotFound");
    });

    it("update renames and describes; metadata: POST merges, PUT replaces, item get/put/delete", async () => {
      const world = await volumeWorld(databases);
      const id = String((await created(world, { size: 1, name: "v1", metadata: { a: "1" } }))["id"]);
      const updated = await world.request("PUT", `${world.api}/volumes/${id}`, { json: { volume: { name: "renamed", description: "d" } } });
      expect((updated.json() as { volume: Json }).volume).toMatchObject({ name: "renamed", description: "d" });
      expectFault(await world.request("PUT", `${world.api}/volumes/${id}`, { json: { volume: { size: 3 } } }), 400, "badRequest");
      const merged = await world.request("POST", `${world.api}/volumes/${id}/metadata`, { json: { metadata: { b: "2" } } });
      expect(merged.json()).toEqual({ metadata: { a: "1", b: "2" } });
      expect((await world.request("PUT", `${world.api}/volumes/${id}/metadata`, { json: { metadata: { c: "3" } } })).json()).toEqual({ metadata: { c: "3" } });
      expect((await world.request("GET", `${world.api}/volumes/${id}/metadata`)).json()).toEqual({ metadata: { c: "3" } });
      expect((await world.request("PUT", `${world.api}/volumes/${id}/metadata/d`, { json: { meta: { d: "4" } } })).json()).toEqual({ meta: { d: "4" } });
      expectFault(await world.request("PUT", `${world.api}/volumes/${id}/metadata/d`, { json: { meta: { e: "4" } } }), 400, "badRequest");
      expect((await world.request("GET", `${world.api}/volumes/${id}/metadata/d`)).json()).toEqual({ meta: { d: "4" } });
      expect((await world.request("DELETE", `${world.api}/volumes/${id}/metadata/d`)).statusCode).toBe(200);
      expectFault(await world.request("DELETE", `${world.api}/volumes/${id}/metadata/d`), 404, "itemNotFound");
      expectFault(await world.request("GET", `${world.api}/volumes/${id}/metadata/d`), 404, "itemNotFound");
      expect((await world.request("PUT", `${world.api}/volumes/${id}`, { json: { volume: { metadata: { z: "9" } } } })).json()).toMatchObject({ volume: { metadata: { z: "9" } } });
    });

    it("actions: os-extend 202, os-set_bootable 200; unknown 400, admin 403; delete 202, then 404", async () => {
      const world = await volumeWorld(databases);
      const id = String((await created(world, { size: 1 }))["id"]);
      const action = (body: unknown) => world.request("POST", `${world.api}/volumes/${id}/action`, { json: body });
      expect((await action({ "os-extend": { new_size: "2" } })).statusCode).toBe(202);
      expect((await world.request("GET", `${world.api}/volumes/${id}`)).json()).toMatchObject({ volume: { size: 2 } });
      expectFault(await action({ "os-extend": { new_size: 2 } }), 400, "badRequest");
      expectFault(await action({ "os-extend": {} }), 400, "badRequest");
      expect((await action({ "os-set_bootable": { bootable: "True" } })).statusCode).toBe(200);
      expect((await world.request("GET", `${world.api}/volumes/${id}`)).json()).toMatchObject({ volume: { bootable: "true" } });
      expectFault(await action({ "os-set_bootable": { bootable: "maybe" } }), 400, "badRequest");
      expect(expectFault(await action({ "os-fly": {} }), 400, "badRequest")).toBe("There is no such action: os-fly");
      expectFault(await action({ "os-update_readonly_flag": { readonly: true } }), 400, "badRequest");
      expectFault(await action({ "os-reset_status": { status: "available" } }), 403, "forbidden");
      expectFault(await action({ "os-extend": { new_size: 2 }, "os-set_bootable": { bootable: true } }), 400, "badRequest");
      expect((await world.request("DELETE", `${world.api}/volumes/${id}`)).statusCode).toBe(202);
      expectFault(await world.request("GET", `${world.api}/volumes/${id}`), 404, "itemNotFound");
      expectFault(await world.request("DELETE", `${world.api}/volumes/${id}`), 404, "itemNotFound");
    });

    it("an attached volume shows in-use with its attachment; delete and extend are refused as Cinder refuses them (400)", async () => {
      const world = await volumeWorld(databases);
      const id = String((await created(world, { size: 1 }))["id"]);
      const { serverId, attachmentId } = await attach(world, id);
      const volume = ((await world.request("GET", `${world.api}/volumes/${id}`)).json() as { volume: Json }).volume;
      expect(volume).toMatchObject({ status: "in-use", attachments: [{ id, attachment_id: attachmentId, volume_id: id, server_id: serverId, host_name: null, device: "/dev/vdb", attached_at: expect.any(String) as string }] });
      expect(expectFault(await world.request("DELETE", `${world.api}/volumes/${id}`), 400, "badRequest")).toMatch(/^Invalid volume: Volume status must be available/);
      expectFault(await world.request("POST", `${world.api}/volumes/${id}/action`, { json: { "os-extend": { new_size: 2 } } }), 400, "badRequest");
      expectFault(await world.request("POST", `${world.api}/snapshots`, { json: { snapshot: { volume_id: id } } }), 400, "badRequest");
      expect((await world.request("POST", `${world.api}/snapshots`, { json: { snapshot: { volume_id: id, force: "true" } } })).statusCode).toBe(202);
    });
  });

  describe("snapshots, limits, types, zones", () => {
    it("snapshot create, list, detail, show, update, delete", async () => {
      const world = await volumeWorld(databases);
      const volumeId = String((await created(world, { size: 1 }))["id"]);
      const answer = await world.request("POST", `${world.api}/snapshots`, { json: { snapshot: { volume_id: volumeId, name: "s1", description: "d" } } });
      expect(answer.statusCode).toBe(202);
      const snapshot = (answer.json() as { snapshot: Json }).snapshot;
      expect(snapshot).toMatchObject({ name: "s1", description: "d", volume_id: volumeId, status: "available", size: 1, metadata: {} });
      const id = String(snapshot["id"]);
      for (const path of ["/snapshots", "/snapshots/detail", `/snapshots?volume_id=${volumeId}&name=s1`]) {
        expect(((await world.request("GET", `${world.api}${path}`)).json() as { snapshots: Json[] }).snapshots.map((item) => item["id"])).toEqual([id]);
      }
      expect((await world.request("GET", `${world.api}/snapshots/${id}`)).json()).toMatchObject({ snapshot: { id, name: "s1" } });
      expect((await world.request("PUT", `${world.api}/snapshots/${id}`, { json: { snapshot: { name: "s2" } } })).json()).toMatchObject({ snapshot: { name: "s2" } });
      expectFault(await world.request("PUT", `${world.api}/snapshots/${id}`, { json: { snapshot: {} } }), 400, "badRequest");
      expectFault(await world.request("POST", `${world.api}/snapshots`, { json: { snapshot: { volume_id: volumeId, metadata: { a: "b" } } } }), 400, "badRequest");
      expectFault(await world.request("POST", `${world.api}/snapshots`, { json: { snapshot: { name: "x" } } }), 400, "badRequest");
      expectFault(await world.request("POST", `${world.api}/snapshots`, { json: { snapshot: { volume_id: randomUUID() } } }), 404, "itemNotFound");
      expectFault(await world.request("DELETE", `${world.api}/volumes/${volumeId}`), 400, "badRequest");
      expect((await world.request("DELETE", `${world.api}/snapshots/${id}`)).statusCode).toBe(202);
      expectFault(await world.request("GET", `${world.api}/snapshots/${id}`), 404, "itemNotFound");
      expect((await world.request("DELETE", `${world.api}/volumes/${volumeId}?cascade=True`)).statusCode).toBe(202);
    });

    it("limits from the volume.disk quota; one volume type; one zone", async () => {
      const world = await volumeWorld(databases);
      await world.setDiskLimitGib(10);
      await created(world, { size: 3 });
      const limits = (await world.request("GET", `${world.api}/limits`)).json() as { limits: { rate: unknown[]; absolute: Json } };
      expect(limits.limits.rate).toEqual([]);
      expect(limits.limits.absolute).toMatchObject({ maxTotalVolumeGigabytes: 10, totalGigabytesUsed: 3, totalVolumesUsed: 1, maxTotalVolumes: -1, maxTotalSnapshots: -1 });
      const types = (await world.request("GET", `${world.api}/types`)).json() as { volume_types: Json[] };
      expect(types.volume_types.map((type) => type["name"])).toEqual(["__DEFAULT__"]);
      const typeId = String(types.volume_types[0]!["id"]);
      for (const id of [typeId, "default"]) expect((await world.request("GET", `${world.api}/types/${id}`)).json()).toMatchObject({ volume_type: { name: "__DEFAULT__" } });
      expectFault(await world.request("GET", `${world.api}/types/${randomUUID()}`), 404, "itemNotFound");
      expect((await world.request("GET", `${world.api}/os-availability-zone`)).json()).toEqual({ availabilityZoneInfo: [{ zoneName: "nova", zoneState: { available: true } }] });
    });
  });
});
