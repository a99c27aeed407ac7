/**
 * /flavors, /os-keypairs and /limits as OSC's SDK commands read them
 * (openstack-clients.md 3.2, 3.4).
 */
import { describe, expect, it } from "vitest";
import { computeHarness, expectFault, testUsers } from "./testing/harness.ts";

const api = "/compute/v2.1";
const sdk210 = { "openstack-api-version": "compute 2.10", "x-openstack-nova-api-version": "2.10" };
const publicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVgY2tleWZvcnRlc3RzZm9ydGVzdHNmb3J0ZXN0cw user@host\n";

describe("flavors", () => {
  it("lists public flavors in full for `flavor list` (is_public=True) with extra_specs and Nova's fields", async () => {
    const h = await computeHarness();
    const answer = await h.request("GET", `${api}/flavors/detail?is_public=True`, { headers: sdk210 });
    expect(answer.statusCode).toBe(200);
    const { flavors } = answer.json() as { flavors: Array<Record<string, unknown>> };
    expect(flavors.map((flavor) => flavor["id"])).toEqual(["1", "2"]);
    expect(flavors[1]).toEqual({
      id: "2", name: "m1.small", ram: 2048, vcpus: 2, disk: 20, swap: "", "OS-FLV-EXT-DATA:ephemeral": 0,
      "os-flavor-access:is_public": true, "OS-FLV-DISABLED:disabled": false, rxtx_factor: 1.0, description: "two cpus",
      extra_specs: { "hw:cpu_policy": "shared" },
      links: [{ rel: "self", href: "http://cloud.test:8080/compute/v2.1/flavors/2" }, { rel: "bookmark", href: "http://cloud.test:8080/compute/flavors/2" }],
    });
    // The SDK then asks os-extra_specs for the flavor whose extra_specs are empty.
    expect((await h.request("GET", `${api}/flavors/1/os-extra_specs`)).json()).toEqual({ extra_specs: {} });
    expect((await h.request("GET", `${api}/flavors/2/os-extra_specs/hw:cpu_policy`)).json()).toEqual({ "hw:cpu_policy": "shared" });
    expectFault(await h.request("GET", `${api}/flavors/2/os-extra_specs/nope`), 404, "itemNotFound");
  });

  it("takes is_public as Python literals: None is everything the caller may see, False the private ones", async () => {
    const h = await computeHarness();
    const ids = async (query: string, token: "alice" | "admin" = "alice") =>
      ((await h.request("GET", `${api}/flavors/detail?${query}`, { token })).json() as { flavors: Array<{ id: string }> }).flavors.map((flavor) => flavor.id);
    expect(await ids("is_public=None")).toEqual(["1", "2"]);
    expect(await ids("is_public=None", "admin")).toEqual(["1", "2", "p1"]);
    expect(await ids("is_public=False", "admin")).toEqual(["p1"]);
    expect(await ids("is_public=true", "admin")).toEqual(["1", "2"]);
    expect(await ids("minRam=1024&minDisk=10")).toEqual(["2"]);
    expect(await ids("limit=1")).toEqual(["1"]);
    expect(await ids("marker=1")).toEqual(["2"]);
    for (const query of ["is_public=maybe", "minRam=-1", "limit=x", "marker=zz"]) {
      expectFault(await h.request("GET", `${api}/flavors/detail?${query}`), 400, "badRequest");
    }
  });

  it("does novaclient's flavor lookup: GET by name 404s, /flavors lists id and name, GET by id", async () => {
    const h = await computeHarness();
    expectFault(await h.request("GET", `${api}/flavors/m1.tiny`), 404, "itemNotFound");
    const { flavors } = (await h.request("GET", `${api}/flavors`)).json() as { flavors: Array<Record<string, unknown>> };
    expect(flavors.map((flavor) => Object.keys(flavor).sort())).toEqual([["id", "links", "name"], ["id", "links", "name"]]);
    expect((await h.request("GET", `${api}/flavors/1`)).json()).toMatchObject({ flavor: { id: "1", name: "m1.tiny", ram: 512 } });
  });

  it("lets admins create and delete flavors, and nobody else", async () => {
    const h = await computeHarness();
    const body = { flavor: { name: "m1.big", ram: 8192, vcpus: 4, disk: 80, id: "big", "os-flavor-access:is_public": false } };
    expectFault(await h.request("POST", `${api}/flavors`, { json: body }), 403, "forbidden");
    const created = await h.request("POST", `${api}/flavors`, { json: body, token: "admin" });
    expect(created.statusCode).toBe(200);
    expect(created.json()).toMatchObject({ flavor: { id: "big", name: "m1.big", "os-flavor-access:is_public": false } });
    const generated = await h.request("POST", `${api}/flavors`, { json: { flavor: { name: "anon", ram: 1, vcpus: 1, disk: 0 } }, token: "admin" });
    expect((generated.json() as { flavor: { id: string } }).flavor.id).toMatch(/^[0-9a-f-]{36}$/);
    for (const flavor of [{ name: "x", ram: 0, vcpus: 1, disk: 1 }, { name: "x", ram: 1, vcpus: 1, disk: 1, swap: 512 }, { name: "x", ram: 1, vcpus: 1 }]) {
      expectFault(await h.request("POST", `${api}/flavors`, { json: { flavor }, token: "admin" }), 400, "badRequest");
    }
    expectFault(await h.request("DELETE", `${api}/flavors/big`), 403, "forbidden");
    expect((await h.request("DELETE", `${api}/flavors/big`, { token: "admin" })).statusCode).toBe(202);
  });
});

describe("keypairs", () => {
  it("imports a key: 200 at 2.1, 201 with type at 2.2+, the file's trailing newline passed on for the service to trim", async () => {
    const h = await computeHarness();
    const at21 = await h.request("POST", `${api}/os-keypairs`, { json: { keypair: { name: "k1", public_key: publicKey } } });
    expect(at21.statusCode).toBe(200);
    expect(at21.json()).toEqual({ keypair: { name: "k1", public_key: publicKey.trim(), fingerprint: expect.stringMatching(/^([0-9a-f]{2}:){15}[0-9a-f]{2}$/), user_id: testUsers.alice } });
    expect(h.fake.calls.at(-1)!.args[2]).toBe(publicKey);
    const at210 = await h.request("POST", `${api}/os-keypairs`, { json: { keypair: { name: "k2", public_key: publicKey, type: "ssh" } }, headers: sdk210 });
    expect(at210.statusCode).toBe(201);
    expect((at210.json() as { keypair: Record<string, unknown> }).keypair["type"]).toBe("ssh");
  });

  it("generates a key when none is given and answers its private_key (OSC writes it out)", async () => {
    const h = await computeHarness();
    const answer = await h.request("POST", `${api}/os-keypairs`, { json: { keypair: { name: "gen" } }, headers: sdk210 });
    expect(answer.statusCode).toBe(201);
    expect((answer.json() as { keypair: { private_key: string } }).keypair.private_key).toContain("PRIVATE KEY");
  });

  it("lists in Nova's nested form, shows one, deletes (202 at 2.1, 204 from 2.2)", async () => {
    const h = await computeHarness();
    await h.request("POST", `${api}/os-keypairs`, { json: { keypair: { name: "k1", public_key: publicKey } } });
    await h.request("POST", `${api}/os-keypairs`, { json: { keypair: { name: "k2", public_key: publicKey } } });
    const list = (await h.request("GET", `${api}/os-keypairs`, { headers: sdk210 })).json() as { keypairs: Array<{ keypair: Record<string, unknown> }> };
    expect(list.keypairs.map(({ keypair }) => Object.keys(keypair).sort())).toEqual([
      ["fingerprint", "name", "public_key", "type"],
      ["fingerprint", "name", "public_key", "type"],
    ]);
    const shown = (await h.request("GET", `${api}/os-keypairs/k1`)).json() as { keypair: Record<string, unknown> };
    expect(shown.keypair).toMatchObject({ name: "k1", user_id: testUsers.alice, created_at: "2026-11-24T04:50:58.123000", deleted: false });
    expect(shown.keypair).not.toHaveProperty("type");
    expect((await h.request("DELETE", `${api}/os-keypairs/k1`)).statusCode).toBe(202);
    expect((await h.request("DELETE", `${api}/os-keypairs/k2`, { headers: sdk210 })).statusCode).toBe(204);
    expectFault(await h.request("GET", `${api}/os-keypairs/k1`), 404, "itemNotFound");
    expect((await h.request("GET", `${api}/os-keypairs`, { token: "bob" })).json()).toEqual({ keypairs: [] });
  });

  it("checks names, types and sizes, and lets only admins name another user_id (2.10)", async () => {
    const h = await computeHarness();
    for (const keypair of [{ name: " lead" }, { name: "" }, { name: "a/b" }, { name: 5 }, { name: "k", public_key: "x".repeat(17 * 1024) }, { name: "k", public_key: 3 }, { name: "k", extra: 1 }]) {
      expectFault(await h.request("POST", `${api}/os-keypairs`, { json: { keypair } }), 400, "badRequest");
    }
    expectFault(await h.request("POST", `${api}/os-keypairs`, { json: { keypair: { name: "k", type: "x509" } }, headers: sdk210 }), 400, "badRequest");
    // type and user_id do not exist at 2.1.
    expectFault(await h.request("POST", `${api}/os-keypairs`, { json: { keypair: { name: "k", type: "ssh" } } }), 400, "badRequest");
    expectFault(await h.request("POST", `${api}/os-keypairs`, { json: { keypair: { name: "k", user_id: testUsers.bob } }, headers: sdk210 }), 403, "forbidden");
    expectFault(await h.request("GET", `${api}/os-keypairs?user_id=${testUsers.bob}`, { headers: sdk210 }), 403, "forbidden");
    const forBob = await h.request("POST", `${api}/os-keypairs`, { json: { keypair: { name: "k", user_id: testUsers.bob, public_key: publicKey } }, headers: sdk210, token: "admin" });
    expect(forBob.statusCode).toBe(201);
    expect((await h.request("GET", `${api}/os-keypairs`, { token: "bob" })).json()).toMatchObject({ keypairs: [{ keypair: { name: "k" } }] });
  });
});

describe("limits", () => {
  it("answers Nova's limits document from the service's figures", async () => {
    const h = await computeHarness();
    const answer = await h.request("GET", `${api}/limits`);
    expect(answer.statusCode).toBe(200);
    expect(answer.json()).toEqual({ limits: { rate: [], absolute: expect.objectContaining({ maxTotalInstances: 10, totalInstancesUsed: 0 }) } });
  });
});
