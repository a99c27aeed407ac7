import { describe, expect, it } from "vitest";
import { ensureResources, issueToken, migrateToLatest, setLimit, standardResources, type MetadataDatabase } from "../db/index.ts";
import { describeEachEngine } from "../db/testing/databases.ts";
import { identityHarness, type IdentityHarness } from "./testing/harness.ts";

const base = "/identity/account/v1.0";

interface Setup {
  h: IdentityHarness;
  serviceToken: string;
  aliceToken: string;
  alice: string;
}

async function setUp(db: MetadataDatabase): Promise<Setup> {
  const h = await identityHarness(db, {}, { serviceUsers: ["compute"] });
  await ensureResources(db, standardResources);
  const service = await h.addUser("compute", "pw");
  const alice = await h.addUser("alice", "pw");
  await setLimit(db, alice.uuid, "compute.vm", 2);
  const token = async (uuid: string) => (await issueToken(db, uuid, { nowMs: h.clock.nowMs })).token;
  return { h, serviceToken: await token(service.uuid), aliceToken: await token(alice.uuid), alice: alice.uuid };
}

function expectFault(response: { statusCode: number; json(): unknown }, status: number, name: string): Record<string, unknown> {
  expect(response.statusCode).toBe(status);
  const body = response.json() as Record<string, { code: number; message: string }>;
  expect(Object.keys(body)).toEqual([name]);
  expect(body[name]!.code).toBe(status);
  expect(typeof body[name]!.message).toBe("string");
  return body[name] as unknown as Record<string, unknown>;
}

async function issue(s: Setup, payload: unknown, token = s.serviceToken) {
  return s.h.app.inject({ method: "POST", url: `${base}/commissions`, headers: { "x-auth-token": token }, payload: payload as object });
}

const vm = (s: Setup, quantity: number) => ({ holder: `user:${s.alice}`, source: `project:${s.alice}`, resource: "compute.vm", quantity });

async function quotas(s: Setup, token = s.aliceToken): Promise<Record<string, number>> {
  const response = await s.h.app.inject({ method: "GET", url: `${base}/quotas`, headers: { "x-auth-token": token } });
  expect(response.statusCode).toBe(200);
  return (response.json() as Record<string, Record<string, Record<string, number>>>)[s.alice]!["compute.vm"]!;
}

describeEachEngine("identity: Astakos quotas and commissions", (databases) => {
  it("GET /quotas shows the caller's limit, usage and pending per resource", async () => {
    const s = await setUp(await databases.open());
    const response = await s.h.app.inject({ method: "GET", url: `${base}/quotas`, headers: { "x-auth-token": s.aliceToken } });
    const body = response.json() as Record<string, Record<string, unknown>>;
    expect(Object.keys(body)).toEqual([s.alice]);
    expect(Object.keys(body[s.alice]!).sort()).toEqual(standardResources.map((r) => r.name).sort());
    expect(body[s.alice]!["compute.vm"]).toEqual({ limit: 2, usage: 0, pending: 0, project_limit: 2, project_usage: 0, project_pending: 0 });
  });

  it("issue reserves (201 serial), over the limit is 413 overLimit with Astakos's data, accept and reject settle", async () => {
    const s = await setUp(await databases.open());
    const first = await issue(s, { provisions: [vm(s, 1)], name: "create vm1" });
    expect(first.statusCode).toBe(201);
    const serial = (first.json() as { serial: number }).serial;
    expect(await quotas(s)).toMatchObject({ limit: 2, usage: 1, pending: 1 });

    const second = (await issue(s, { provisions: [vm(s, 1)] })).json() as { serial: number };
    const over = expectFault(await issue(s, { provisions: [vm(s, 1)] }), 413, "overLimit");
    expect(over["data"]).toEqual({ provision: vm(s, 1), name: "NoCapacityError", limit: 2, usage: 2 });

    const pending = await s.h.app.inject({ method: "GET", url: `${base}/commissions`, headers: { "x-auth-token": s.serviceToken } });
    expect(pending.json()).toEqual([serial, second.serial]);

    const action = (n: number, body: object) =>
      s.h.app.inject({ method: "POST", url: `${base}/commissions/${n}/action`, headers: { "x-auth-token": s.serviceToken }, payload: body });
    for (let i = 0; i < 2; i++) {
      const accepted = await action(serial, { accept: "" });
      expect(accepted.statusCode).toBe(200);
      expect(accepted.json()).toMatchObject({ serial, state: "accepted", provisions: [vm(s, 1)] });
      const rejected = await action(second.serial, { reject: "" });
      expect(rejected.json()).toMatchObject({ state: "rejected" });
    }
    expect(await quotas(s)).toMatchObject({ limit: 2, usage: 1, pending: 0 });
    expectFault(await action(serial, { reject: "" }), 409, "conflict");
    expectFault(await action(999, { accept: "" }), 404, "itemNotFound");
    expectFault(await action(serial, { accept: "", reject: "" }), 400, "badRequest");

    const described = await s.h.app.inject({ method: "GET", url: `${base}/commissions/${serial}`, headers: { "x-auth-token": s.serviceToken } });
    expect(described.json()).toMatchObject({ serial, name: "create vm1", state: "accepted", client_key: expect.any(String) });
  });

  it("a retry with the same client_key returns the same serial and reserves once; another key's provisions conflict", async () => {
    const s = await setUp(await databases.open());
    const payload = { provisions: [vm(s, 1)], client_key: "compute:vm:1:create" };
    const serials = [];
    for (let i = 0; i < 3; i++) {
      const response = await issue(s, payload);
      expect(response.statusCode).toBe(201);
      serials.push((response.json() as { serial: number }).serial);
    }
    expect(new Set(serials).size).toBe(1);
    expect(await quotas(s)).toMatchObject({ usage: 1, pending: 1 });
    expectFault(await issue(s, { ...payload, provisions: [vm(s, 2)] }), 409, "conflict");
  });

  it("bulk action accepts and rejects, reporting failures per serial", async () => {
    const s = await setUp(await databases.open());
    const a = ((await issue(s, { provisions: [vm(s, 1)] })).json() as { serial: number }).serial;
    const b = ((await issue(s, { provisions: [vm(s, 1)] })).json() as { serial: number }).serial;
    const response = await s.h.app.inject({
      method: "POST",
      url: `${base}/commissions/action`,
      headers: { "x-auth-token": s.serviceToken },
      payload: { accept: [a, 4242], reject: [b] },
    });
    expect(response.statusCode).toBe(200);
    const body = response.json() as { accepted: number[]; rejected: number[]; failed: Array<[number, Record<string, { code: number }>]> };
    expect(body.accepted).toEqual([a]);
    expect(body.rejected).toEqual([b]);
    expect(body.failed).toEqual([[4242, { itemNotFound: expect.objectContaining({ code: 404 }) }]]);
    expect(await quotas(s)).toMatchObject({ usage: 1, pending: 0 });
  });

  it("a pending commission survives a restart (the database reopened) and is resolved later", async () => {
    const url = await databases.freshUrl();
    const first = await databases.connect(url);
    await migrateToLatest(first);
    const s = await setUp(first);
    const serial = ((await issue(s, { provisions: [vm(s, 2)], client_key: "k1" })).json() as { serial: number }).serial;
    await s.h.app.close();
    await first.close();

    const again = await databases.connect(url);
    const h = await identityHarness(again, {}, { serviceUsers: ["compute"] });
    const restarted: Setup = { ...s, h };
    expect(await quotas(restarted)).toMatchObject({ usage: 2, pending: 2 });
    const retried = await issue(restarted, { provisions: [vm(s, 2)], client_key: "k1" });
    expect(retried.json()).toEqual({ serial });
    const pending = await h.app.inject({ method: "GET", url: `${base}/commissions`, headers: { "x-auth-token": s.serviceToken } });
    expect(pending.json()).toEqual([serial]);
    const accepted = await h.app.inject({ method: "POST", url: `${base}/commissions/${serial}/action`, headers: { "x-auth-token": s.serviceToken }, payload: { accept: "" } });
    expect(accepted.statusCode).toBe(200);
    expect(await quotas(restarted)).toMatchObject({ usage: 2, pending: 0 });
  });

  describe("errors in Astakos's format", () => {
    it("no token 401, a user's token on service routes 403", async () => {
      const s = await setUp(await databases.open());
      const none = await s.h.app.inject({ method: "GET", url: `${base}/quotas` });
      expectFault(none, 401, "unauthorized");
      expectFault(await issue(s, { provisions: [vm(s, 1)] }, s.aliceToken), 403, "forbidden");
      for (const url of [`${base}/commissions`, `${base}/service_quotas?user=${s.alice}`]) {
        expectFault(await s.h.app.inject({ method: "GET", url, headers: { "x-auth-token": s.aliceToken } }), 403, "forbidden");
      }
      const serviceView = await s.h.app.inject({ method: "GET", url: `${base}/service_quotas?user=${s.alice}`, headers: { "x-auth-token": s.serviceToken } });
      expect((serviceView.json() as Record<string, Record<string, unknown>>)[s.alice]!["compute.vm"]).toMatchObject({ limit: 2 });
    });

    it("bad JSON 400, unknown resource or user 404, project holdings and bad quantities 400", async () => {
      const s = await setUp(await databases.open());
      const badJson = await s.h.app.inject({
        method: "POST",
        url: `${base}/commissions`,
        headers: { "x-auth-token": s.serviceToken, "content-type": "application/json" },
        payload: '{"provisions": [',
      });
      expectFault(badJson, 400, "badRequest");
      expectFault(await issue(s, { provisions: [{ ...vm(s, 1), resource: "compute.gpu" }] }), 404, "itemNotFound");
      expectFault(await issue(s, { provisions: [{ ...vm(s, 1), holder: "user:00000000-0000-4000-8000-000000000000", source: null }] }), 404, "itemNotFound");
      expectFault(await issue(s, { provisions: [{ ...vm(s, 1), holder: `project:${s.alice}`, source: null }] }), 400, "badRequest");
      expectFault(await issue(s, { provisions: [{ ...vm(s, 1), source: "project:00000000-0000-4000-8000-000000000000" }] }), 404, "itemNotFound");
      expectFault(await issue(s, { provisions: [vm(s, 1.5)] }), 400, "badRequest");
      expectFault(await issue(s, { provisions: [] }), 400, "badRequest");
      expectFault(await issue(s, { provisions: [vm(s, -1)] }), 413, "overLimit");
      expectFault(await s.h.app.inject({ method: "GET", url: `${base}/nothing`, headers: { "x-auth-token": s.serviceToken } }), 404, "itemNotFound");
      expect(await quotas(s)).toMatchObject({ usage: 0, pending: 0 });
    });
  });
});
