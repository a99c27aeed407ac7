/**
 * Token validation in-process and over HTTP (a service deployed apart from identity): the
 * remote validator against a real identity server, and the object store run as its own
 * server trusting that identity remotely.
 */
import Fastify from "fastify";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createUser, issueToken, revokeToken, type MetadataDatabase } from "../db/index.ts";
import { describeEachEngine } from "../db/testing/databases.ts";
import { pithosPlugin } from "../gateways/pithos/index.ts";
import { servePithos, type ServedPithos } from "../gateways/pithos/testing/server.ts";
import { localTokenValidator, RemoteTokenValidator } from "./token-validator.ts";
import { IdentityService } from "./service.ts";

describeEachEngine("token validators", (databases) => {
  let db: MetadataDatabase;
  let served: ServedPithos;
  let identityUrl: string;

  beforeAll(async () => {
    db = await databases.open();
    served = await servePithos(db);
    identityUrl = `${served.baseUrl}/identity/v3`;
  });
  afterAll(async () => served?.close());

  it("local: valid, unknown and revoked tokens", async () => {
    const alice = await createUser(db, { name: "alice-local" });
    const { token } = await issueToken(db, alice.uuid, { ttlMs: 60_000 });
    const local = localTokenValidator(new IdentityService({ db }));
    expect(await local.validate(token)).toMatchObject({ userUuid: alice.uuid, userName: "alice-local" });
    expect(await local.validate("garbage")).toBeUndefined();
    await revokeToken(db, token);
    expect(await local.validate(token)).toBeUndefined();
  });

  it("remote: asks identity over HTTP, caches both answers, and sees a revocation after the cache time", async () => {
    const service = await createUser(db, { name: "svc" });
    const bob = await createUser(db, { name: "bob" });
    const serviceToken = (await issueToken(db, service.uuid, { ttlMs: 600_000 })).token;
    const bobToken = (await issueToken(db, bob.uuid, { ttlMs: 600_000 })).token;
    let clock = Date.now();
    let requests = 0;
    const remote = new RemoteTokenValidator({
      identityUrl,
      serviceToken,
      cacheTtlMs: 10_000,
      negativeCacheTtlMs: 1_000,
      now: () => clock,
      fetch: (input, init) => {
        requests++;
        return fetch(input, init);
      },
    });
    const validated = await remote.validate(bobToken);
    expect(validated).toMatchObject({ userUuid: bob.uuid, userName: "bob" });
    expect(validated!.expiresAtMs).toBeGreaterThan(clock);
    expect(await remote.validate(bobToken)).toEqual(validated);
    expect(requests).toBe(1);
    expect(await remote.validate("garbage")).toBeUndefined();
    expect(await remote.validate("garbage")).toBeUndefined();
    expect(requests).toBe(2);

    await revokeToken(db, bobToken);
    expect(await remote.validate(bobToken)).toEqual(validated); // still cached
    clock += 10_001;
    expect(await remote.validate(bobToken)).toBeUndefined();

    const badService = new RemoteTokenValidator({ identityUrl, serviceToken: "not-a-token" });
    await expect(badService.validate(bobToken)).rejects.toThrow(/refused the service token/);
  });

  it("the object store deployed apart trusts identity remotely", async () => {
    const service = await createUser(db, { name: "svc2" });
    const carol = await served.addUser("carol", "pw");
    const serviceToken = (await issueToken(db, service.uuid, { ttlMs: 600_000 })).token;
    const apart = Fastify();
    apart.addHttpMethod("COPY", { hasBody: true });
    apart.addHttpMethod("MOVE", { hasBody: true });
    await apart.register(pithosPlugin, { service: served.service, tokens: new RemoteTokenValidator({ identityUrl, serviceToken }), prefix: "/object-store" });
    await apart.listen({ port: 0, host: "127.0.0.1" });
    try {
      const address = apart.server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      const { token } = await served.login("carol", "pw");
      const url = `http://127.0.0.1:${port}/object-store/v1/AUTH_${carol.uuid}`;
      expect((await fetch(`${url}/box`, { method: "PUT", headers: { "x-auth-token": token } })).status).toBe(201);
      expect((await fetch(`${url}/box/hello`, { method: "PUT", body: "hi", headers: { "x-auth-token": token } })).status).toBe(201);
      expect(await (await fetch(`${url}/box/hello`, { headers: { "x-auth-token": token } })).text()).toBe("hi");
      const refused = await fetch(`${url}/box/hello`, { headers: { "x-auth-token": "garbage" } });
      expect(refused.status).toBe(401);
      expect(refused.headers.get("www-authenticate")).toBe(`Swift realm="AUTH_${carol.uuid}"`);
    } finally {
      await apart.close();
    }
  });
});
