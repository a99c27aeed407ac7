import Fastify from "fastify";
import { expect, it } from "vitest";
import { describeEachEngine } from "../db/testing/databases.ts";
import { sendKeystoneError } from "./errors.ts";
import { requireToken } from "./require-token.ts";
import { identityHarness, passwordAuth } from "./testing/harness.ts";

interface Access {
  access: { token: { id: string; expires: string; tenant: { id: string } }; user: { id: string }; serviceCatalog: Array<{ type: string; endpoints: Array<{ publicURL: string }> }> };
}

describeEachEngine("identity: Keystone v2.0, Swift v1 auth, requireToken", (databases) => {
  it("v2.0 password login answers access{token, user, serviceCatalog}; the token validates in v3", async () => {
    const h = await identityHarness(await databases.open());
    const alice = await h.addUser("alice", "pw");
    const response = await h.app.inject({ method: "POST", url: "/identity/v2.0/tokens", headers: { host: "h" }, payload: { auth: { passwordCredentials: { username: "alice", password: "pw" }, tenantName: "alice" } } });
    expect(response.statusCode).toBe(200);
    const { access } = response.json() as Access;
    expect(access.user.id).toBe(alice.uuid);
    expect(access.token.tenant.id).toBe(alice.uuid);
    expect(access.serviceCatalog.find((entry) => entry.type === "object-store")!.endpoints[0]!.publicURL).toBe(`http://h/object-store/v1/AUTH_${alice.uuid}`);
    const check = await h.app.inject({ method: "GET", url: "/identity/v3/auth/tokens", headers: { "x-auth-token": access.token.id, "x-subject-token": access.token.id } });
    expect(check.statusCode).toBe(200);
  });

  it("v2.0 Astakos style: uuid as user name, a token as password; and the token form", async () => {
    const h = await identityHarness(await databases.open());
    const alice = await h.addUser("alice", "pw");
    const { token } = await h.service.loginWithPassword({ name: "alice" }, "pw").then((session) => ({ token: session.secret! }));
    const astakos = await h.app.inject({ method: "POST", url: "/identity/v2.0/tokens", payload: { auth: { passwordCredentials: { username: alice.uuid, password: token }, tenantName: alice.uuid } } });
    expect(astakos.statusCode).toBe(200);
    const byToken = await h.app.inject({ method: "POST", url: "/identity/v2.0/tokens", payload: { auth: { token: { id: token } } } });
    expect(byToken.statusCode).toBe(200);
    expect((byToken.json() as Access).access.user.id).toBe(alice.uuid);
    // Another user's token is not alice's password.
    await h.addUser("bob", "pw2");
    const bobs = (await h.service.loginWithPassword({ name: "bob" }, "pw2")).secret!;
    const mixed = await h.app.inject({ method: "POST", url: "/identity/v2.0/tokens", payload: { auth: { passwordCredentials: { username: "alice", password: bobs } } } });
    expect(mixed.statusCode).toBe(401);
  });

  it("v2.0: empty body gives the catalog only; wrong password 401; bad JSON 400; other tenant 401", async () => {
    const h = await identityHarness(await databases.open());
    await h.addUser("alice", "pw");
    const empty = await h.app.inject({ method: "POST", url: "/identity/v2.0/tokens", headers: { "content-type": "application/json" }, payload: "" });
    expect(empty.statusCode).toBe(200);
    expect((empty.json() as { access: Record<string, unknown> }).access["token"]).toBeUndefined();
    const wrong = await h.app.inject({ method: "POST", url: "/identity/v2.0/tokens", payload: { auth: { passwordCredentials: { username: "alice", password: "no" } } } });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json()).toMatchObject({ error: { code: 401, title: "Unauthorized" } });
    const bad = await h.app.inject({ method: "POST", url: "/identity/v2.0/tokens", headers: { "content-type": "application/json" }, payload: "{nope" });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ error: { code: 400 } });
    const other = await h.app.inject({ method: "POST", url: "/identity/v2.0/tokens", payload: { auth: { passwordCredentials: { username: "alice", password: "pw" }, tenantName: "bob" } } });
    expect(other.statusCode).toBe(401);
  });

  it("Swift v1: X-Auth-User/X-Auth-Key → X-Storage-Url and X-Auth-Token; account:user form; failures 401", async () => {
    const h = await identityHarness(await databases.open());
    const alice = await h.addUser("alice", "pw");
    for (const user of ["alice", "alice:alice"]) {
      const response = await h.app.inject({ method: "GET", url: "/auth/v1.0", headers: { host: "h:8080", "x-auth-user": user, "x-auth-key": "pw" } });
      expect(response.statusCode).toBe(200);
      expect(response.headers["x-storage-url"]).toBe(`http://h:8080/object-store/v1/AUTH_${alice.uuid}`);
      expect(response.headers["x-auth-token"]).toBe(response.headers["x-storage-token"]);
      expect(Number(response.headers["x-auth-token-expires"])).toBe(3600);
      const token = response.headers["x-auth-token"] as string;
      expect((await h.service.checkToken(token)).status).toBe("valid");
    }
    const wrong = await h.app.inject({ method: "GET", url: "/auth/v1.0", headers: { "x-auth-user": "alice", "x-auth-key": "no" } });
    expect(wrong.statusCode).toBe(401);
    expect((await h.app.inject({ method: "GET", url: "/auth/v1.0" })).statusCode).toBe(401);
    const otherAccount = await h.app.inject({ method: "GET", url: "/auth/v1.0", headers: { "x-auth-user": "bob:alice", "x-auth-key": "pw" } });
    expect(otherAccount.statusCode).toBe(401);
  });

  it("requireToken puts the caller on the request for another service's plugin, and refuses bad tokens", async () => {
    const h = await identityHarness(await databases.open());
    const alice = await h.addUser("alice", "pw");
    const app = Fastify();
    await app.register(
      async (service) => {
        service.setErrorHandler(sendKeystoneError);
        requireToken(service, h.service);
        service.get("/whoami", async (request) => ({ uuid: request.caller!.user.uuid }));
      },
      { prefix: "/svc" },
    );
    const token = (await h.app.inject({ method: "POST", url: "/identity/v3/auth/tokens", payload: passwordAuth({ name: "alice" }, "pw") })).headers["x-subject-token"] as string;
    const ok = await app.inject({ method: "GET", url: "/svc/whoami", headers: { "x-auth-token": token } });
    expect(ok.json()).toEqual({ uuid: alice.uuid });
    expect((await app.inject({ method: "GET", url: "/svc/whoami" })).statusCode).toBe(401);
    expect((await app.inject({ method: "GET", url: "/svc/whoami", headers: { "x-auth-token": "garbage" } })).statusCode).toBe(401);
    await h.service.revoke(token);
    expect((await app.inject({ method: "GET", url: "/svc/whoami", headers: { "x-auth-token": token } })).statusCode).toBe(401);
  });
});
