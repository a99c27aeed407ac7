/**
 * /servers and their metadata as novaclient (pinned 2.1) and the SDK read them
 * (openstack-clients.md 3.3): the lookup dance, create's answer, the fields OSC needs.
 */
import { describe, expect, it } from "vitest";
import { computeHarness, expectFault, testUsers, type ComputeHarness } from "./testing/harness.ts";

const api = "/compute/v2.1";
/** What `openstack server create --image cirros --flavor m1.tiny --key-name k1 vm1` sends (3.3). */
const oscCreateBody = { server: { name: "vm1", imageRef: "0d4bd0e0-5a59-4c88-9b5d-4c5a3c0b1e11", flavorRef: "1", key_name: "k1", min_count: 1, max_count: 1 } };

async function createServer(h: ComputeHarness, name = "vm1", extra: Record<string, unknown> = {}): Promise<string> {
  const answer = await h.request("POST", `${api}/servers`, { json: { server: { ...oscCreateBody.server, name, ...extra } } });
  expect(answer.statusCode, answer.body).toBe(202);
  return (answer.json() as { server: { id: string } }).server.id;
}

describe("server create", () => {
  it("answers OSC's body with 202, a Location and Nova's minimal server without adminPass", async () => {
    const h = await computeHarness();
    const answer = await h.request("POST", `${api}/servers`, { json: oscCreateBody, headers: { "x-openstack-nova-api-version": "2.1" } });
    expect(answer.statusCode).toBe(202);
    const { server } = answer.json() as { server: Record<string, unknown> };
    expect(Object.keys(server).sort()).toEqual(["OS-DCF:diskConfig", "id", "links", "security_groups"]);
    expect(answer.headers["location"]).toBe(`http://cloud.test:8080${api}/servers/${String(server["id"])}`);
    expect(server["links"]).toEqual([
      { rel: "self", href: `http://cloud.test:8080${api}/servers/${String(server["id"])}` },
      { rel: "bookmark", href: `http://cloud.test:8080/compute/servers/${String(server["id"])}` },
    ]);
    expect(h.fake.calls.at(-1)).toEqual({
      method: "createServer",
      args: [{ userUuid: testUsers.alice, isAdmin: false }, { name: "vm1", imageRef: oscCreateBody.server.imageRef, flavorRef: "1", keyName: "k1" }],
    });
  });

  it("decodes user_data, takes metadata, href references and integer flavors, ignores networks auto", async () => {
    const h = await computeHarness();
    await createServer(h, "vm2", {
      user_data: Buffer.from("#cloud-config\n").toString("base64"),
      metadata: { role: "web" },
      imageRef: "http://cloud.test:8080/image/v2/images/abc",
      flavorRef: 2,
      networks: "auto",
      security_groups: [{ name: "default" }],
      availability_zone: "nova",
    });
    const request = h.fake.calls.at(-1)!.args[1] as { userData: Buffer; metadata: unknown; imageRef: string; flavorRef: string };
    expect(request.userData.toString()).toBe("#cloud-config\n");
    expect(request).toMatchObject({ metadata: { role: "web" }, imageRef: "abc", flavorRef: "2" });
  });

  const refusals: Array<[string, Record<string, unknown>, string]> = [
    ["no name", { name: undefined }, "'name' is a required property"],
    ["a numeric name", { name: 7 }, "not of type 'string'"],
    ["a name with spaces around", { name: " vm " }, "whitespace"],
    ["a name too long", { name: "n".repeat(256) }, "too long"],
    ["no imageRef", { imageRef: undefined }, "'imageRef' is a required property"],
    ["an object flavorRef", { flavorRef: {} }, "flavorRef"],
    ["bad base64 user_data", { user_data: "not base64!" }, "valid base 64"],
    ["metadata with a number", { metadata: { a: 1 } }, "metadata.a"],
    ["metadata with a slash key", { metadata: { "a/b": "x" } }, "a/b"],
    ["two servers", { max_count: 2 }, "more than one server"],
    ["min above max", { min_count: 3, max_count: 2 }, "min_count"],
    ["networks", { networks: [{ uuid: "n1" }] }, "networks"],
    ["block devices", { block_device_mapping_v2: [] }, "volumes"],
    ["personality", { personality: [{ path: "/etc/x", contents: "eA==" }] }, "user_data"],
    ["another zone", { availability_zone: "az2" }, "availability zone"],
    ["an unknown key", { colour: "blue" }, "'colour' was unexpected"],
  ];
  for (const [what, change, message] of refusals) {
    it(`refuses ${what} with 400`, async () => {
      const h = await computeHarness();
      const server: Record<string, unknown> = { ...oscCreateBody.server, ...change };
      for (const key of Object.keys(change)) if (change[key] === undefined) delete server[key];
      expect(expectFault(await h.request("POST", `${api}/servers`, { json: { server } }), 400, "badRequest")).toContain(message);
      expect(h.fake.calls).toEqual([]);
    });
  }

  it("answers over quota with 403 forbidden and the service's message", async () => {
    const h = await computeHarness();
    h.fake.serversPerUserMax = 1;
    await createServer(h);
    const message = expectFault(await h.request("POST", `${api}/servers`, { json: oscCreateBody }), 403, "forbidden");
    expect(message).toContain("Quota exceeded for instances");
  });
});

describe("server show and list", () => {
  it("shows Nova's full server with the fields OSC needs (3.3)", async () => {
    const h = await computeHarness();
    const id = await createServer(h);
    h.fake.activate(id);
    const answer = await h.request("GET", `${api}/servers/${id}`);
    expect(answer.statusCode).toBe(200);
    const { server } = answer.json() as { server: Record<string, unknown> };
    expect(server).toMatchObject({
      id, name: "vm1", status: "ACTIVE", tenant_id: testUsers.alice, user_id: testUsers.alice, metadata: {},
      image: { id: oscCreateBody.server.imageRef }, flavor: { id: "1", links: [{ rel: "bookmark", href: "http://cloud.test:8080/compute/flavors/1" }] },
      created: "2026-11-24T04:50:58Z", updated: "2026-11-24T04:50:58Z", progress: 100, addresses: {}, key_name: "k1",
      "OS-EXT-STS:vm_state": "active", "OS-EXT-STS:task_state": null, "OS-EXT-STS:power_state": 1,
      "OS-SRV-USG:launched_at": "2026-11-24T04:50:58.123000", "OS-SRV-USG:terminated_at": null,
      "os-extended-volumes:volumes_attached": [], "OS-DCF:diskConfig": "MANUAL", "OS-EXT-AZ:availability_zone": "nova",
    });
    expect(server["hostId"]).toMatch(/^[0-9a-f]{56}$/);
    expect(server).not.toHaveProperty("locked");
    expect(server).not.toHaveProperty("fault");
    const at29 = (await h.request("GET", `${api}/servers/${id}`, { headers: { "x-openstack-nova-api-version": "2.9" } })).json() as { server: Record<string, unknown> };
    expect(at29.server["locked"]).toBe(false);
  });

  it("shows boot-from-volume as image \"\" and a failed server's fault, without progress", async () => {
    const h = await computeHarness();
    const id = await createServer(h);
    Object.assign(h.fake.servers.get(id)!, { imageId: null, vmState: "error", taskState: null, status: "ERROR", fault: { code: 500, message: "QEMU failed to start", createdAt: Date.parse("2026-11-24T05:00:00Z") } });
    const { server } = (await h.request("GET", `${api}/servers/${id}`)).json() as { server: Record<string, unknown> };
    expect(server["image"]).toBe("");
    expect(server["fault"]).toEqual({ code: 500, created: "2026-11-24T05:00:00Z", message: "QEMU failed to start" });
    expect(server).not.toHaveProperty("progress");
  });

  it("does the osc-lib lookup: GET by name 404s, ?name= answers 200 with an empty list", async () => {
    const h = await computeHarness();
    await createServer(h, "other");
    expect(expectFault(await h.request("GET", `${api}/servers/nosuch`), 404, "itemNotFound")).toBe("Instance nosuch could not be found.");
    const listed = await h.request("GET", `${api}/servers?name=nosuch`);
    expect(listed.statusCode).toBe(200);
    expect(listed.json()).toEqual({ servers: [] });
    const found = (await h.request("GET", `${api}/servers?name=oth`)).json() as { servers: Array<Record<string, unknown>> };
    expect(found.servers.map((server) => Object.keys(server).sort())).toEqual([["id", "links", "name"]]);
  });

  it("hides other users' servers, shows them to an admin", async () => {
    const h = await computeHarness();
    const id = await createServer(h);
    expectFault(await h.request("GET", `${api}/servers/${id}`, { token: "bob" }), 404, "itemNotFound");
    expect((await h.request("GET", `${api}/servers/detail`, { token: "bob" })).json()).toEqual({ servers: [] });
    expect((await h.request("GET", `${api}/servers/${id}`, { token: "admin" })).statusCode).toBe(200);
  });

  it("filters by status (an unknown one matches nothing, as Nova before 2.38), changes-since, and pages with servers_links", async () => {
    const h = await computeHarness();
    const ids = [await createServer(h, "a"), await createServer(h, "b"), await createServer(h, "c")];
    h.fake.activate(ids[1]!);
    const active = (await h.request("GET", `${api}/servers/detail?status=active`)).json() as { servers: Array<{ id: string }> };
    expect(active.servers.map((server) => server.id)).toEqual([ids[1]]);
    expect((await h.request("GET", `${api}/servers?status=SLEEPING`)).json()).toEqual({ servers: [] });
    expect(h.fake.calls.filter((call) => call.method === "listServers")).toHaveLength(1);

    expectFault(await h.request("GET", `${api}/servers?changes-since=yesterday`), 400, "badRequest");
    const since = (await h.request("GET", `${api}/servers?changes-since=2026-11-24T04:00:00Z`)).json() as { servers: unknown[] };
    expect(since.servers).toHaveLength(3);

    const page = (await h.request("GET", `${api}/servers?limit=2&name=.`)).json() as { servers: Array<{ id: string }>; servers_links: Array<{ rel: string; href: string }> };
    expect(page.servers.map((server) => server.id)).toEqual(ids.slice(0, 2));
    const next = new URL(page.servers_links[0]!.href);
    expect(next.pathname).toBe(`${api}/servers`);
    expect(Object.fromEntries(next.searchParams)).toEqual({ name: ".", limit: "2", marker: ids[1] });
    const rest = (await h.request("GET", `${next.pathname}${next.search}`)).json() as { servers: Array<{ id: string }>; servers_links?: unknown };
    expect(rest.servers.map((server) => server.id)).toEqual([ids[2]]);
    expect(rest).not.toHaveProperty("servers_links");

    // A name that is no regular expression is the service's to match (osc-lib sends names as typed).
    expect((await h.request("GET", `${api}/servers?name=${encodeURIComponent("vm(1")}`)).json()).toEqual({ servers: [] });
    for (const query of ["limit=-1", "limit=x", "marker=nosuch"]) {
      expectFault(await h.request("GET", `${api}/servers?${query}`), 400, "badRequest");
    }
  });
});

describe("server update, delete, ips and metadata", () => {
  it("renames with PUT and deletes with 204", async () => {
    const h = await computeHarness();
    const id = await createServer(h);
    const renamed = await h.request("PUT", `${api}/servers/${id}`, { json: { server: { name: "vm-renamed" } } });
    expect(renamed.statusCode).toBe(200);
    expect((renamed.json() as { server: { name: string } }).server.name).toBe("vm-renamed");
    expect((await h.request("PUT", `${api}/servers/${id}`, { json: { server: {} } })).statusCode).toBe(200);
    expectFault(await h.request("PUT", `${api}/servers/${id}`, { json: { server: { name: "" } } }), 400, "badRequest");
    expectFault(await h.request("PUT", `${api}/servers/${id}`, { json: { server: { image: "x" } } }), 400, "badRequest");
    expect((await h.request("GET", `${api}/servers/${id}/ips`)).json()).toEqual({ addresses: {} });
    const deleted = await h.request("DELETE", `${api}/servers/${id}`);
    expect(deleted.statusCode).toBe(204);
    expect(deleted.body).toBe("");
    expectFault(await h.request("GET", `${api}/servers/${id}`), 404, "itemNotFound");
    expectFault(await h.request("DELETE", `${api}/servers/${id}`), 404, "itemNotFound");
  });

  it("serves metadata: merge, replace, one key, delete", async () => {
    const h = await computeHarness();
    const id = await createServer(h, "vm1", { metadata: { a: "1" } });
    const path = `${api}/servers/${id}/metadata`;
    expect((await h.request("GET", path)).json()).toEqual({ metadata: { a: "1" } });
    expect((await h.request("POST", path, { json: { metadata: { b: "2" } } })).json()).toEqual({ metadata: { a: "1", b: "2" } });
    expect((await h.request("PUT", path, { json: { metadata: { c: "3" } } })).json()).toEqual({ metadata: { c: "3" } });
    expect((await h.request("PUT", `${path}/d`, { json: { meta: { d: "4" } } })).json()).toEqual({ meta: { d: "4" } });
    expect((await h.request("GET", `${path}/d`)).json()).toEqual({ meta: { d: "4" } });
    expectFault(await h.request("GET", `${path}/nope`), 404, "itemNotFound");
    expectFault(await h.request("GET", `${path}/constructor`), 404, "itemNotFound");
    expectFault(await h.request("PUT", `${path}/d`, { json: { meta: { e: "5" } } }), 400, "badRequest");
    expectFault(await h.request("PUT", `${path}/d`, { json: { meta: { d: "4", e: "5" } } }), 400, "badRequest");
    expectFault(await h.request("POST", path, { json: { meta: { d: "4" } } }), 400, "badRequest");
    const tooMany = Object.fromEntries(Array.from({ length: 129 }, (_, i) => [`k${i}`, "v"]));
    expectFault(await h.request("POST", path, { json: { metadata: tooMany } }), 403, "forbidden");
    expect((await h.request("DELETE", `${path}/d`)).statusCode).toBe(204);
    expectFault(await h.request("DELETE", `${path}/d`), 404, "itemNotFound");
  });
});
