/**
 * Fuzzed bodies, queries, paths and headers against every route of the volume API that reads
 * them, over a real VolumeService (SQLite in memory): whatever arrives, the answer is never a
 * 500, and every error is Cinder's fault body (one key naming the fault, with the status as
 * `code` and a message), which cinderclient's from_response and the SDK read. Bodies are drawn
 * near the real schemas (the known keys with values of any JSON type) as well as from
 * arbitrary JSON and arbitrary text.
 */
import fc from "fast-check";
import type { LightMyRequestResponse } from "fastify";
import { beforeAll, describe, expect, it } from "vitest";
import { memoryDatabases, volumeWorld, type VolumeWorld } from "../testing/world.ts";

const runs = { numRuns: 120 };

function expectCinderAnswer(answer: LightMyRequestResponse): void {
  expect(answer.statusCode, answer.body).toBeLessThan(500);
  if (answer.statusCode < 400) return;
  const body = answer.json() as Record<string, unknown>;
  const keys = Object.keys(body);
  expect(keys, answer.body).toHaveLength(1);
  const fault = body[keys[0]!] as { code: unknown; message: unknown };
  expect(fault.code).toBe(answer.statusCode);
  expect(typeof fault.message).toBe("string");
}

/** A JSON object using some of `keys` (and sometimes a stranger), values of any JSON type. */
function near(keys: readonly string[], extraValues: fc.Arbitrary<unknown>[] = []): fc.Arbitrary<Record<string, unknown>> {
  const key = fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...keys) }, { weight: 1, arbitrary: fc.string({ maxLength: 8 }) });
  const value = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.string(),
    fc.integer(),
    fc.constantFrom(null, true, "true", "1", "0", 1, 2, 16385, "3"),
    fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }),
    ...extraValues,
  );
  return fc.dictionary(key, value, { maxKeys: keys.length + 1 });
}

const anyPayload = fc.oneof(fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value)), fc.string({ maxLength: 64 }), fc.constant("[".repeat(5000)));
const versions = fc.constantFrom("3.0", "3.1", "3.71", "latest", "2.0", "3", "x", "");

const createKeys = ["name", "description", "display_name", "display_description", "size", "metadata", "snapshot_id", "source_volid", "imageRef", "image_id", "volume_type", "availability_zone", "multiattach", "consistencygroup_id", "backup_id"];
const actionNames = ["os-extend", "os-set_bootable", "os-update_readonly_flag", "os-reset_status", "os-attach", "os-force_delete", "fly"];

describe("fuzzed requests never make a 500 and always answer Cinder's fault body", () => {
  let world: VolumeWorld;
  let volumeId: string;
  let snapshotId: string;

  beforeAll(async () => {
    world = await volumeWorld(memoryDatabases);
    await world.setDiskLimitGib(1000);
    volumeId = ((await world.request("POST", `${world.api}/volumes`, { json: { volume: { size: 1, name: "target" } } })).json() as { volume: { id: string } }).volume.id;
    const snapshot = await world.request("POST", `${world.api}/snapshots`, { json: { snapshot: { volume_id: volumeId } } });
    snapshotId = (snapshot.json() as { snapshot: { id: string } }).snapshot.id;
  });

  it("volume create", async () => {
    const ids = [fc.constant(volumeId), fc.constant(snapshotId), fc.uuid()];
    const body = near(createKeys, ids).map((volume) => JSON.stringify({ volume }));
    await fc.assert(
      fc.asyncProperty(fc.oneof(body, anyPayload), versions, async (payload, version) => {
        expectCinderAnswer(await world.request("POST", `${world.api}/volumes`, { payload, headers: { "openstack-api-version": `volume ${version}` } }));
      }),
      runs,
    );
  });

  it("volume update, metadata and metadata items", async () => {
    const update = near(["name", "description", "display_name", "display_description", "metadata"]).map((volume) => JSON.stringify({ volume }));
    const metadata = near(["metadata", "meta"]).map((body) => JSON.stringify(body));
    await fc.assert(
      fc.asyncProperty(fc.oneof(update, anyPayload), fc.oneof(metadata, anyPayload), fc.constantFrom("POST", "PUT"), fc.string({ minLength: 1, maxLength: 8 }), async (updatePayload, metadataPayload, method, key) => {
        expectCinderAnswer(await world.request("PUT", `${world.api}/volumes/${volumeId}`, { payload: updatePayload }));
        expectCinderAnswer(await world.request(method, `${world.api}/volumes/${volumeId}/metadata`, { payload: metadataPayload }));
        for (const itemMethod of ["GET", "PUT", "DELETE"]) {
          expectCinderAnswer(await world.request(itemMethod, `${world.api}/volumes/${volumeId}/metadata/${encodeURIComponent(key)}`, { payload: metadataPayload }));
        }
      }),
      runs,
    );
  });

  it("volume actions", async () => {
    const action = fc
      .tuple(fc.constantFrom(...actionNames), fc.oneof(near(["new_size", "bootable", "readonly", "status"]), fc.jsonValue({ maxDepth: 2 })))
      .map(([name, value]) => JSON.stringify({ [name]: value }));
    await fc.assert(
      fc.asyncProperty(fc.oneof(action, anyPayload), async (payload) => {
        expectCinderAnswer(await world.request("POST", `${world.api}/volumes/${volumeId}/action`, { payload }));
      }),
      runs,
    );
  });

  it("snapshot create and update", async () => {
    const create = near(["name", "display_name", "description", "volume_id", "force", "metadata"], [fc.constant(volumeId), fc.uuid()]).map((snapshot) => JSON.stringify({ snapshot }));
    const update = near(["name", "description", "display_name", "display_description"]).map((snapshot) => JSON.stringify({ snapshot }));
    await fc.assert(
      fc.asyncProperty(fc.oneof(create, anyPayload), fc.oneof(update, anyPayload), async (createPayload, updatePayload) => {
        expectCinderAnswer(await world.request("POST", `${world.api}/snapshots`, { payload: createPayload }));
        expectCinderAnswer(await world.request("PUT", `${world.api}/snapshots/${snapshotId}`, { payload: updatePayload }));
      }),
      runs,
    );
  });

  it("list queries, path parameters, projects and microversion headers", async () => {
    const query = fc.dictionary(fc.constantFrom("name", "status", "limit", "marker", "sort", "sort_key", "sort_dir", "volume_id", "all_tenants", "cascade", "x"), fc.string({ maxLength: 12 }), { maxKeys: 4 });
    const legacy = fc.oneof(fc.constant(undefined), fc.string({ maxLength: 8 }));
    await fc.assert(
      fc.asyncProperty(query, versions, legacy, fc.string({ minLength: 1, maxLength: 40 }), fc.string({ minLength: 1, maxLength: 40 }), async (params, version, legacyVersion, id, project) => {
        const search = new URLSearchParams(params).toString();
        const headers: Record<string, string> = { "openstack-api-version": `volume ${version}`, ...(legacyVersion !== undefined && { "x-openstack-volume-api-version": legacyVersion }) };
        for (const path of ["/volumes", "/volumes/detail", "/snapshots", "/snapshots/detail", "/limits", "/types"]) {
          expectCinderAnswer(await world.request("GET", `${world.api}${path}?${search}`, { headers }));
        }
        for (const path of ["/volumes/", "/snapshots/", "/types/"]) expectCinderAnswer(await world.request("GET", `${world.api}${path}${encodeURIComponent(id)}`));
        expectCinderAnswer(await world.request("DELETE", `${world.api}/volumes/${encodeURIComponent(id)}?${search}`));
        expectCinderAnswer(await world.request("GET", `/volume/v3/${encodeURIComponent(project)}/volumes`));
      }),
      runs,
    );
  });
});
