/**
 * Server-side copy and move (swift.md 9; synnefo.md B.3) — which copy maps, never blocks — and
 * Pithos+ versions (synnefo.md B.5): `?version=list`, `?version=N`, versioning `none`.
 */
import { describe, expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { blockObjects, md5Hex, patternBytes, useHarness } from "./testing/http.ts";

const blockSizeBytes = 4096;

describeEachEngine("pithos HTTP: copy, move, versions", (databases) => {
  const harness = useHarness(databases, { blockSizeBytes });

  describe("copy", () => {
    it("PUT with X-Copy-From (with or without the leading slash): 201, X-Copied-From*, data, type and metadata", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.container("d");
      const source = await alice.put("/c/src.txt", "source data", { "x-object-meta-kind": "original" });
      for (const [header, target] of [["/c/src.txt", "/d/one"], ["c/src.txt", "/d/two"]] as const) {
        const copy = await alice.request("PUT", target, { body: "", headers: { "x-copy-from": header } });
        expect(copy.status).toBe(201);
        expect(copy.header("etag")).toBe(md5Hex("source data"));
        expect(copy.header("x-copied-from")).toBe("c/src.txt");
        expect(copy.header("x-copied-from-account")).toBeDefined();
        expect(copy.header("x-copied-from-last-modified")).toBe(source.header("last-modified"));
        const get = await alice.request("GET", target);
        expect(get.text()).toBe("source data");
        expect(get.header("content-type")).toBe("text/plain");
        expect(get.header("x-object-meta-kind")).toBe("original");
      }
      expect((await alice.request("GET", "/c/src.txt")).text()).toBe("source data");
    });

    it("COPY with Destination (what `swift copy` sends): 201 and the same object", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/src", "copied by verb", { "x-object-meta-a": "1" });
      const copy = await alice.request("COPY", "/c/src", { headers: { destination: "/c/dst", "x-fresh-metadata": "false", "x-object-meta-b": "2" } });
      expect(copy.status).toBe(201);
      expect(copy.header("x-copied-from")).toBe("c/src");
      const head = await alice.request("GET", "/c/dst");
      expect(head.text()).toBe("copied by verb");
      expect(head.header("x-object-meta-a")).toBe("1");
      expect(head.header("x-object-meta-b")).toBe("2");
      // X-Fresh-Metadata: true starts from the request's metadata alone.
      expect((await alice.request("COPY", "/c/src", { headers: { destination: "/c/fresh", "x-fresh-metadata": "true", "x-object-meta-b": "2" } })).status).toBe(201);
      const fresh = await alice.request("HEAD", "/c/fresh");
      expect(fresh.header("x-object-meta-a")).toBeUndefined();
      expect(fresh.header("x-object-meta-b")).toBe("2");
    });

    it("a missing source is 404; a malformed X-Copy-From or Destination is 412; a missing target container 404", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/src", "x");
      expect((await alice.request("PUT", "/c/dst", { body: "", headers: { "x-copy-from": "/c/nothing" } })).status).toBe(404);
      expect((await alice.request("PUT", "/c/dst", { body: "", headers: { "x-copy-from": "bad" } })).status).toBe(412);
      expect((await alice.request("COPY", "/c/src", { headers: { destination: "bad" } })).status).toBe(412);
      expect((await alice.request("COPY", "/c/src", {})).status).toBe(412);
      expect((await alice.request("COPY", "/c/src", { headers: { destination: "/nowhere/x" } })).status).toBe(404);
      expect((await alice.request("HEAD", "/c/dst")).status).toBe(404);
    });

    it("copy makes a new object (new UUID) over the same blocks: no block object is created", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const data = patternBytes(6 * blockSizeBytes + 77, 3);
      await alice.put("/c/big", data);
      const blocks = await blockObjects(harness().served);
      expect((await alice.request("PUT", "/c/copy1", { body: "", headers: { "x-copy-from": "/c/big" } })).status).toBe(201);
      expect((await alice.request("COPY", "/c/big", { headers: { destination: "/c/copy2" } })).status).toBe(201);
      expect(await blockObjects(harness().served)).toEqual(blocks);
      const original = await alice.request("HEAD", "/c/big");
      for (const name of ["copy1", "copy2"]) {
        const get = await alice.request("GET", `/c/${name}`);
        expect(get.body.equals(data)).toBe(true);
        expect(get.header("x-object-uuid")).not.toBe(original.header("x-object-uuid"));
        expect(get.header("x-object-hash")).toBe(original.header("x-object-hash"));
      }
    });
  });

  describe("move", () => {
    it("X-Move-From and MOVE: the target has the data and the source's UUID, the source is gone, no block is created", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.container("d");
      const data = patternBytes(4 * blockSizeBytes + 5, 4);
      await alice.put("/c/src", data, { "x-object-meta-k": "v" });
      const uuid = (await alice.request("HEAD", "/c/src")).header("x-object-uuid");
      const blocks = await blockObjects(harness().served);

      const moved = await alice.request("PUT", "/d/moved", { body: "", headers: { "x-move-from": "/c/src" } });
      expect(moved.status).toBe(201);
      expect((await alice.request("HEAD", "/c/src")).status).toBe(404);
      let get = await alice.request("GET", "/d/moved");
      expect(get.body.equals(data)).toBe(true);
      expect(get.header("x-object-uuid")).toBe(uuid);
      expect(get.header("x-object-meta-k")).toBe("v");

      const verb = await alice.request("MOVE", "/d/moved", { headers: { destination: "/c/back" } });
      expect(verb.status).toBe(201);
      expect((await alice.request("HEAD", "/d/moved")).status).toBe(404);
      get = await alice.request("GET", "/c/back");
      expect(get.body.equals(data)).toBe(true);
      expect(get.header("x-object-uuid")).toBe(uuid);
      expect(await blockObjects(harness().served)).toEqual(blocks);
      expect((await alice.request("HEAD", "/c")).header("x-container-object-count")).toBe("1");
      expect((await alice.request("HEAD", "/d")).header("x-container-object-count")).toBe("0");
    });

    it("moving a missing object is 404 and creates nothing", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      expect((await alice.request("PUT", "/c/dst", { body: "", headers: { "x-move-from": "/c/none" } })).status).toBe(404);
      expect((await alice.request("MOVE", "/c/none", { headers: { destination: "/c/dst" } })).status).toBe(404);
      expect((await alice.request("HEAD", "/c/dst")).status).toBe(404);
    });
  });

  describe("versions", () => {
    it("?version=list&format=json lists [serial, timestamp] of every version; ?version=N reads an old one", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const serials: number[] = [];
      for (const text of ["first", "second", "third"]) serials.push(Number((await alice.put("/c/o", text)).header("x-object-version")));
      const list = await alice.request("GET", "/c/o?version=list&format=json");
      expect(list.status).toBe(200);
      const { versions } = list.json<{ versions: Array<[number, string]> }>();
      expect(versions.map(([serial]) => serial)).toEqual(serials);
      for (const [, timestamp] of versions) expect(timestamp).toMatch(/^\d{10}\.\d+$/);
      const old = await alice.request("GET", `/c/o?version=${serials[0]}`);
      expect(old.status).toBe(200);
      expect(old.text()).toBe("first");
      expect(old.header("etag")).toBe(md5Hex("first"));
      expect(old.header("x-object-version")).toBe(String(serials[0]));
      const head = await alice.request("HEAD", `/c/o?version=${serials[1]}`);
      expect(head.header("content-length")).toBe("6");
      expect((await alice.request("GET", "/c/o")).text()).toBe("third");
      // Old versions' hashmaps too.
      expect((await alice.request("GET", `/c/o?version=${serials[0]}&hashmap&format=json`)).json<{ bytes: number }>().bytes).toBe(5);
    });

    it("a metadata POST makes a new version; the old one keeps its metadata", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const first = Number((await alice.put("/c/o", "data", { "x-object-meta-a": "1" })).header("x-object-version"));
      await alice.request("POST", "/c/o", { headers: { "x-object-meta-a": "2" } });
      const { versions } = (await alice.request("GET", "/c/o?version=list&format=json")).json<{ versions: Array<[number, string]> }>();
      expect(versions).toHaveLength(2);
      expect((await alice.request("HEAD", `/c/o?version=${first}`)).header("x-object-meta-a")).toBe("1");
      expect((await alice.request("HEAD", "/c/o")).header("x-object-meta-a")).toBe("2");
    });

    it("an unknown version is 404, a malformed one 400", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      await alice.put("/c/o", "x");
      expect((await alice.request("GET", "/c/o?version=999999999")).status).toBe(404);
      expect((await alice.request("GET", "/c/o?version=abc")).status).toBe(400);
      expect((await alice.request("GET", "/c/o?version=-1")).status).toBe(400);
    });

    it("versioning none keeps only the current version", async () => {
      const alice = await harness().user("alice");
      await alice.container("c", { "x-container-policy-versioning": "none" });
      const first = Number((await alice.put("/c/o", "one")).header("x-object-version"));
      const second = Number((await alice.put("/c/o", "two")).header("x-object-version"));
      const { versions } = (await alice.request("GET", "/c/o?version=list&format=json")).json<{ versions: Array<[number, string]> }>();
      expect(versions.map(([serial]) => serial)).toEqual([second]);
      expect((await alice.request("GET", `/c/o?version=${first}`)).status).toBe(404);
      expect((await alice.request("GET", "/c/o")).text()).toBe("two");
    });

    it("a version of another object is not readable through this one", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      const other = Number((await alice.put("/c/other", "secret")).header("x-object-version"));
      await alice.put("/c/o", "mine");
      expect((await alice.request("GET", `/c/o?version=${other}`)).status).toBe(404);
    });
  });
});
