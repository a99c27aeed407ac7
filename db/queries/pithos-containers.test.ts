import { randomUUID } from "node:crypto";
import { sql } from "kysely";
import { expect, it } from "vitest";
import { openDatabase } from "../connect.ts";
import { migrateToLatest } from "../migrations/index.ts";
import { describeEachEngine } from "../testing/databases.ts";
import { rejectsWith } from "../testing/fixtures.ts";
import { ensureAccount, getAccount, setAccountGroups, setAccountMeta, setAccountQuota } from "./pithos-accounts.ts";
import {
  createContainer,
  deleteContainer,
  getContainer,
  getContainerById,
  listContainers,
  updateContainer,
  type ContainerListingEntry,
} from "./pithos-containers.ts";
import { compareNames } from "./pithos-listing.ts";
import { deleteObject, putVersion, type NewPithosVersion } from "./pithos-objects.ts";

const t0 = 1_700_000_000_000;

function data(mapName: string, sizeBytes: number): NewPithosVersion {
  return { mapName, sizeBytes, contentHash: "e3b0c442", etag: "d41d8cd9", contentType: "application/octet-stream" };
}

const names = (entries: ContainerListingEntry[]) => entries.map((entry) => (entry.kind === "container" ? entry.name : `[${entry.subdir}]`));

/** Non-ASCII names whose byte order differs from most locales' and from UTF-16's. */
const unicodeNames = ["é", "z", "Z", "a", "a-b", "a.b", "😀", "\ufffd", "b", "B", "ä", "0"];

describeEachEngine("pithos accounts and containers", (databases) => {
  it("creates an account on first use, with totals over its containers", async () => {
    const db = await databases.open();
    const alice = randomUUID();
    expect(await getAccount(db, alice)).toBeUndefined();
    await ensureAccount(db, alice, t0);
    await ensureAccount(db, alice, t0 + 5); // idempotent
    expect(await getAccount(db, alice)).toEqual({
      account: alice,
      meta: {},
      groups: {},
      quotaBytes: null,
      createdAt: t0,
      modifiedAt: t0,
      containerCount: 0,
      objectCount: 0,
      bytesUsed: 0,
    });
    const { container: photos } = await createContainer(db, alice, "photos", {}, t0 + 10);
    const { container: docs } = await createContainer(db, alice, "docs", {}, t0 + 11);
    await putVersion(db, photos.id, "1.jpg", data("m1", 100), { modifiedBy: alice }, t0 + 20);
    await putVersion(db, photos.id, "1.jpg", data("m2", 150), { modifiedBy: alice }, t0 + 21); // history is free
    await putVersion(db, docs.id, "a.txt", data("m3", 7), { modifiedBy: alice }, t0 + 22);
    expect(await getAccount(db, alice)).toMatchObject({ containerCount: 2, objectCount: 2, bytesUsed: 157, modifiedAt: t0 + 22 });
    await deleteObject(db, docs.id, "a.txt", {}, t0 + 30);
    expect(await getAccount(db, alice)).toMatchObject({ containerCount: 2, objectCount: 1, bytesUsed: 150, modifiedAt: t0 + 30 });
    await rejectsWith(ensureAccount(db, "not-a-uuid"), "EINVALID");
  });

  it("merges or replaces account meta; an empty value removes a key", async () => {
    const db = await databases.open();
    const alice = randomUUID();
    expect((await setAccountMeta(db, alice, { color: "blue", size: "big" }, {}, t0)).meta).toEqual({ color: "blue", size: "big" });
    expect((await setAccountMeta(db, alice, { color: "red", size: "" }, {}, t0 + 1)).meta).toEqual({ color: "red" });
    const replaced = await setAccountMeta(db, alice, { shape: "round", gone: "" }, { replace: true }, t0 + 2);
    expect(replaced).toMatchObject({ meta: { shape: "round" }, modifiedAt: t0 + 2 });
    await rejectsWith(setAccountMeta(db, alice, { ["k".repeat(129)]: "v" }), "EINVALID");
    await rejectsWith(setAccountMeta(db, alice, { k: "v".repeat(257) }), "EINVALID");
    await rejectsWith(setAccountMeta(db, alice, { k: 1 as unknown as string }), "EINVALID");
    await rejectsWith(setAccountMeta(db, alice, Object.fromEntries(Array.from({ length: 91 }, (_, i) => [`k${i}`, "v"]))), "EINVALID");
  });

  it("keeps groups: merged by name, replaced whole, removed when empty", async () => {
    const db = await databases.open();
    const [alice, bob, carol] = [randomUUID(), randomUUID(), randomUUID()].sort();
    const first = await setAccountGroups(db, alice!, { team: [carol!, bob!, bob!], friends: [carol!] });
    expect(first.groups).toEqual({ friends: [carol], team: [bob, carol] });
    const merged = await setAccountGroups(db, alice!, { team: [bob!], friends: [] });
    expect(merged.groups).toEqual({ team: [bob] });
    const replaced = await setAccountGroups(db, alice!, { other: [carol!] }, { replace: true });
    expect(replaced.groups).toEqual({ other: [carol] });
    await rejectsWith(setAccountGroups(db, alice!, { "bad:name": [bob!] }), "EINVALID");
    await rejectsWith(setAccountGroups(db, alice!, { "bad name": [bob!] }), "EINVALID");
    await rejectsWith(setAccountGroups(db, alice!, { team: ["bob"] }), "EINVALID");
    expect((await getAccount(db, alice!))!.groups).toEqual({ other: [carol] });
  });

  it("sets the account quota (null: unlimited)", async () => {
    const db = await databases.open();
    const alice = randomUUID();
    expect((await setAccountQuota(db, alice, 1000)).quotaBytes).toBe(1000);
    expect((await setAccountQuota(db, alice, null)).quotaBytes).toBeNull();
    await rejectsWith(setAccountQuota(db, alice, -1), "EINVALID");
  });

  it("creates containers, or finds them and applies the settings given", async () => {
    const db = await databases.open();
    const alice = randomUUID();
    const created = await createContainer(db, alice, "photos", { meta: { a: "1", empty: "" } }, t0);
    expect(created).toEqual({
      created: true,
      container: {
        id: expect.any(Number),
        account: alice,
        name: "photos",
        versioning: "auto",
        quotaBytes: null,
        meta: { a: "1" },
        objectCount: 0,
        bytesUsed: 0,
        createdAt: t0,
        modifiedAt: t0,
      },
    });
    const again = await createContainer(db, alice, "photos", { versioning: "none", quotaBytes: 10, meta: { b: "2" } }, t0 + 5);
    expect(again.created).toBe(false);
    expect(again.container).toMatchObject({ id: created.container.id, versioning: "none", quotaBytes: 10, meta: { a: "1", b: "2" }, modifiedAt: t0 + 5 });
    const untouched = await createContainer(db, alice, "photos", {}, t0 + 9);
    expect(untouched.container.modifiedAt).toBe(t0 + 5);
    expect(await getContainer(db, alice, "photos")).toEqual(again.container);
    expect(await getContainerById(db, created.container.id)).toEqual(again.container);
    expect(await getContainer(db, alice, "nothing")).toBeUndefined();
    expect(await getContainer(db, randomUUID(), "photos")).toBeUndefined();
    expect((await getAccount(db, alice))!.containerCount).toBe(1);
  });

  it("refuses bad container names: empty, slash, control characters, over 256 bytes", async () => {
    const db = await databases.open();
    const alice = randomUUID();
    for (const name of ["", "a/b", "a\nb", "é".repeat(129), "\ud800"]) await rejectsWith(createContainer(db, alice, name), "EINVALID");
    expect((await createContainer(db, alice, "é".repeat(128))).created).toBe(true); // 256 bytes
    await rejectsWith(createContainer(db, alice, "c", { versioning: "sometimes" as "auto" }), "EINVALID");
    await rejectsWith(createContainer(db, alice, "c", { quotaBytes: 1.5 }), "EINVALID");
  });

  it("updates meta (merged or replaced) and policies", async () => {
    const db = await databases.open();
    const alice = randomUUID();
    const { container } = await createContainer(db, alice, "c", { meta: { a: "1", b: "2" } }, t0);
    expect(await updateContainer(db, container.id, { meta: { a: "", c: "3" } }, t0 + 1)).toMatchObject({ meta: { b: "2", c: "3" }, modifiedAt: t0 + 1 });
    expect(await updateContainer(db, container.id, { meta: { d: "4" }, replaceMeta: true }, t0 + 2)).toMatchObject({ meta: { d: "4" } });
    expect(await updateContainer(db, container.id, { versioning: "none", quotaBytes: 5 }, t0 + 3)).toMatchObject({
      meta: { d: "4" },
      versioning: "none",
      quotaBytes: 5,
    });
    expect(await updateContainer(db, container.id, { quotaBytes: null }, t0 + 4)).toMatchObject({ quotaBytes: null });
    await rejectsWith(updateContainer(db, 999_999, { versioning: "none" }), "ENOT_FOUND");
  });

  it("deletes an empty container with its history, returning the maps no version uses", async () => {
    const db = await databases.open();
    const alice = randomUUID();
    const { container } = await createContainer(db, alice, "c");
    await putVersion(db, container.id, "x", data("m1", 1), { modifiedBy: alice }, t0);
    await rejectsWith(deleteContainer(db, alice, "c"), "ECONFLICT");
    // A metadata change: a second version on the same map.
    await putVersion(db, container.id, "x", { ...data("m1", 1), meta: { k: "v" } }, { modifiedBy: alice }, t0 + 1);
    await putVersion(db, container.id, "x", data("m2", 2), { modifiedBy: alice }, t0 + 2);
    await deleteObject(db, container.id, "x", {}, t0 + 3);
    expect((await deleteContainer(db, alice, "c", t0 + 4)).sort()).toEqual(["m1", "m2"]);
    expect(await getContainer(db, alice, "c")).toBeUndefined();
    await rejectsWith(deleteContainer(db, alice, "c"), "ENOT_FOUND");
    const leftovers = await db.kysely.selectFrom("pithos_versions").select(sql<number>`count(*)`.as("n")).executeTakeFirstOrThrow();
    expect(Number(leftovers.n)).toBe(0);
  });

  it("deletes a container whose only objects have expired", async () => {
    const db = await databases.open();
    const alice = randomUUID();
    const { container } = await createContainer(db, alice, "c");
    await putVersion(db, container.id, "x", { ...data("m1", 1), deleteAt: t0 + 10 }, { modifiedBy: alice }, t0);
    await rejectsWith(deleteContainer(db, alice, "c", t0 + 9), "ECONFLICT");
    expect(await deleteContainer(db, alice, "c", t0 + 10)).toEqual(["m1"]);
  });

  it("lists containers in UTF-8 byte order, with prefix, delimiter, markers, limit and reverse", async () => {
    const db = await databases.open();
    const alice = randomUUID();
    for (const name of [...unicodeNames, "logs-2024", "logs-2025", "logs"]) await createContainer(db, alice, name);
    const all = [...unicodeNames, "logs-2024", "logs-2025", "logs"].sort(compareNames);
    expect(names(await listContainers(db, alice))).toEqual(all);
    expect(all.slice(0, 6)).toEqual(["0", "B", "Z", "a", "a-b", "a.b"]);
    expect(all.slice(-4)).toEqual(["ä", "é", "\ufffd", "😀"]);
    expect(names(await listContainers(db, alice, { reverse: true }))).toEqual([...all].reverse());
    expect(names(await listContainers(db, alice, { prefix: "logs" }))).toEqual(["logs", "logs-2024", "logs-2025"]);
    expect(names(await listContainers(db, alice, { prefix: "logs", delimiter: "-" }))).toEqual(["logs", "[logs-]"]);
    expect(names(await listContainers(db, alice, { marker: "z", limit: 2 }))).toEqual(["ä", "é"]);
    expect(names(await listContainers(db, alice, { marker: "a", endMarker: "b" }))).toEqual(["a-b", "a.b"]);
    expect(names(await listContainers(db, alice, { marker: "b", reverse: true, limit: 3 }))).toEqual(["a.b", "a-b", "a"]);
    expect(names(await listContainers(db, randomUUID()))).toEqual([]);
    const [entry] = await listContainers(db, alice, { limit: 1 });
    expect(entry).toMatchObject({ kind: "container", name: "0", container: { account: alice, name: "0", objectCount: 0 } });
  });

  it.runIf(databases.engine === "postgres")("keeps byte order on a PostgreSQL database whose collation is not C", async () => {
    // The test server's databases are C already; an ICU one orders `a` before `B`.
    const url = await databases.freshUrl();
    const admin = await databases.connect(url);
    const icuName = `${/@\/([^/?]+)\?/.exec(url)![1]!}_icu`; // postgresql://user@/name?host=…
    await sql`create database ${sql.id(icuName)} template template0 locale_provider icu icu_locale 'en-US' encoding 'UTF8'`.execute(
      admin.kysely,
    );
    const icuUrl = url.replace(/@\/[^/?]+\?/, `@/${icuName}?`);
    const db = await openDatabase(icuUrl);
    try {
      const plain = await sql<{ x: string }>`select x from (values ('a'), ('B'), ('é'), ('z')) as t(x) order by x`.execute(db.kysely);
      expect(plain.rows.map((row) => row.x)).toEqual(["a", "B", "é", "z"]); // the database's own order
      await migrateToLatest(db);
      const alice = randomUUID();
      for (const name of unicodeNames) await createContainer(db, alice, name);
      expect(names(await listContainers(db, alice))).toEqual([...unicodeNames].sort(compareNames));
      expect(names(await listContainers(db, alice, { marker: "Z", endMarker: "b" }))).toEqual(["a", "a-b", "a.b"]);
    } finally {
      await db.close();
    }
  });
});
