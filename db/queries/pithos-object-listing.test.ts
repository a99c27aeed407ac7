import { randomUUID } from "node:crypto";
import fc from "fast-check";
import { expect, it } from "vitest";
import type { MetadataDatabase } from "../connect.ts";
import { describeEachEngine } from "../testing/databases.ts";
import { createContainer } from "./pithos-containers.ts";
import { listObjects, type ObjectListingEntry, type ObjectListingOptions } from "./pithos-object-listing.ts";
import { compareNames, listNames, type ListingEntry } from "./pithos-listing.ts";
import { deleteObject, putVersion, type NewPithosVersion } from "./pithos-objects.ts";
import { setPublic, setSharing } from "./pithos-sharing.ts";

const t0 = 1_700_000_000_000;

function data(mapName: string, sizeBytes = 1, extra: Partial<NewPithosVersion> = {}): NewPithosVersion {
  return { mapName, sizeBytes, contentHash: "h", etag: "e", contentType: "text/plain", ...extra };
}

const flat = (entries: ObjectListingEntry[]) => entries.map((entry) => (entry.kind === "object" ? entry.path : `[${entry.subdir}]`));
const flatModel = (entries: Array<ListingEntry<string>>) => entries.map((entry) => (entry.kind === "row" ? entry.name : `[${entry.subdir}]`));

/** Characters where byte order, UTF-16 order and locales disagree, and the delimiters. */
const alphabet = ["a", "b", "z", "Z", "/", "-", "é", "\ufffd", "😀", "0"];
const nameArbitrary = fc.array(fc.constantFrom(...alphabet), { minLength: 1, maxLength: 4 }).map((chars) => chars.join(""));

function optionsArbitrary(names: readonly string[]): fc.Arbitrary<ObjectListingOptions> {
  const someName = names.length > 0 ? fc.oneof(fc.constantFrom(...names), nameArbitrary) : nameArbitrary;
  return fc.record(
    {
      prefix: fc.oneof(fc.constant(""), someName.chain((name) => fc.nat(name.length).map((n) => Array.from(name).slice(0, n).join("")))),
      delimiter: fc.constantFrom("/", "-", "a/"),
      marker: someName,
      endMarker: someName,
      limit: fc.integer({ min: 1, max: 8 }),
      reverse: fc.boolean(),
    },
    { requiredKeys: [] },
  );
}

async function putAll(db: MetadataDatabase, containerId: number, paths: readonly string[], modifiedBy: string): Promise<void> {
  for (const path of paths) await putVersion(db, containerId, path, data(`map-${path}`), { modifiedBy }, t0);
}

describeEachEngine("pithos object listings", (databases) => {
  it("list current objects in UTF-8 byte order, with roll-up, markers and reverse", async () => {
    const db = await databases.open();
    const alice = randomUUID();
    const { container } = await createContainer(db, alice, "c");
    const paths = ["é", "z", "Z", "a/b", "a-b", "a/c/d", "😀", "\ufffd", "a", "folder/", "b"];
    await putAll(db, container.id, paths, alice);
    const sorted = [...paths].sort(compareNames);
    expect(sorted).toEqual(["Z", "a", "a-b", "a/b", "a/c/d", "b", "folder/", "z", "é", "\ufffd", "😀"]);
    expect(flat(await listObjects(db, container.id))).toEqual(sorted);
    expect(flat(await listObjects(db, container.id, { reverse: true }))).toEqual([...sorted].reverse());
    expect(flat(await listObjects(db, container.id, { delimiter: "/" }))).toEqual(["Z", "a", "a-b", "[a/]", "b", "[folder/]", "z", "é", "\ufffd", "😀"]);
    expect(flat(await listObjects(db, container.id, { prefix: "a/", delimiter: "/" }))).toEqual(["a/b", "[a/c/]"]);
    expect(flat(await listObjects(db, container.id, { path: "a" }))).toEqual(["a/b", "[a/c/]"]);
    expect(flat(await listObjects(db, container.id, { marker: "z", limit: 2 }))).toEqual(["é", "\ufffd"]);
    expect(flat(await listObjects(db, container.id, { marker: "a", endMarker: "b", delimiter: "/" }))).toEqual(["a-b", "[a/]"]);
    const [first] = await listObjects(db, container.id, { limit: 1 });
    expect(first).toMatchObject({ kind: "object", path: "Z", object: { path: "Z", sharing: null }, version: { mapName: "map-Z", state: "current" } });
    // Deleted and expired objects are not listed.
    await deleteObject(db, container.id, "z");
    await putVersion(db, container.id, "b", data("b2", 1, { deleteAt: t0 + 10 }), { modifiedBy: alice }, t0 + 1);
    expect(flat(await listObjects(db, container.id, { marker: "a/c/d", limit: 3 }, t0 + 10))).toEqual(["folder/", "é", "\ufffd"]);
    expect(flat(await listObjects(db, container.id, { marker: "a/c/d", limit: 3 }, t0 + 9))).toEqual(["b", "folder/", "é"]);
    expect(await listObjects(db, 999_999)).toEqual([]);
  });

  it("agree with the in-memory model for any names and options (property)", async () => {
    const db = await databases.open();
    const alice = randomUUID();
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc
          .uniqueArray(nameArbitrary, { maxLength: 14 })
          .chain((names) => fc.tuple(fc.constant(names), fc.array(optionsArbitrary(names), { minLength: 1, maxLength: 6 }))),
        async ([names, optionsList]) => {
          const { container } = await createContainer(db, alice, `run-${++run}`);
          await putAll(db, container.id, names, alice);
          for (const options of optionsList) {
            const listed = await listObjects(db, container.id, options);
            expect(flat(listed), JSON.stringify(options)).toEqual(flatModel(listNames(names, options, options.limit ?? 10_000)));
          }
        },
      ),
      { numRuns: databases.engine === "postgres" ? 40 : 80 },
    );
  });

  it("list what was current at a time (until)", async () => {
    const db = await databases.open();
    const alice = randomUUID();
    const { container } = await createContainer(db, alice, "c");
    await putVersion(db, container.id, "a", data("a1"), { modifiedBy: alice }, t0 + 10);
    await putVersion(db, container.id, "b", data("b1"), { modifiedBy: alice }, t0 + 20);
    await putVersion(db, container.id, "a", data("a2"), { modifiedBy: alice }, t0 + 30);
    await deleteObject(db, container.id, "b", {}, t0 + 40);
    await putVersion(db, container.id, "c", data("c1", 1, { deleteAt: t0 + 60 }), { modifiedBy: alice }, t0 + 50);
    const at = async (untilMs: number) =>
      (await listObjects(db, container.id, { untilMs })).map((entry) => (entry.kind === "object" ? entry.version.mapName : entry.subdir));
    expect(await at(t0 + 5)).toEqual([]);
    expect(await at(t0 + 10)).toEqual(["a1"]);
    expect(await at(t0 + 25)).toEqual(["a1", "b1"]);
    expect(await at(t0 + 30)).toEqual(["a2", "b1"]);
    expect(await at(t0 + 40)).toEqual(["a2"]);
    expect(await at(t0 + 55)).toEqual(["a2", "c1"]);
    expect(await at(t0 + 60)).toEqual(["a2"]);
  });

  it("filter shared (own, or inherited from directory objects) and public objects", async () => {
    const db = await databases.open();
    const alice = randomUUID();
    const bob = randomUUID();
    const { container } = await createContainer(db, alice, "c");
    await putAll(db, container.id, ["docs/a", "docs/b/c", "docsx", "pics/1", "other", "file", "file/under"], alice);
    // Directory objects pass their sharing on; the plain file `file` does not (synnefo.md B.5).
    for (const directory of ["docs", "pics/"]) {
      await putVersion(db, container.id, directory, { ...data(`map-${directory}`), contentType: "application/directory" }, { modifiedBy: alice }, t0);
    }
    const file = (await listObjects(db, container.id, { prefix: "file", limit: 1 }))[0]!;
    await setSharing(db, file.kind === "object" ? file.object.id : 0, { read: [bob], write: [] });
    const docs = await listObjects(db, container.id, { prefix: "docs", limit: 1 });
    await setSharing(db, docs[0]!.kind === "object" ? docs[0]!.object.id : 0, { read: [bob], write: [] });
    const pics = (await listObjects(db, container.id, { prefix: "pics/", limit: 1 }))[0]!;
    await setSharing(db, pics.kind === "object" ? pics.object.id : 0, { read: ["*"], write: [] });
    const other = (await listObjects(db, container.id, { prefix: "other" }))[0]!;
    const token = await setPublic(db, other.kind === "object" ? other.object.id : 0, true);
    expect(flat(await listObjects(db, container.id, { sharedOnly: true }))).toEqual(["docs", "docs/a", "docs/b/c", "file", "pics/", "pics/1"]);
    expect(flat(await listObjects(db, container.id, { sharedOnly: true, delimiter: "/" }))).toEqual(["docs", "[docs/]", "file", "[pics/]"]);
    const publicOnes = await listObjects(db, container.id, { publicOnly: true });
    expect(flat(publicOnes)).toEqual(["other"]);
    expect(publicOnes[0]).toMatchObject({ object: { publicToken: token } });
    const [shared] = await listObjects(db, container.id, { sharedOnly: true, limit: 1 });
    expect(shared).toMatchObject({ object: { sharing: { read: [bob], write: [] } } });
  });

  it("page through a big subdir without reading it", async () => {
    const db = await databases.open();
    const alice = randomUUID();
    const { container } = await createContainer(db, alice, "c");
    await putAll(db, container.id, ["a", ...Array.from({ length: 300 }, (_, i) => `big/${i}`), "c"], alice);
    expect(flat(await listObjects(db, container.id, { delimiter: "/" }))).toEqual(["a", "[big/]", "c"]);
    const pages: string[] = [];
    let marker: string | undefined;
    for (;;) {
      const page = flat(await listObjects(db, container.id, { prefix: "big/", limit: 128, ...(marker === undefined ? {} : { marker }) }));
      pages.push(...page);
      if (page.length < 128) break;
      marker = page.at(-1);
    }
    expect(pages).toEqual(Array.from({ length: 300 }, (_, i) => `big/${i}`).sort(compareNames));
  });
});
