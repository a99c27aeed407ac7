/**
 * The account over HTTP (swift.md 3, 8; synnefo.md B.2): HEAD counts and metadata, container
 * listings in three formats, POST metadata and Pithos+ groups.
 */
import { describe, expect, it } from "vitest";
import { describeEachEngine } from "../../db/testing/databases.ts";
import { expectedLastModified, headerBytes, listingDatePattern, transIdPattern, useHarness, xTimestampPattern } from "./testing/http.ts";

describeEachEngine("pithos HTTP: accounts", (databases) => {
  const harness = useHarness(databases);

  describe("HEAD", () => {
    it("a new account: 204, zero counts, X-Timestamp, Last-Modified rounded up, text/plain", async () => {
      const alice = await harness().user("alice");
      const head = await alice.request("HEAD", "");
      expect(head.status).toBe(204);
      expect(head.body.length).toBe(0);
      expect(head.header("content-type")).toBe("text/plain; charset=utf-8");
      expect(head.header("x-account-container-count")).toBe("0");
      expect(head.header("x-account-object-count")).toBe("0");
      expect(head.header("x-account-bytes-used")).toBe("0");
      expect(head.header("x-account-storage-policy-policy-0-container-count")).toBe("0");
      expect(head.header("x-account-storage-policy-policy-0-object-count")).toBe("0");
      expect(head.header("x-account-storage-policy-policy-0-bytes-used")).toBe("0");
      expect(head.header("accept-ranges")).toBe("bytes");
      expect(head.header("x-timestamp")).toMatch(xTimestampPattern);
      expect(head.header("x-trans-id")).toMatch(transIdPattern);
      expect(head.header("x-openstack-request-id")).toBe(head.header("x-trans-id"));
      expect(head.header("date")).toBeDefined();
    });

    it("counts containers, objects and bytes synchronously (swift.md 3)", async () => {
      const alice = await harness().user("alice");
      await alice.container("one");
      await alice.container("two");
      await alice.put("/one/a", "12345");
      await alice.put("/one/b", "123");
      await alice.put("/two/c", "");
      const head = await alice.request("HEAD", "");
      expect(head.header("x-account-container-count")).toBe("2");
      expect(head.header("x-account-object-count")).toBe("3");
      expect(head.header("x-account-bytes-used")).toBe("8");
      expect(head.header("x-account-storage-policy-policy-0-bytes-used")).toBe("8");
      // An overwrite replaces the bytes, a delete removes them.
      await alice.put("/one/a", "1");
      expect(await alice.request("DELETE", "/one/b").then((answer) => answer.status)).toBe(204);
      const after = await alice.request("HEAD", "");
      expect(after.header("x-account-object-count")).toBe("2");
      expect(after.header("x-account-bytes-used")).toBe("1");
    });

    it("Last-Modified is the X-Timestamp's ceiling second", async () => {
      const alice = await harness().user("alice");
      const head = await alice.request("HEAD", "");
      // The account's last change; its creation time is X-Timestamp, so only check the form.
      expect(head.header("last-modified")).toMatch(/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
      const xTimestamp = head.header("x-timestamp") as string;
      expect(Date.parse(head.header("last-modified") as string)).toBeGreaterThanOrEqual(Date.parse(expectedLastModified(xTimestamp)));
    });

    it("Vary: Accept on account and container HEADs and plain listings (swift.md 2)", async () => {
      const alice = await harness().user("alice");
      await alice.container("c");
      expect((await alice.request("HEAD", "")).header("vary")).toBe("Accept");
      expect((await alice.request("GET", "")).header("vary")).toBe("Accept");
      expect((await alice.request("HEAD", "/c")).header("vary")).toBe("Accept");
    });
  });

  describe("GET listing", () => {
    it("empty: text 204 with no body, JSON 200 [], XML an empty <account>", async () => {
      const alice = await harness().user("alice");
      const text = await alice.request("GET", "");
      expect(text.status).toBe(204);
      expect(text.body.length).toBe(0);
      const json = await alice.request("GET", "?format=json");
      expect(json.status).toBe(200);
      expect(json.header("content-type")).toBe("application/json; charset=utf-8");
      expect(json.text()).toBe("[]");
      const xml = await alice.request("GET", "?format=xml");
      expect(xml.status).toBe(200);
      expect(xml.header("content-type")).toBe("application/xml; charset=utf-8");
      expect(xml.text()).toBe(`<?xml version="1.0" encoding="UTF-8"?>\n<account name="${alice.account}">\n</account>`);
    });

    it("text: one name per line in byte order, with the account headers", async () => {
      const alice = await harness().user("alice");
      for (const name of ["b", "a", "é", "Z"]) await alice.container(name);
      const text = await alice.request("GET", "");
      expect(text.status).toBe(200);
      expect(text.header("content-type")).toBe("text/plain; charset=utf-8");
      expect(text.text()).toBe("Z\na\nb\né\n");
      expect(text.header("x-account-container-count")).toBe("4");
    });

    it("JSON: name, count, bytes, last_modified (Python json.dumps form, non-ASCII escaped)", async () => {
      const alice = await harness().user("alice");
      await alice.container("data");
      await alice.container("é");
      await alice.put("/data/x", "hello");
      const json = await alice.request("GET", "?format=json");
      expect(json.status).toBe(200);
      const entries = json.json<Array<Record<string, unknown>>>();
      expect(entries.map((entry) => entry["name"])).toEqual(["data", "é"]);
      expect(entries[0]).toMatchObject({ name: "data", count: 1, bytes: 5 });
      expect(entries[0]!["last_modified"]).toMatch(listingDatePattern);
      expect(json.text().startsWith('[{"name": "data", "count": 1, "bytes": 5, "last_modified": "')).toBe(true);
      expect(json.text()).toContain('"name": "\\u00e9"');
      // Accept: application/json is the same as format=json (swift.md 8).
      const accepted = await alice.request("GET", "", { headers: { accept: "application/json" } });
      expect(accepted.json()).toEqual(entries);
    });

    it("XML: <container> elements with name, count, bytes, last_modified", async () => {
      const alice = await harness().user("alice");
      await alice.container("a&b");
      const xml = await alice.request("GET", "?format=xml");
      expect(xml.status).toBe(200);
      expect(xml.text()).toMatch(
        new RegExp(
          `^<\\?xml version="1.0" encoding="UTF-8"\\?>\\n<account name="${alice.account}">\\n` +
            "<container><name>a&amp;b</name><count>0</count><bytes>0</bytes><last_modified>\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{6}</last_modified></container>\\n</account>$",
        ),
      );
    });

    it("prefix, marker, end_marker, limit, reverse; limit above 10000 → 412", async () => {
      const alice = await harness().user("alice");
      for (const name of ["a1", "a2", "a3", "b1"]) await alice.container(name);
      expect((await alice.request("GET", "?prefix=a")).text()).toBe("a1\na2\na3\n");
      expect((await alice.request("GET", "?marker=a2")).text()).toBe("a3\nb1\n");
      expect((await alice.request("GET", "?end_marker=a3")).text()).toBe("a1\na2\n");
      expect((await alice.request("GET", "?limit=2")).text()).toBe("a1\na2\n");
      expect((await alice.request("GET", "?reverse=true&limit=2")).text()).toBe("b1\na3\n");
      const tooMany = await alice.request("GET", "?limit=10001");
      expect(tooMany.status).toBe(412);
      expect(tooMany.text()).toBe("Maximum limit is 10000");
      expect((await alice.request("GET", "?limit=abc")).status).toBe(200);
      expect((await alice.request("GET", "?prefix=zz")).status).toBe(204);
      expect((await alice.request("GET", "?prefix=zz&format=json")).text()).toBe("[]");
    });
  });

  describe("POST metadata", () => {
    it("sets, merges and removes X-Account-Meta-* (204; empty value or X-Remove-… removes)", async () => {
      const alice = await harness().user("alice");
      const set = await alice.request("POST", "", { headers: { "x-account-meta-color": "blue", "x-account-meta-size": "big", "x-account-meta-shape": "round" } });
      expect(set.status).toBe(204);
      let head = await alice.request("HEAD", "");
      expect(head.header("x-account-meta-color")).toBe("blue");
      expect(head.header("x-account-meta-size")).toBe("big");
      // A POST naming one item keeps the others (Swift merges account metadata).
      expect((await alice.request("POST", "", { headers: { "x-account-meta-color": "red" } })).status).toBe(204);
      head = await alice.request("HEAD", "");
      expect(head.header("x-account-meta-color")).toBe("red");
      expect(head.header("x-account-meta-size")).toBe("big");
      expect((await alice.request("POST", "", { headers: { "x-remove-account-meta-color": "x", "x-account-meta-size": "" } })).status).toBe(204);
      head = await alice.request("HEAD", "");
      expect(head.header("x-account-meta-color")).toBeUndefined();
      expect(head.header("x-account-meta-size")).toBeUndefined();
      expect(head.header("x-account-meta-shape")).toBe("round");
    });

    it("UTF-8 values round-trip byte for byte; names come back title-cased", async () => {
      const alice = await harness().user("alice");
      expect((await alice.request("POST", "", { headers: { "x-account-meta-city_name": headerBytes("Αθήνα €") } })).status).toBe(204);
      const head = await alice.request("HEAD", "");
      expect(head.header("x-account-meta-city-name")).toBe("Αθήνα €");
      expect(Object.keys(head.headers)).toContain("x-account-meta-city-name");
      expect(head.header("x-account-meta-city-name")).toBe("Αθήνα €");
    });

    it("a metadata name over 128 bytes or a value over 256 is 400 and changes nothing", async () => {
      const alice = await harness().user("alice");
      const longName = await alice.request("POST", "", { headers: { [`x-account-meta-${"n".repeat(129)}`]: "v", "x-account-meta-ok": "1" } });
      expect(longName.status).toBe(400);
      expect(longName.text()).toMatch(/^Metadata name too long/);
      const longValue = await alice.request("POST", "", { headers: { "x-account-meta-k": "v".repeat(257) } });
      expect(longValue.status).toBe(400);
      const head = await alice.request("HEAD", "");
      expect(head.header("x-account-meta-ok")).toBeUndefined();
      expect(head.header("x-account-meta-k")).toBeUndefined();
    });
  });

  describe("groups (Pithos+)", () => {
    it("X-Account-Group-<name>: members are listed on HEAD", async () => {
      const alice = await harness().user("alice");
      const bob = await harness().user("bob");
      const carol = await harness().user("carol");
      const set = await alice.request("POST", "?update", { headers: { "x-account-group-team": `${bob.uuid},${carol.uuid}`, "x-account-group-solo": bob.uuid } });
      expect(set.status).toBe(204);
      const head = await alice.request("HEAD", "");
      // Members in any order (Pithos+ keeps them as rows).
      expect(head.header("x-account-group-team")?.split(",").sort()).toEqual([bob.uuid, carol.uuid].sort());
      expect(head.header("x-account-group-solo")).toBe(bob.uuid);
    });

    it("an empty X-Account-Group-<name> removes that group, keeping the others (synnefo.md B.5)", async () => {
      const alice = await harness().user("alice");
      const bob = await harness().user("bob");
      await alice.request("POST", "?update", { headers: { "x-account-group-team": bob.uuid, "x-account-group-solo": bob.uuid } });
      expect((await alice.request("POST", "?update", { headers: { "x-account-group-team": "" } })).status).toBe(204);
      const head = await alice.request("HEAD", "");
      expect(head.header("x-account-group-team")).toBeUndefined();
      expect(head.header("x-account-group-solo")).toBe(bob.uuid);
    });

    it("group names with `-` or `_` are 400 (Pithos+: bad characters)", async () => {
      const alice = await harness().user("alice");
      const bad = await alice.request("POST", "?update", { headers: { "x-account-group-my_team": "someone" } });
      expect(bad.status).toBe(400);
      expect((await alice.request("HEAD", "")).header("x-account-group-my-team")).toBeUndefined();
    });
  });
});
