/**
 * Pithos+ sharing and public links over HTTP (synnefo.md B.2, B.5): X-Object-Sharing read and
 * write for users, `*` and account groups, inheritance from directory objects, `GET /v1`, and
 * X-Object-Public links served without a token — and nothing beyond what each grants.
 */
import { describe, expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { md5Hex, send, useHarness } from "./testing/http.ts";

describeEachEngine("pithos HTTP: sharing and public links", (databases) => {
  const harness = useHarness(databases, { blockSizeBytes: 4096 });

  describe("X-Object-Sharing", () => {
    it("read for a user: GET and HEAD only, that object only; the owner sees X-Object-Sharing", async () => {
      const alice = await harness().user("alice");
      const bob = await harness().user("bob");
      const carol = await harness().user("carol");
      await alice.container("c");
      await alice.put("/c/shared", "for bob", { "x-object-sharing": `read=${bob.uuid}` });
      await alice.put("/c/private", "alice only");
      const asBob = { account: alice.account };
      expect((await bob.request("GET", "/c/shared", asBob)).text()).toBe("for bob");
      expect((await bob.request("HEAD", "/c/shared", asBob)).status).toBe(200);
      expect((await bob.request("GET", "/c/shared", { ...asBob, headers: { range: "bytes=0-2" } })).text()).toBe("for");
      expect((await bob.request("GET", "/c/shared?hashmap&format=json", asBob)).status).toBe(200);
      for (const [method, options] of [
        ["PUT", { body: "bob was here" }],
        ["POST", { headers: { "x-object-meta-x": "1" } }],
        ["DELETE", {}],
        ["COPY", { headers: { destination: "/c/stolen" } }],
        ["MOVE", { headers: { destination: "/c/stolen" } }],
      ] as const) {
        expect((await bob.request(method, "/c/shared", { ...asBob, ...options })).status, method).toBe(403);
      }
      expect((await bob.request("GET", "/c/private", asBob)).status).toBe(403);
      expect((await bob.request("HEAD", "/c/private", asBob)).status).toBe(403);
      expect((await carol.request("GET", "/c/shared", asBob)).status).toBe(403);
      // The container listing shows bob what is shared with him, nothing else.
      const listing = await bob.request("GET", "/c", asBob);
      expect(listing.status).toBe(200);
      expect(listing.text()).toBe("shared\n");
      expect((await bob.request("HEAD", "/c", asBob)).status).toBe(403);
      // Nothing bob tried changed anything.
      const owner = await alice.request("GET", "/c/shared");
      expect(owner.text()).toBe("for bob");
      expect(owner.header("x-object-sharing")).toBe(`read=${bob.uuid}`);
      expect(owner.header("x-object-meta-x")).toBeUndefined();
      expect((await alice.request("HEAD", "/c/stolen")).status).toBe(404);
      // Sharing is the owner's business: a grantee never sees it.
      expect((await bob.request("HEAD", "/c/shared", asBob)).header("x-object-sharing")).toBeUndefined();
    });

    it("write for a user: PUT, POST and DELETE of that object; not its sharing or publishing", async () => {
      const alice = await harness().user("alice");
      const bob = await harness().user("bob");
      await alice.container("c");
      await alice.put("/c/doc", "v1", { "x-object-sharing": `write=${bob.uuid}` });
      const asBob = { account: alice.account };
      expect((await bob.request("GET", "/c/doc", asBob)).text()).toBe("v1");
      const put = await bob.request("PUT", "/c/doc", { ...asBob, body: "v2 by bob" });
      expect(put.status).toBe(201);
      expect((await alice.request("GET", "/c/doc")).text()).toBe("v2 by bob");
      expect((await alice.request("HEAD", "/c/doc")).header("x-object-modified-by")).toBe(bob.uuid);
      expect((await bob.request("POST", "/c/doc", { ...asBob, headers: { "x-object-meta-note": "bob" } })).status).toBe(202);
      expect((await alice.request("HEAD", "/c/doc")).header("x-object-meta-note")).toBe("bob");
      expect((await bob.request("POST", "/c/doc", { ...asBob, headers: { "x-object-sharing": `write=${bob.uuid},*` } })).status).toBe(403);
      expect((await bob.request("POST", "/c/doc", { ...asBob, headers: { "x-object-public": "true" } })).status).toBe(403);
      expect((await alice.request("HEAD", "/c/doc")).header("x-object-public")).toBeUndefined();
      // Write on one object is not write on the container.
      expect((await bob.request("PUT", "/c/new", { ...asBob, body: "x" })).status).toBe(403);
      expect((await bob.request("DELETE", "/c/doc", asBob)).status).toBe(204);
      expect((await alice.request("HEAD", "/c/doc")).status).toBe(404);
    });

    it("`*` lets every user read (with a token); an empty value stops sharing", async () => {
      const alice = await harness().user("alice");
      const bob = await harness().user("bob");
      await alice.container("c");
      await alice.put("/c/o", "everyone", { "x-object-sharing": "read=*" });
      expect((await bob.request("GET", "/c/o", { account: alice.account })).text()).toBe("everyone");
      expect((await bob.request("GET", "/c/o", { account: alice.account, token: null })).status).toBe(401);
      expect((await alice.request("POST", "/c/o", { headers: { "x-object-sharing": "" } })).status).toBe(202);
      expect((await bob.request("GET", "/c/o", { account: alice.account })).status).toBe(403);
      expect((await alice.request("HEAD", "/c/o")).header("x-object-sharing")).toBeUndefined();
    });

    it("account groups as grantees (`<account>:<group>`), following the group's membership", async () => {
      const alice = await harness().user("alice");
      const bob = await harness().user("bob");
      const carol = await harness().user("carol");
      await alice.request("POST", "?update", { headers: { "x-account-group-team": bob.uuid } });
      await alice.container("c");
      await alice.put("/c/plan", "team plan", { "x-object-sharing": `read=${alice.uuid}:team` });
      expect((await bob.request("GET", "/c/plan", { account: alice.account })).text()).toBe("team plan");
      expect((await carol.request("GET", "/c/plan", { account: alice.account })).status).toBe(403);
      await alice.request("POST", "?update", { headers: { "x-account-group-team": carol.uuid } });
      expect((await bob.request("GET", "/c/plan", { account: alice.account })).status).toBe(403);
      expect((await carol.request("GET", "/c/plan", { account: alice.account })).text()).toBe("team plan");
    });

    it("inheritance from the nearest application/directory object along the path", async () => {
      const alice = await harness().user("alice");
      const bob = await harness().user("bob");
      const carol = await harness().user("carol");
      await alice.container("c");
      await alice.put("/c/docs", "", { "content-type": "application/directory", "x-object-sharing": `read=${bob.uuid}` });
      await alice.put("/c/docs/a.txt", "a");
      await alice.put("/c/docs/sub/b.txt", "b");
      await alice.put("/c/docsx/c.txt", "c");
      await alice.put("/c/other.txt", "o");
      await alice.put("/c/docs/private", "", { "content-type": "application/directory", "x-object-sharing": `read=${carol.uuid}` });
      await alice.put("/c/docs/private/p.txt", "p");
      const read = async (user: typeof bob, name: string): Promise<number> => (await user.request("GET", `/c/${name}`, { account: alice.account })).status;
      expect(await read(bob, "docs/a.txt")).toBe(200);
      expect(await read(bob, "docs/sub/b.txt")).toBe(200);
      expect(await read(bob, "docsx/c.txt")).toBe(403);
      expect(await read(bob, "other.txt")).toBe(403);
      expect(await read(carol, "docs/a.txt")).toBe(403);
      // The nearer directory's sharing wins.
      expect(await read(carol, "docs/private/p.txt")).toBe(200);
      expect(await read(bob, "docs/private/p.txt")).toBe(403);
    });

    it("only application/directory objects pass their sharing on (synnefo.md B.5)", async () => {
      const alice = await harness().user("alice");
      const bob = await harness().user("bob");
      await alice.container("c");
      await alice.put("/c/file", "f", { "x-object-sharing": `read=${bob.uuid}` });
      await alice.put("/c/file/under", "u");
      expect((await bob.request("GET", "/c/file", { account: alice.account })).status).toBe(200);
      expect((await bob.request("GET", "/c/file/under", { account: alice.account })).status).toBe(403);
    });

    it("grantees get X-Object-Allowed-To and X-Object-Shared-By (synnefo.md B.2, B.5)", async () => {
      const alice = await harness().user("alice");
      const bob = await harness().user("bob");
      await alice.container("c");
      await alice.put("/c/docs", "", { "content-type": "application/directory", "x-object-sharing": `write=${bob.uuid}` });
      await alice.put("/c/docs/a.txt", "a");
      const head = await bob.request("HEAD", "/c/docs/a.txt", { account: alice.account });
      expect(head.header("x-object-allowed-to")).toBe("write");
      expect(head.header("x-object-shared-by")).toBe("c/docs");
    });

    it("copy across accounts follows sharing: read on the source, write on the target (X-Source-Account, Destination-Account)", async () => {
      const alice = await harness().user("alice");
      const bob = await harness().user("bob");
      await alice.container("c");
      await bob.container("mine");
      await alice.put("/c/readable", "shared data", { "x-object-sharing": `read=${bob.uuid}` });
      await alice.put("/c/private", "private data");
      // Into bob's own account, from alice's: PUT + X-Copy-From + X-Source-Account.
      const copy = await bob.request("PUT", "/mine/copy", { body: "", headers: { "x-copy-from": "/c/readable", "x-source-account": alice.account } });
      expect(copy.status).toBe(201);
      expect((await bob.request("GET", "/mine/copy")).text()).toBe("shared data");
      expect((await bob.request("PUT", "/mine/stolen", { body: "", headers: { "x-copy-from": "/c/private", "x-source-account": alice.account } })).status).toBe(403);
      expect((await bob.request("HEAD", "/mine/stolen")).status).toBe(404);
      // COPY on alice's object with a Destination-Account of bob's.
      const verb = await bob.request("COPY", "/c/readable", { account: alice.account, headers: { destination: "/mine/verb", "destination-account": bob.account } });
      expect(verb.status).toBe(201);
      expect((await bob.request("GET", "/mine/verb")).text()).toBe("shared data");
      expect((await bob.request("COPY", "/c/private", { account: alice.account, headers: { destination: "/mine/verb2", "destination-account": bob.account } })).status).toBe(403);
      // Read access is not enough to move (it deletes the source), nor to write into alice's account.
      expect((await bob.request("PUT", "/mine/moved", { body: "", headers: { "x-move-from": "/c/readable", "x-source-account": alice.account } })).status).toBe(403);
      expect((await alice.request("GET", "/c/readable")).text()).toBe("shared data");
      expect((await bob.request("PUT", "/c/intruder", { account: alice.account, body: "", headers: { "x-copy-from": "/mine/copy", "x-source-account": bob.account } })).status).toBe(403);
      expect((await alice.request("HEAD", "/c/intruder")).status).toBe(404);
    });

    it("GET /v1 lists the accounts sharing with the caller; `?shared` lists the owner's shared objects", async () => {
      const alice = await harness().user("alice");
      const bob = await harness().user("bob");
      const list = (): ReturnType<typeof send> => send(harness().storageRoot, { headers: { "x-auth-token": bob.token } });
      expect((await list()).status).toBe(204);
      await alice.container("c");
      await alice.put("/c/a", "a", { "x-object-sharing": `read=${bob.uuid}` });
      await alice.put("/c/b", "b");
      const accounts = await list();
      expect(accounts.status).toBe(200);
      expect(accounts.text()).toBe(`${alice.uuid}\n`);
      expect((await alice.request("GET", "/c?shared")).text()).toBe("a\n");
      expect((await send(harness().storageRoot)).status).toBe(401);
    });

    it("a malformed X-Object-Sharing is 400", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/o", "x");
      for (const sharing of ["everyone", "read=", "read=a;bogus=b", "read=a b:c:d"]) {
        expect((await alice.request("PUT", "/c/o", { body: "x", headers: { "x-object-sharing": sharing } })).status, sharing).toBe(400);
        expect((await alice.request("POST", "/c/o", { headers: { "x-object-sharing": sharing } })).status, sharing).toBe(400);
      }
      expect((await alice.request("HEAD", "/c/o")).header("x-object-sharing")).toBeUndefined();
    });

    it("a PUT refused for its X-Object-Sharing (400) or X-Object-Public (403) stores nothing", async () => {
      const alice = await harness().user("alice");
      const bob = await harness().user("bob");
      await alice.container("c");
      expect((await alice.request("PUT", "/c/new", { body: "x", headers: { "x-object-sharing": "everyone" } })).status).toBe(400);
      expect((await alice.request("HEAD", "/c/new")).status).toBe(404);
      await alice.put("/c/doc", "v1", { "x-object-sharing": `write=${bob.uuid}` });
      expect((await bob.request("PUT", "/c/doc", { account: alice.account, body: "v2", headers: { "x-object-public": "true" } })).status).toBe(403);
      expect((await alice.request("GET", "/c/doc")).text()).toBe("v1");
    });
  });

  describe("public links", () => {
    it("X-Object-Public: true → a /public/<token> URL that serves the data without a token, ranges too", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/pic.jpg", "JPEGDATA-0123456789", { "x-object-meta-secret": "hidden" });
      const publish = await alice.request("POST", "/c/pic.jpg", { headers: { "x-object-public": "true" } });
      expect(publish.status).toBe(202);
      const url = publish.header("x-object-public") as string;
      expect(url).toMatch(new RegExp(`^${harness().baseUrl}/public/[0-9A-Za-z]{16}$`));
      expect((await alice.request("HEAD", "/c/pic.jpg")).header("x-object-public")).toBe(url);
      const get = await send(url);
      expect(get.status).toBe(200);
      expect(get.text()).toBe("JPEGDATA-0123456789");
      expect(get.header("content-type")).toBe("image/jpeg");
      expect(get.header("etag")).toBe(md5Hex("JPEGDATA-0123456789"));
      expect(get.header("last-modified")).toBeDefined();
      // Nothing about the object's owner, version or metadata (B.2).
      expect(Object.keys(get.headers).filter((name) => name.startsWith("x-object-"))).toEqual([]);
      const range = await send(url, { headers: { range: "bytes=9-12" } });
      expect(range.status).toBe(206);
      expect(range.text()).toBe("0123");
      expect(range.header("content-range")).toBe("bytes 9-12/19");
      const head = await send(url, { method: "HEAD" });
      expect(head.status).toBe(200);
      expect(head.header("content-length")).toBe("19");
      expect((await send(url, { headers: { "if-none-match": md5Hex("JPEGDATA-0123456789") } })).status).toBe(304);
      // The link follows the object's current data.
      await alice.put("/c/pic.jpg", "NEWDATA");
      expect((await send(url)).text()).toBe("NEWDATA");
    });

    it("unpublishing or deleting ends the link (404)", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/a", "a", { "x-object-public": "true" });
      const url = (await alice.request("HEAD", "/c/a")).header("x-object-public") as string;
      expect((await send(url)).text()).toBe("a");
      expect((await alice.request("POST", "/c/a", { headers: { "x-object-public": "false" } })).status).toBe(202);
      expect((await send(url)).status).toBe(404);
      expect((await send(url, { method: "HEAD" })).status).toBe(404);
      expect((await alice.request("HEAD", "/c/a")).header("x-object-public")).toBeUndefined();
      await alice.put("/c/b", "b", { "x-object-public": "true" });
      const second = (await alice.request("HEAD", "/c/b")).header("x-object-public") as string;
      expect((await alice.request("DELETE", "/c/b")).status).toBe(204);
      expect((await send(second)).status).toBe(404);
    });

    it("a public link reaches exactly its object: no other path, token or neighbour", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/public", "published", { "x-object-public": "true" });
      await alice.put("/c/secret", "not published");
      const url = (await alice.request("HEAD", "/c/public")).header("x-object-public") as string;
      const token = url.slice(url.lastIndexOf("/") + 1);
      const base = `${harness().baseUrl}/public`;
      for (const probe of [
        `${url}/secret`,
        `${url}/../secret`,
        `${url}%2F..%2Fsecret`,
        `${url}x`,
        `${base}/${token.slice(0, -1)}`,
        `${base}/${token.toLowerCase() === token ? token.toUpperCase() : token.toLowerCase()}`,
        `${base}/`,
        `${base}/secret`,
        `${base}/c/secret`,
        `${base}/${alice.account}/c/secret`,
      ]) {
        const answer = await send(probe);
        expect(answer.status, probe).toBe(404);
        expect(answer.text()).not.toContain("not published");
      }
      // And the object store still wants a token for the published object itself.
      expect((await alice.request("GET", "/c/public", { token: null })).status).toBe(401);
    });
  });
});
