/**
 * Fuzzed bodies, queries and headers against every route that reads them: whatever arrives,
 * the answer is never a 500, and every error is Nova's fault body (one key naming the fault,
 * with the status as `code` and a message), which is what keeps novaclient's error printing
 * working (openstack-clients.md 3.3). Bodies are drawn near the real schemas (the known keys
 * with values of any JSON type) as well as from arbitrary JSON and arbitrary text.
 */
import fc from "fast-check";
import type { LightMyRequestResponse } from "fastify";
import { describe, expect, it } from "vitest";
import { computeHarness, testUsers, type ComputeHarness } from "./testing/harness.ts";

const api = "/compute/v2.1";
const runs = { numRuns: 150 };

function expectNovaAnswer(answer: LightMyRequestResponse): void {
  // 501 notImplemented is a deliberate answer (a Nova action we lack); 500 never is.
  expect(answer.statusCode, answer.body).not.toBe(500);
  if (answer.statusCode < 400) return;
  const body = answer.json() as Record<string, unknown>;
  const keys = Object.keys(body);
  expect(keys, answer.body).toHaveLength(1);
  const fault = body[keys[0]!] as { code: unknown; message: unknown };
  expect(fault.code).toBe(answer.statusCode);
  expect(typeof fault.message).toBe("string");
}

/** A JSON object using some of `keys` (and sometimes a stranger), values of any JSON type. */
function near(keys: readonly string[]): fc.Arbitrary<Record<string, unknown>> {
  const key = fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...keys) }, { weight: 1, arbitrary: fc.string({ maxLength: 8 }) });
  const value = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.string(), fc.integer(), fc.constant(null), fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }));
  return fc.dictionary(key, value, { maxKeys: keys.length + 1 });
}

const anyPayload = fc.oneof(fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value)), fc.string({ maxLength: 64 }), fc.constant("[".repeat(5000)));

async function withServer(): Promise<{ h: ComputeHarness; id: string }> {
  const h = await computeHarness();
  const created = await h.request("POST", `${api}/servers`, { json: { server: { name: "vm", imageRef: "img", flavorRef: "1" } } });
  const { id } = (created.json() as { server: { id: string } }).server;
  h.fake.activate(id);
  return { h, id };
}

const createKeys = ["name", "imageRef", "flavorRef", "key_name", "user_data", "metadata", "min_count", "max_count", "networks", "security_groups", "availability_zone", "personality", "block_device_mapping_v2", "adminPass", "OS-DCF:diskConfig"];
const actionNames = ["os-start", "os-stop", "reboot", "resize", "createImage", "os-getVNCConsole", "os-getConsoleOutput", "confirmResize", "rebuild", "fly"];
const actionKeys = ["type", "flavorRef", "name", "metadata", "length", "OS-DCF:diskConfig"];
const versions = fc.constantFrom("2.1", "2.2", "2.6", "2.8", "2.10", "latest");

describe("fuzzed requests never make a 500 and always answer Nova's fault body", () => {
  it("server create", async () => {
    const { h } = await withServer();
    await fc.assert(
      fc.asyncProperty(fc.oneof(near(createKeys).map((server) => JSON.stringify({ server })), anyPayload), versions, async (payload, version) => {
        expectNovaAnswer(await h.request("POST", `${api}/servers`, { payload, headers: { "x-openstack-nova-api-version": version } }));
      }),
      runs,
    );
  });

  it("server update and metadata", async () => {
    const { h, id } = await withServer();
    const metadataPayload = fc.oneof(near(["metadata", "meta"]).map((body) => JSON.stringify(body)), anyPayload);
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(near(["name", "accessIPv4", "OS-DCF:diskConfig"]).map((server) => JSON.stringify({ server })), anyPayload),
        metadataPayload,
        fc.constantFrom("POST", "PUT"),
        fc.string({ minLength: 1, maxLength: 6 }),
        async (update, metadata, method, key) => {
          expectNovaAnswer(await h.request("PUT", `${api}/servers/${id}`, { payload: update }));
          expectNovaAnswer(await h.request(method, `${api}/servers/${id}/metadata`, { payload: metadata }));
          expectNovaAnswer(await h.request("PUT", `${api}/servers/${id}/metadata/${encodeURIComponent(key)}`, { payload: metadata }));
        },
      ),
      runs,
    );
  });

  it("server actions and remote consoles", async () => {
    const { h, id } = await withServer();
    const action = fc.tuple(fc.constantFrom(...actionNames), fc.oneof(near(actionKeys), fc.jsonValue({ maxDepth: 2 }))).map(([name, value]) => JSON.stringify({ [name]: value }));
    const remote = near(["protocol", "type"]).map((remoteConsole) => JSON.stringify({ remote_console: remoteConsole }));
    await fc.assert(
      fc.asyncProperty(fc.oneof(action, anyPayload), fc.oneof(remote, anyPayload), versions, async (actionPayload, remotePayload, version) => {
        h.fake.activate(id);
        const headers = { "x-openstack-nova-api-version": version };
        expectNovaAnswer(await h.request("POST", `${api}/servers/${id}/action`, { payload: actionPayload, headers }));
        expectNovaAnswer(await h.request("POST", `${api}/servers/${id}/remote-consoles`, { payload: remotePayload, headers }));
      }),
      runs,
    );
  });

  it("volume attachments: attach bodies, detach and show paths, list queries", async () => {
    const { h, id } = await withServer();
    const volumeId = h.fake.addVolume(testUsers.alice);
    const volumeIdLike = fc.oneof(fc.constant(volumeId), fc.uuid(), fc.string({ maxLength: 40 }), fc.jsonValue({ maxDepth: 1 }));
    const device = fc.oneof(fc.constantFrom("/dev/vdc", "/dev/sdb", "/dev/xvdz1", "/dev/vda", null), fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 1 }));
    const attach = fc
      .oneof(
        fc.record({ volumeId: volumeIdLike, device }, { requiredKeys: [] }),
        near(["volumeId", "device", "tag", "delete_on_termination"]),
      )
      .map((volumeAttachment) => JSON.stringify({ volumeAttachment }));
    const query = fc.dictionary(fc.constantFrom("limit", "offset", "x"), fc.string({ maxLength: 8 }), { maxKeys: 2 });
    await fc.assert(
      fc.asyncProperty(fc.oneof(attach, anyPayload), fc.string({ minLength: 1, maxLength: 40 }), query, versions, async (payload, pathVolume, params, version) => {
        const headers = { "x-openstack-nova-api-version": version };
        const base = `${api}/servers/${id}/os-volume_attachments`;
        expectNovaAnswer(await h.request("POST", base, { payload, headers }));
        expectNovaAnswer(await h.request("GET", `${base}?${new URLSearchParams(params).toString()}`, { headers }));
        for (const method of ["GET", "DELETE"]) {
          expectNovaAnswer(await h.request(method, `${base}/${encodeURIComponent(pathVolume)}`, { headers }));
        }
        await h.request("DELETE", `${base}/${volumeId}`, { headers });
      }),
      runs,
    );
  });

  it("keypairs and flavors", async () => {
    const { h } = await withServer();
    const keypair = near(["name", "public_key", "type", "user_id"]).map((body) => JSON.stringify({ keypair: body }));
    const flavor = near(["name", "id", "ram", "vcpus", "disk", "swap", "os-flavor-access:is_public", "description"]).map((body) => JSON.stringify({ flavor: body }));
    await fc.assert(
      fc.asyncProperty(fc.oneof(keypair, anyPayload), fc.oneof(flavor, anyPayload), versions, async (keypairPayload, flavorPayload, version) => {
        const headers = { "x-openstack-nova-api-version": version };
        expectNovaAnswer(await h.request("POST", `${api}/os-keypairs`, { payload: keypairPayload, headers }));
        expectNovaAnswer(await h.request("POST", `${api}/flavors`, { payload: flavorPayload, headers, token: "admin" }));
      }),
      runs,
    );
  });

  it("list queries, path parameters and microversion headers", async () => {
    const { h } = await withServer();
    const query = fc.dictionary(fc.constantFrom("name", "status", "limit", "marker", "changes-since", "is_public", "minRam", "minDisk", "user_id", "x"), fc.string({ maxLength: 12 }), { maxKeys: 4 });
    await fc.assert(
      fc.asyncProperty(query, fc.string({ maxLength: 16 }), fc.string({ minLength: 1, maxLength: 12 }), async (params, version, id) => {
        const search = new URLSearchParams(params).toString();
        const headers = { "openstack-api-version": `compute ${version}` };
        for (const path of ["/servers", "/servers/detail", "/flavors/detail", "/os-keypairs"]) {
          expectNovaAnswer(await h.request("GET", `${api}${path}?${search}`, { headers }));
        }
        for (const path of ["/servers/", "/flavors/", "/os-keypairs/"]) {
          expectNovaAnswer(await h.request("GET", `${api}${path}${encodeURIComponent(id)}`));
        }
      }),
      runs,
    );
  });
});
