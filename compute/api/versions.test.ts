/**
 * Discovery, microversion negotiation, tokens and the shape of every error
 * (openstack-clients.md 3.1, 3.3, pitfalls 3, 5, 7).
 */
import { describe, expect, it } from "vitest";
import { computeHarness, expectFault } from "./testing/harness.ts";

describe("compute API discovery", () => {
  it("answers the catalog URL with and without the slash, and the root, without a token", async () => {
    const h = await computeHarness();
    for (const path of ["/compute/v2.1", "/compute/v2.1/"]) {
      const answer = await h.request("GET", path, { token: null });
      expect(answer.statusCode).toBe(200);
      const { version } = answer.json() as { version: Record<string, unknown> };
      expect(version).toMatchObject({ id: "v2.1", status: "CURRENT", version: "2.10", min_version: "2.1" });
      expect(version["links"]).toContainEqual({ rel: "self", href: "http://cloud.test:8080/compute/v2.1/" });
    }
    const root = await h.request("GET", "/compute/", { token: null });
    expect(root.statusCode).toBe(200);
    expect(root.json()).toMatchObject({ versions: [{ id: "v2.1", version: "2.10", min_version: "2.1" }] });
  });

  it("puts the configured public URL in every href", async () => {
    const h = await computeHarness({ publicUrl: "https://cloud.example.org/" });
    const { version } = (await h.request("GET", "/compute/v2.1", { token: null })).json() as { version: { links: Array<{ href: string }> } };
    expect(version.links[0]!.href).toBe("https://cloud.example.org/compute/v2.1/");
    const created = await h.request("POST", "/compute/v2.1/servers", { json: { server: { name: "vm1", imageRef: "img", flavorRef: "1" } } });
    expect(created.headers["location"]).toMatch(/^https:\/\/cloud\.example\.org\/compute\/v2\.1\/servers\/[0-9a-f-]{36}$/);
  });
});

describe("microversions", () => {
  const cases: Array<{ headers: Record<string, string>; served: string }> = [
    { headers: {}, served: "2.1" },
    { headers: { "x-openstack-nova-api-version": "2.1" }, served: "2.1" },
    { headers: { "x-openstack-nova-api-version": "2.9" }, served: "2.9" },
    { headers: { "openstack-api-version": "compute 2.8", "x-openstack-nova-api-version": "2.8" }, served: "2.8" },
    { headers: { "openstack-api-version": "compute 2.10", "x-openstack-nova-api-version": "2.2" }, served: "2.10" },
    { headers: { "openstack-api-version": "image 2.5, compute 2.6" }, served: "2.6" },
    { headers: { "openstack-api-version": "image 2.5", "x-openstack-nova-api-version": "2.3" }, served: "2.3" },
    { headers: { "x-openstack-nova-api-version": "latest" }, served: "2.10" },
  ];
  for (const { headers, served } of cases) {
    it(`serves ${served} for ${JSON.stringify(headers)} and echoes it with Vary`, async () => {
      const h = await computeHarness();
      const answer = await h.request("GET", "/compute/v2.1/servers", { headers });
      expect(answer.statusCode).toBe(200);
      expect(answer.headers["x-openstack-nova-api-version"]).toBe(served);
      expect(answer.headers["openstack-api-version"]).toBe(`compute ${served}`);
      expect(answer.headers["vary"]).toBe("OpenStack-API-Version, X-OpenStack-Nova-API-Version");
    });
  }

  it("refuses versions above the maximum (novaclient's 2.latest is 2.92) or below 2.1 with 406", async () => {
    const h = await computeHarness();
    for (const version of ["2.11", "2.92", "3.0", "2.0", "1.1"]) {
      const message = expectFault(await h.request("GET", "/compute/v2.1/servers", { headers: { "x-openstack-nova-api-version": version } }), 406, "notAcceptable");
      expect(message).toContain("maximum is 2.10");
    }
    expectFault(await h.request("GET", "/compute/v2.1/flavors", { headers: { "openstack-api-version": "compute 2.79" } }), 406, "notAcceptable");
  });

  it("refuses malformed versions with 400", async () => {
    const h = await computeHarness();
    for (const version of ["2.01", "two", "2", "2.1.1", "02.1"]) {
      expectFault(await h.request("GET", "/compute/v2.1/servers", { headers: { "x-openstack-nova-api-version": version } }), 400, "badRequest");
    }
  });
});

describe("tokens and errors", () => {
  it("answers a missing or unknown token with Nova's 401 body and Keystone's challenge", async () => {
    const h = await computeHarness();
    for (const token of [null, "bogus"] as const) {
      const answer = await h.request("GET", "/compute/v2.1/servers/detail", { token });
      expectFault(answer, 401, "unauthorized");
      expect(answer.headers["www-authenticate"]).toBe('Keystone uri="http://cloud.test:8080/identity"');
    }
    expect(h.fake.calls).toEqual([]);
  });

  it("answers unknown routes and methods with 404 itemNotFound", async () => {
    const h = await computeHarness();
    for (const [method, path] of [["GET", "/compute/v2.1/os-hypervisors"], ["GET", "/compute/v2.1/os-networks"], ["PATCH", "/compute/v2.1/servers/x"], ["GET", "/compute/v3"]]) {
      expectFault(await h.request(method!, path!), 404, "itemNotFound");
    }
  });

  it("answers bad JSON, a body over the limit and a body that is not an object with 400", async () => {
    const h = await computeHarness();
    expect(expectFault(await h.request("POST", "/compute/v2.1/servers", { payload: '{"server":' }), 400, "badRequest")).toBe("Malformed request body");
    const huge = JSON.stringify({ server: { name: "x".repeat(200 * 1024) } });
    expect(expectFault(await h.request("POST", "/compute/v2.1/servers", { payload: huge }), 400, "badRequest")).toContain("114688");
    for (const payload of ["[]", "null", "3", '"server"', ""]) {
      expectFault(await h.request("POST", "/compute/v2.1/servers", { payload }), 400, "badRequest");
    }
    // curl -d sends a form type: still JSON to us.
    const form = await h.request("POST", "/compute/v2.1/servers", { payload: JSON.stringify({ server: { name: "f", imageRef: "i", flavorRef: "1" } }), headers: { "content-type": "application/x-www-form-urlencoded" } });
    expect(form.statusCode).toBe(202);
  });

  it("maps service errors: 409 conflictingRequest, EQUOTA 403 forbidden, anything else a 500 that hides its cause", async () => {
    const h = await computeHarness();
    const { ComputeError } = await import("../errors.ts");
    h.fake.failNext("listServers", new ComputeError("ECONFLICT", "Cannot 'list' now"));
    expect(expectFault(await h.request("GET", "/compute/v2.1/servers"), 409, "conflictingRequest")).toBe("Cannot 'list' now");
    h.fake.failNext("listServers", new ComputeError("ENOT_IMPLEMENTED", "not here"));
    expectFault(await h.request("GET", "/compute/v2.1/servers"), 501, "notImplemented");
    h.fake.failNext("listServers", new Error("database password is hunter2"));
    const message = expectFault(await h.request("GET", "/compute/v2.1/servers"), 500, "computeFault");
    expect(message).not.toContain("hunter2");
    expect(message).toContain("req-");
  });
});
