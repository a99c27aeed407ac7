import { describe, expect, it } from "vitest";
import { describeEachEngine } from "../db/testing/databases.ts";
import { unauthorizedMessage } from "./errors.ts";
import { identityHarness, passwordAuth, type IdentityHarness } from "./testing/harness.ts";

const keystoneTime = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

function expectKeystoneError(response: { statusCode: number; json(): unknown; headers: Record<string, unknown> }, status: number): void {
  expect(response.statusCode).toBe(status);
  expect(response.headers["content-type"]).toMatch(/^application\/json/);
  const body = response.json() as { error: { code: number; title: string; message: string } };
  expect(body.error.code).toBe(status);
  expect(typeof body.error.title).toBe("string");
  expect(typeof body.error.message).toBe("string");
}

async function login(h: IdentityHarness, name: string, password: string): Promise<string> {
  const response = await h.app.inject({ method: "POST", url: "/identity/v3/auth/tokens", payload: passwordAuth({ name }, password) });
  expect(response.statusCode).toBe(201);
  return response.headers["x-subject-token"] as string;
}

describeEachEngine("identity: Keystone v3", (databases) => {
  describe("version documents", () => {
    it("GET /identity lists v3 with an absolute self href (300)", async () => {
      const h = await identityHarness(await databases.open());
      const response = await h.app.inject({ method: "GET", url: "/identity", headers: { host: "cloud.example:8080" } });
      expect(response.statusCode).toBe(300);
      const { versions } = response.json() as { versions: { values: Array<{ id: string; status: string; links: Array<{ rel: string; href: string }> }> } };
      expect(versions.values[0]).toMatchObject({ id: "v3.14", status: "stable", links: [{ rel: "self", href: "http://cloud.example:8080/identity/v3/" }] });
    });

    it("GET /identity/v3 (with or without a slash) is the v3 document", async () => {
      const h = await identityHarness(await databases.open());
      for (const url of ["/identity/v3", "/identity/v3/"]) {
        const response = await h.app.inject({ method: "GET", url, headers: { host: "h" } });
        expect(response.statusCode).toBe(200);
        expect(response.json()).toMatchObject({ version: { id: "v3.14", status: "stable", links: [{ rel: "self", href: "http://h/identity/v3/" }] } });
      }
    });
  });

  describe("POST /v3/auth/tokens", () => {
    it("password login answers 201, X-Subject-Token and a scoped token with the catalog", async () => {
      const h = await identityHarness(await databases.open());
      const alice = await h.addUser("alice", "s3cret");
      const response = await h.app.inject({
        method: "POST",
        url: "/identity/v3/auth/tokens",
        headers: { host: "h:8080" },
        payload: passwordAuth({ name: "alice" }, "s3cret", { project: { name: "alice", domain: { name: "Default" } } }),
      });
      expect(response.statusCode).toBe(201);
      expect(response.headers["x-subject-token"]).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const { token } = response.json() as { token: Record<string, unknown> & { catalog: Array<{ type: string; endpoints: Array<{ interface: string; url: string; region: string }> }> } };
      expect(token["expires_at"]).toMatch(keystoneTime);
      expect(token["issued_at"]).toMatch(keystoneTime);
      expect(Date.parse(token["expires_at"] as string) - h.clock.nowMs).toBe(3_600_000);
      expect(token["methods"]).toEqual(["password"]);
      expect(token["user"]).toEqual({ id: alice.uuid, name: "alice", domain: { id: "default", name: "Default" }, password_expires_at: null });
      expect(token["project"]).toEqual({ id: alice.uuid, name: "alice", domain: { id: "default", name: "Default" } });
      const byType = Object.fromEntries(token.catalog.map((entry) => [entry.type, entry.endpoints]));
      expect(Object.keys(byType).sort()).toEqual(["block-storage", "compute", "identity", "image", "object-store", "volumev3"]);
      for (const endpoints of Object.values(byType)) {
        expect(endpoints.map((endpoint) => endpoint.interface)).toEqual(["public", "internal", "admin"]);
        expect(endpoints.every((endpoint) => endpoint.region === "RegionOne")).toBe(true);
      }
      expect(byType["object-store"]![0]!.url).toBe(`http://h:8080/object-store/v1/AUTH_${alice.uuid}`);
      expect(byType["compute"]![0]!.url).toBe("http://h:8080/compute/v2.1");
      expect(byType["block-storage"]![0]!.url).toBe(`http://h:8080/volume/v3/${alice.uuid}`);
      expect(byType["volumev3"]![0]!.url).toBe(`http://h:8080/volume/v3/${alice.uuid}`);
      expect(byType["image"]![0]!.url).toBe("http://h:8080/image/v2");
      expect(byType["identity"]![0]!.url).toBe("http://h:8080/identity/v3");
    });

    it("logs in by user id and scopes by project id", async () => {
      const h = await identityHarness(await databases.open());
      const alice = await h.addUser("alice", "pw");
      const response = await h.app.inject({
        method: "POST",
        url: "/identity/v3/auth/tokens",
        payload: passwordAuth({ id: alice.uuid }, "pw", { project: { id: alice.uuid } }),
      });
      expect(response.statusCode).toBe(201);
    });

    it("wrong password, unknown user and disabled user are the same 401", async () => {
      const h = await identityHarness(await databases.open());
      await h.addUser("alice", "pw");
      await h.addUser("carol", "pw", "disabled");
      const bodies = [];
      for (const [name, password] of [["alice", "wrong"], ["nobody", "pw"], ["carol", "pw"]] as const) {
        const response = await h.app.inject({ method: "POST", url: "/identity/v3/auth/tokens", payload: passwordAuth({ name }, password) });
        expectKeystoneError(response, 401);
        bodies.push(response.json());
      }
      expect(bodies[0]).toEqual({ error: { code: 401, title: "Unauthorized", message: unauthorizedMessage } });
      expect(bodies[1]).toEqual(bodies[0]);
      expect(bodies[2]).toEqual(bodies[0]);
    });

    it("refuses another domain and another project with 401", async () => {
      const h = await identityHarness(await databases.open());
      await h.addUser("alice", "pw");
      await h.addUser("bob", "pw");
      const otherDomain = { auth: { identity: { methods: ["password"], password: { user: { name: "alice", password: "pw", domain: { name: "Other" } } } } } };
      expectKeystoneError(await h.app.inject({ method: "POST", url: "/identity/v3/auth/tokens", payload: otherDomain }), 401);
      const otherProject = passwordAuth({ name: "alice" }, "pw", { project: { name: "bob", domain: { name: "Default" } } });
      expectKeystoneError(await h.app.inject({ method: "POST", url: "/identity/v3/auth/tokens", payload: otherProject }), 401);
    });

    it("token method issues a new token that expires with the old one", async () => {
      const h = await identityHarness(await databases.open());
      await h.addUser("alice", "pw");
      const first = await login(h, "alice", "pw");
      h.clock.nowMs += 60_000;
      const response = await h.app.inject({ method: "POST", url: "/identity/v3/auth/tokens", payload: { auth: { identity: { methods: ["token"], token: { id: first } } } } });
      expect(response.statusCode).toBe(201);
      const second = response.headers["x-subject-token"];
      expect(second).not.toBe(first);
      const { token } = response.json() as { token: { expires_at: string; methods: string[] } };
      expect(token.methods).toEqual(["token"]);
      expect(Date.parse(token.expires_at)).toBe(h.clock.nowMs - 60_000 + 3_600_000);
      const garbage = { auth: { identity: { methods: ["token"], token: { id: "garbage" } } } };
      expectKeystoneError(await h.app.inject({ method: "POST", url: "/identity/v3/auth/tokens", payload: garbage }), 401);
    });

    it("bad input: malformed JSON 400, schema violation 400, unknown method 401, oversize 413, not JSON 415", async () => {
      const h = await identityHarness(await databases.open());
      const post = (payload: string, contentType = "application/json") =>
        h.app.inject({ method: "POST", url: "/identity/v3/auth/tokens", headers: { "content-type": contentType }, payload });
      expectKeystoneError(await post('{"auth": {'), 400);
      expectKeystoneError(await post(JSON.stringify({ nothing: 1 })), 400);
      expectKeystoneError(await post(JSON.stringify({ auth: { identity: { methods: ["password"] } } })), 400);
      expectKeystoneError(await post(JSON.stringify({ auth: { identity: { methods: ["totp"] } } })), 401);
      expectKeystoneError(await post(JSON.stringify({ auth: { identity: { methods: ["password"], pad: "x".repeat(20_000) } } })), 413);
      expectKeystoneError(await post("auth=1", "application/x-www-form-urlencoded"), 415);
    });

    it("throttles repeated failures per user name (429 with Retry-After), then lets the name try again", async () => {
      const h = await identityHarness(await databases.open(), { failuresMax: 3, windowMs: 60_000 });
      await h.addUser("alice", "pw");
      const attempt = (name: string, password: string) =>
        h.app.inject({ method: "POST", url: "/identity/v3/auth/tokens", payload: passwordAuth({ name }, password) });
      for (let i = 0; i < 3; i++) expectKeystoneError(await attempt("alice", "wrong"), 401);
      const refused = await attempt("alice", "pw"); // even the right password
      expectKeystoneError(refused, 429);
      expect(Number(refused.headers["retry-after"])).toBe(60);
      // Another name is unaffected; a name that does not exist is throttled alike.
      await h.addUser("bob", "pw");
      expect((await attempt("bob", "pw")).statusCode).toBe(201);
      for (let i = 0; i < 3; i++) expectKeystoneError(await attempt("ghost", "x"), 401);
      expectKeystoneError(await attempt("ghost", "x"), 429);
      h.clock.nowMs += 60_000;
      expect((await attempt("alice", "pw")).statusCode).toBe(201);
    });
  });

  describe("GET / DELETE /v3/auth/tokens", () => {
    it("validates a subject token with a valid X-Auth-Token", async () => {
      const h = await identityHarness(await databases.open());
      const alice = await h.addUser("alice", "pw");
      const token = await login(h, "alice", "pw");
      const response = await h.app.inject({ method: "GET", url: "/identity/v3/auth/tokens", headers: { "x-auth-token": token, "x-subject-token": token } });
      expect(response.statusCode).toBe(200);
      expect(response.json()).toMatchObject({ token: { user: { id: alice.uuid }, project: { id: alice.uuid } } });
      const head = await h.app.inject({ method: "HEAD", url: "/identity/v3/auth/tokens", headers: { "x-auth-token": token, "x-subject-token": token } });
      expect(head.statusCode).toBe(200);
    });

    it("missing or garbage X-Auth-Token 401, missing X-Subject-Token 400, garbage/expired/revoked subject 404", async () => {
      const h = await identityHarness(await databases.open());
      await h.addUser("alice", "pw");
      const token = await login(h, "alice", "pw");
      const get = (headers: Record<string, string>) => h.app.inject({ method: "GET", url: "/identity/v3/auth/tokens", headers });
      expectKeystoneError(await get({ "x-subject-token": token }), 401);
      expectKeystoneError(await get({ "x-auth-token": "garbage", "x-subject-token": token }), 401);
      expectKeystoneError(await get({ "x-auth-token": token }), 400);
      expectKeystoneError(await get({ "x-auth-token": token, "x-subject-token": "garbage" }), 404);

      const shortLived = await login(h, "alice", "pw");
      h.clock.nowMs += 3_000_000;
      const fresh = await login(h, "alice", "pw");
      h.clock.nowMs += 700_000; // the first two have expired, `fresh` has not
      expectKeystoneError(await get({ "x-auth-token": fresh, "x-subject-token": shortLived }), 404);
      expectKeystoneError(await get({ "x-auth-token": shortLived, "x-subject-token": fresh }), 401);

      const victim = await login(h, "alice", "pw");
      const revoke = await h.app.inject({ method: "DELETE", url: "/identity/v3/auth/tokens", headers: { "x-auth-token": fresh, "x-subject-token": victim } });
      expect(revoke.statusCode).toBe(204);
      expectKeystoneError(await get({ "x-auth-token": fresh, "x-subject-token": victim }), 404);
      expectKeystoneError(await h.app.inject({ method: "DELETE", url: "/identity/v3/auth/tokens", headers: { "x-auth-token": fresh, "x-subject-token": victim } }), 404);
    });

    it("GET /v3/auth/catalog gives the caller's catalog", async () => {
      const h = await identityHarness(await databases.open());
      await h.addUser("alice", "pw");
      const token = await login(h, "alice", "pw");
      const response = await h.app.inject({ method: "GET", url: "/identity/v3/auth/catalog", headers: { "x-auth-token": token } });
      expect(response.statusCode).toBe(200);
      expect((response.json() as { catalog: unknown[] }).catalog).toHaveLength(6);
      expectKeystoneError(await h.app.inject({ method: "GET", url: "/identity/v3/auth/catalog" }), 401);
    });

    it("unknown paths are Keystone 404s", async () => {
      const h = await identityHarness(await databases.open());
      expectKeystoneError(await h.app.inject({ method: "GET", url: "/identity/v3/users" }), 404);
    });
  });
});
