/**
 * Authorisation of every object-store endpoint (issue 6 "Done when": "every endpoint refuses
 * other users' containers and objects unless shared … everything else needs a valid token
 * (tests for each)"). For each method on account, container and object URLs:
 *
 *   no token, garbage, revoked or expired token   401 + Www-Authenticate: Swift realm=…  (swift.md 1)
 *   another user's valid token                    403, and nothing changes                (swift.md 1)
 *   the owner's token as `?X-Auth-Token=`         the endpoint works                      (synnefo.md B.1)
 *
 * Sharing (what a grantee may do) is sharing.test.ts; public links are there too.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { issueToken, revokeToken } from "../../db/index.ts";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { send, useHarness, type Answer, type RequestOptions, type TestUser } from "./testing/http.ts";

interface World {
  alice: TestUser;
  bob: TestUser;
  /** Tokens that name alice but must not work. */
  revokedToken: string;
  expiredToken: string;
  zeroHash: string;
}

interface Endpoint {
  name: string;
  method: string;
  /** Prepares what the request acts on (a fresh object for a delete…) and returns the path below alice's account. */
  path(world: World, unique: string): Promise<string>;
  options?(world: World, unique: string): RequestOptions;
  /** The owner's status. */
  ok: number;
}

const octetStream = { "content-type": "application/octet-stream" };

async function freshObject(world: World, unique: string): Promise<string> {
  await world.alice.put(`/c/${unique}`, `object ${unique}`);
  return `/c/${unique}`;
}

const endpoints: Endpoint[] = [
  { name: "HEAD account", method: "HEAD", path: async () => "", ok: 204 },
  { name: "GET account (listing)", method: "GET", path: async () => "", ok: 200 },
  { name: "GET account ?format=json", method: "GET", path: async () => "?format=json", ok: 200 },
  { name: "POST account (metadata)", method: "POST", path: async () => "", options: () => ({ headers: { "x-account-meta-owner": "changed" } }), ok: 204 },
  { name: "POST account (groups)", method: "POST", path: async () => "?update", options: (world) => ({ headers: { "x-account-group-gang": world.bob.uuid } }), ok: 204 },
  {
    name: "POST account ?bulk-delete",
    method: "POST",
    path: async (world, unique) => {
      await freshObject(world, unique);
      return "?bulk-delete";
    },
    options: (_world, unique) => ({ body: `/c/${unique}\n`, headers: { "content-type": "text/plain", accept: "application/json" } }),
    ok: 200,
  },
  {
    name: "DELETE account ?bulk-delete",
    method: "DELETE",
    path: async (world, unique) => {
      await freshObject(world, unique);
      return "?bulk-delete=1";
    },
    options: (_world, unique) => ({ body: `/c/${unique}\n`, headers: { "content-type": "text/plain" } }),
    ok: 200,
  },
  { name: "HEAD container", method: "HEAD", path: async () => "/c", ok: 204 },
  { name: "GET container (listing)", method: "GET", path: async () => "/c", ok: 200 },
  { name: "GET container ?format=xml", method: "GET", path: async () => "/c?format=xml", ok: 200 },
  { name: "PUT container", method: "PUT", path: async (_world, unique) => `/new-${unique}`, ok: 201 },
  { name: "PUT container (existing)", method: "PUT", path: async () => "/c", ok: 202 },
  { name: "POST container (metadata)", method: "POST", path: async () => "/c", options: () => ({ headers: { "x-container-meta-owner": "changed" } }), ok: 204 },
  { name: "POST container ?update (block upload)", method: "POST", path: async () => "/c?update&format=json", options: () => ({ body: "block data", headers: octetStream }), ok: 202 },
  {
    name: "DELETE container",
    method: "DELETE",
    path: async (world, unique) => `/${await world.alice.container(`empty-${unique}`)}`,
    ok: 204,
  },
  { name: "HEAD object", method: "HEAD", path: async () => "/c/o", ok: 200 },
  { name: "GET object", method: "GET", path: async () => "/c/o", ok: 200 },
  { name: "GET object with Range", method: "GET", path: async () => "/c/o", options: () => ({ headers: { range: "bytes=0-1" } }), ok: 206 },
  { name: "GET object ?hashmap", method: "GET", path: async () => "/c/o?hashmap&format=json", ok: 200 },
  { name: "GET object ?version=list", method: "GET", path: async () => "/c/o?version=list&format=json", ok: 200 },
  { name: "PUT object (new)", method: "PUT", path: async (_world, unique) => `/c/new-${unique}`, options: () => ({ body: "intruder" }), ok: 201 },
  { name: "PUT object (overwrite)", method: "PUT", path: freshObject, options: () => ({ body: "overwritten" }), ok: 201 },
  { name: "PUT object chunked", method: "PUT", path: async (_world, unique) => `/c/chunked-${unique}`, options: () => ({ chunks: ["a", "b"] }), ok: 201 },
  {
    name: "PUT object ?hashmap",
    method: "PUT",
    path: async (_world, unique) => `/c/hashmap-${unique}?hashmap&format=json`,
    options: (world) => ({ body: JSON.stringify({ bytes: 0, hashes: [world.zeroHash] }), headers: octetStream }),
    ok: 201,
  },
  { name: "PUT object X-Copy-From", method: "PUT", path: async (_world, unique) => `/c/copy-${unique}`, options: () => ({ body: "", headers: { "x-copy-from": "/c/o" } }), ok: 201 },
  {
    name: "PUT object X-Move-From",
    method: "PUT",
    path: async (world, unique) => {
      await freshObject(world, unique);
      return `/c/moved-${unique}`;
    },
    options: (_world, unique) => ({ body: "", headers: { "x-move-from": `/c/${unique}` } }),
    ok: 201,
  },
  {
    name: "PUT object (DLO manifest)",
    method: "PUT",
    path: async (_world, unique) => `/c/dlo-${unique}`,
    options: () => ({ body: "", headers: { "x-object-manifest": "c/o" } }),
    ok: 201,
  },
  {
    name: "PUT object ?multipart-manifest=put",
    method: "PUT",
    path: async (_world, unique) => `/c/slo-${unique}?multipart-manifest=put`,
    options: () => ({ body: JSON.stringify([{ path: "/c/o", etag: null, size_bytes: null }]) }),
    ok: 201,
  },
  { name: "POST object (metadata)", method: "POST", path: async () => "/c/o", options: () => ({ headers: { "x-object-meta-owner": "changed" } }), ok: 202 },
  { name: "POST object (sharing)", method: "POST", path: freshObject, options: (world) => ({ headers: { "x-object-sharing": `read=${world.bob.uuid}` } }), ok: 202 },
  { name: "POST object (publish)", method: "POST", path: freshObject, options: () => ({ headers: { "x-object-public": "true" } }), ok: 202 },
  {
    name: "POST object (partial update, Content-Range)",
    method: "POST",
    path: freshObject,
    options: () => ({ body: "PATCH", headers: { "content-range": "bytes 0-4/*", "content-type": "application/octet-stream" } }),
    ok: 204,
  },
  {
    name: "COPY object to another account (Destination-Account)",
    method: "COPY",
    path: async () => "/c/o",
    options: (world, unique) => ({ headers: { destination: `/c/cross-${unique}`, "destination-account": world.alice.account } }),
    ok: 201,
  },
  { name: "DELETE object", method: "DELETE", path: freshObject, ok: 204 },
  { name: "DELETE object ?multipart-manifest=delete", method: "DELETE", path: async (world, unique) => `${await freshObject(world, unique)}?multipart-manifest=delete`, ok: 200 },
  { name: "COPY object", method: "COPY", path: async () => "/c/o", options: (_world, unique) => ({ headers: { destination: `/c/copied-${unique}` } }), ok: 201 },
  { name: "MOVE object", method: "MOVE", path: freshObject, options: (_world, unique) => ({ headers: { destination: `/c/moved-${unique}` } }), ok: 201 },
];

/**
 * What a refused request must leave as it was: alice's account (listing, counts, metadata,
 * groups — the listing carries the account headers), her container (listing, counts, metadata)
 * and her object (data, metadata, sharing, version).
 */
async function snapshot(alice: TestUser): Promise<string> {
  const parts = await Promise.all([alice.request("GET", "?format=json"), alice.request("GET", "/c?format=json"), alice.request("GET", "/c/o")]);
  const relevant = (answer: Answer): Record<string, unknown> =>
    Object.fromEntries(Object.entries(answer.headers).filter(([name]) => /^x-(account|container|object)-|^etag$|^last-modified$|^x-timestamp$/.test(name)));
  return JSON.stringify(parts.map((answer) => [answer.status, answer.text(), relevant(answer)]));
}

function withQuery(path: string, name: string, value: string): string {
  return `${path}${path.includes("?") ? "&" : "?"}${name}=${encodeURIComponent(value)}`;
}

describeEachEngine("pithos HTTP: authorisation", (databases) => {
  const harness = useHarness(databases, { blockSizeBytes: 4096 });
  let world: World;
  let counter = 0;
  const unique = (): string => `u${++counter}`;

  beforeAll(async () => {
    const h = harness();
    const alice = await h.user("alice");
    const bob = await h.user("bob");
    await alice.container("c");
    await alice.put("/c/o", "alice's object", { "x-object-meta-owner": "alice" });
    await alice.request("POST", "", { headers: { "x-account-meta-owner": "alice" } });
    const revoked = await issueToken(h.db, alice.uuid);
    await revokeToken(h.db, revoked.token);
    const expired = await issueToken(h.db, alice.uuid, { ttlMs: 1, nowMs: Date.now() - 60_000 });
    world = { alice, bob, revokedToken: revoked.token, expiredToken: expired.token, zeroHash: h.served.service.zeroBlockHashHex };
  });

  describe.each(endpoints)("$name", (endpoint) => {
    it("no, garbage, revoked or expired token → 401 with Www-Authenticate, nothing changed", async () => {
      const id = unique();
      const path = await endpoint.path(world, id);
      const before = await snapshot(world.alice);
      for (const token of [null, "garbage", "", "AUTH_tk0123456789abcdef0123456789abcdef", world.revokedToken, world.expiredToken]) {
        const answer = await world.alice.request(endpoint.method, path, { ...endpoint.options?.(world, id), token });
        expect(answer.status, `token ${JSON.stringify(token)}`).toBe(401);
        expect(answer.header("www-authenticate")).toMatch(/^Swift realm="/);
        expect(answer.text()).toBe(endpoint.method === "HEAD" ? "" : "<html><h1>Unauthorized</h1><p>This server could not verify that you are authorized to access the document you requested.</p></html>");
      }
      expect(await snapshot(world.alice)).toBe(before);
    });

    it("another user's valid token → 403, nothing changed", async () => {
      const id = unique();
      const path = await endpoint.path(world, id);
      const before = await snapshot(world.alice);
      const answer = await world.bob.request(endpoint.method, path, { ...endpoint.options?.(world, id), account: world.alice.account });
      expect(answer.status).toBe(403);
      expect(await snapshot(world.alice)).toBe(before);
      // The same account named by its bare uuid (Pithos+ form) is no different.
      const bare = await world.bob.request(endpoint.method, path, { ...endpoint.options?.(world, id), account: world.alice.uuid });
      expect(bare.status).toBe(403);
    });

    it("the owner's token as the X-Auth-Token query parameter works", async () => {
      const id = unique();
      const path = await endpoint.path(world, id);
      const answer = await world.alice.request(endpoint.method, withQuery(path, "X-Auth-Token", world.alice.token), { ...endpoint.options?.(world, id), token: null });
      expect(answer.status, answer.text()).toBe(endpoint.ok);
    });
  });

  describe("realms and unauthenticated endpoints", () => {
    it("the 401 realm is the account in the path: Swift realm=\"AUTH_<uuid>\" (swift.md 1)", async () => {
      for (const path of ["", "/c", "/c/o"]) {
        const answer = await world.alice.request("GET", path, { token: null });
        expect(answer.header("www-authenticate")).toBe(`Swift realm="${world.alice.account}"`);
      }
    });

    it("Swift v1 auth hands out the account's storage URL, and its token works there", async () => {
      const { token, storageUrl } = await harness().served.login(world.alice.name, world.alice.password);
      expect(storageUrl).toBe(`${harness().storageRoot}/${world.alice.account}`);
      const answer = await send(`${storageUrl}/c/o`, { headers: { "x-auth-token": token } });
      expect(answer.status).toBe(200);
      expect(answer.text()).toBe("alice's object");
    });

    it("GET /v1 (accounts sharing with me) needs a token: 401 realm=\"unknown\"", async () => {
      const answer = await send(harness().storageRoot);
      expect(answer.status).toBe(401);
      expect(answer.header("www-authenticate")).toBe('Swift realm="unknown"');
      expect((await send(harness().storageRoot, { headers: { "x-auth-token": "garbage" } })).status).toBe(401);
    });

    it("/info needs no token: 200 JSON with the swift, slo and bulk_delete sections", async () => {
      const answer = await send(`${harness().baseUrl}/object-store/info`);
      expect(answer.status).toBe(200);
      expect(answer.header("content-type")).toBe("application/json; charset=utf-8");
      const info = answer.json<Record<string, Record<string, unknown>>>();
      expect(info["swift"]).toMatchObject({ container_listing_limit: 10000, max_object_name_length: 1024, max_container_name_length: 256, max_file_size: 5368709122 });
      expect(info["slo"]).toBeDefined();
      expect(info["bulk_delete"]).toBeDefined();
      expect(answer.header("x-trans-id")).toMatch(/^tx[0-9a-f]{21}-[0-9a-f]{10}$/);
    });

    it("another user's missing containers and objects are 403 too, not 404: names cannot be probed (swift.md 1)", async () => {
      const asBob = { account: world.alice.account };
      for (const [method, path] of [["HEAD", "/nothing"], ["GET", "/nothing"], ["DELETE", "/nothing"], ["GET", "/c/nothing"], ["HEAD", "/nothing/o"], ["PUT", "/nothing/o"]] as const) {
        expect((await world.bob.request(method, path, { ...asBob, ...(method === "PUT" && { body: "x" }) })).status, `${method} ${path}`).toBe(403);
      }
      // An account no user has: 403 as well (a valid token without rights there).
      const stranger = { account: "AUTH_00000000-0000-4000-8000-000000000000" };
      expect((await world.alice.request("GET", "/c", stranger)).status).toBe(403);
      expect((await world.alice.request("PUT", "/c", stranger)).status).toBe(403);
    });
  });
});
