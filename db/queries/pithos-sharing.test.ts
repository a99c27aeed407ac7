import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { MetadataDatabase } from "../connect.ts";
import { describeEachEngine } from "../testing/databases.ts";
import { rejectsWith } from "../testing/fixtures.ts";
import { setAccountGroups } from "./pithos-accounts.ts";
import { createContainer } from "./pithos-containers.ts";
import { deleteObject, putVersion, renameObject, type NewPithosVersion } from "./pithos-objects.ts";
import {
  accessFor,
  effectiveSharing,
  getByPublicToken,
  listSharedWithMe,
  newPublicToken,
  parentsOf,
  setPublic,
  setSharing,
} from "./pithos-sharing.ts";

const t0 = 1_700_000_000_000;

function data(mapName: string, extra: Partial<NewPithosVersion> = {}): NewPithosVersion {
  return { mapName, sizeBytes: 1, contentHash: "h", etag: "e", contentType: "application/directory", ...extra };
}

async function put(db: MetadataDatabase, containerId: number, path: string, owner: string): Promise<number> {
  return (await putVersion(db, containerId, path, data(`map-${path}`), { modifiedBy: owner }, t0)).object.id;
}

describe("parentsOf", () => {
  it("lists the paths sharing is inherited from, nearest first", () => {
    expect(parentsOf("a/b/c")).toEqual(["a/b/", "a/b", "a/", "a"]);
    expect(parentsOf("a/b/")).toEqual(["a/", "a"]);
    expect(parentsOf("a")).toEqual([]);
    expect(parentsOf("/x")).toEqual(["/"]);
    expect(parentsOf("a//b")).toEqual(["a//", "a/", "a"]);
  });

  it("makes public tokens of 16 characters [0-9a-zA-Z]", () => {
    const tokens = new Set(Array.from({ length: 100 }, () => newPublicToken()));
    expect(tokens.size).toBe(100);
    for (const token of tokens) expect(token).toMatch(/^[0-9a-zA-Z]{16}$/);
  });
});

describeEachEngine("pithos sharing", (databases) => {
  it("sets, replaces and removes an object's sharing", async () => {
    const db = await databases.open();
    const [alice, bob, carol] = [randomUUID(), randomUUID(), randomUUID()];
    const { container } = await createContainer(db, alice, "c");
    const id = await put(db, container.id, "f", alice);
    expect(await setSharing(db, id, { read: [carol, bob, "*", carol], write: [`${alice}:team`] })).toEqual({
      read: ["*", bob, carol].sort(),
      write: [`${alice}:team`],
    });
    expect(await effectiveSharing(db, container.id, "f")).toEqual({
      sharing: { read: ["*", bob, carol].sort(), write: [`${alice}:team`] },
      objectId: id,
      path: "f",
    });
    expect(await setSharing(db, id, { read: [], write: [bob] })).toEqual({ read: [], write: [bob] });
    expect(await setSharing(db, id, null)).toBeNull();
    expect(await effectiveSharing(db, container.id, "f")).toBeUndefined();
    await rejectsWith(setSharing(db, id, { read: ["bob"], write: [] }), "EINVALID");
    await rejectsWith(setSharing(db, id, { read: [`${alice}:bad,group`], write: [] }), "EINVALID");
    await rejectsWith(setSharing(db, 999_999, { read: [bob], write: [] }), "ENOT_FOUND");
    await deleteObject(db, container.id, "f");
    await rejectsWith(setSharing(db, id, { read: [bob], write: [] }), "ENOT_FOUND");
  });

  it("inherits from the nearest parent with sharing, and says which", async () => {
    const db = await databases.open();
    const [alice, bob, carol] = [randomUUID(), randomUUID(), randomUUID()];
    const { container } = await createContainer(db, alice, "c");
    const a = await put(db, container.id, "a", alice);
    const ab = await put(db, container.id, "a/b/", alice);
    await put(db, container.id, "a/b/c", alice);
    await put(db, container.id, "ab", alice);
    await setSharing(db, a, { read: [bob], write: [] });
    expect(await effectiveSharing(db, container.id, "a/b/c")).toMatchObject({ objectId: a, path: "a" });
    expect(await effectiveSharing(db, container.id, "a/new/file")).toMatchObject({ path: "a" }); // need not exist
    expect(await effectiveSharing(db, container.id, "ab")).toBeUndefined(); // "a" is no parent of "ab"
    await setSharing(db, ab, { read: [carol], write: [] });
    expect(await effectiveSharing(db, container.id, "a/b/c")).toEqual({ sharing: { read: [carol], write: [] }, objectId: ab, path: "a/b/" });
    expect(await effectiveSharing(db, container.id, "a/x")).toMatchObject({ path: "a" });
    expect(await accessFor(db, bob, alice, container.id, "a/b/c")).toBe("none"); // the nearest decides
    expect(await accessFor(db, carol, alice, container.id, "a/b/c")).toBe("read");
  });

  it("decides access: owner, write (implies read), read, none; through uuids, groups and *", async () => {
    const db = await databases.open();
    const [alice, bob, carol, dave] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    const { container } = await createContainer(db, alice, "c");
    const id = await put(db, container.id, "f", alice);
    await setAccountGroups(db, alice, { team: [carol] });
    await setSharing(db, id, { read: [bob], write: [`${alice}:team`] });
    expect(await accessFor(db, alice, alice, container.id, "f")).toBe("owner");
    expect(await accessFor(db, bob, alice, container.id, "f")).toBe("read");
    expect(await accessFor(db, carol, alice, container.id, "f")).toBe("write");
    expect(await accessFor(db, dave, alice, container.id, "f")).toBe("none");
    expect(await accessFor(db, dave, alice, container.id, "other")).toBe("none");
    await setSharing(db, id, { read: ["*"], write: [] });
    expect(await accessFor(db, dave, alice, container.id, "f")).toBe("read");
    // Group membership is read at check time.
    await setSharing(db, id, { read: [], write: [`${alice}:team`] });
    await setAccountGroups(db, alice, { team: [dave] });
    expect(await accessFor(db, carol, alice, container.id, "f")).toBe("none");
    expect(await accessFor(db, dave, alice, container.id, "f")).toBe("write");
    await rejectsWith(accessFor(db, bob, bob, container.id, "f"), "EINVALID"); // not bob's container
    await rejectsWith(accessFor(db, bob, alice, 999_999, "f"), "ENOT_FOUND");
  });

  it("lists the accounts that share with a user", async () => {
    const db = await databases.open();
    const [alice, bob, carol, dave, erin] = [randomUUID(), randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    const shareFrom = async (owner: string, entries: string[]) => {
      const { container } = await createContainer(db, owner, "c", {}, t0);
      const id = await put(db, container.id, "f", owner);
      await setSharing(db, id, { read: entries, write: [] });
    };
    await shareFrom(alice, [erin]);
    await setAccountGroups(db, bob, { friends: [erin] }, {}, t0 + 1);
    await shareFrom(bob, [`${bob}:friends`]);
    await shareFrom(carol, ["*"]);
    await shareFrom(dave, [alice]);
    await shareFrom(erin, [erin]); // one's own account is not listed
    const expected = [alice, bob, carol].sort();
    expect((await listSharedWithMe(db, erin)).map((entry) => entry.account)).toEqual(expected);
    expect(await listSharedWithMe(db, erin, { limit: 1 })).toEqual([{ account: expected[0], modifiedAt: expect.any(Number) }]);
    expect((await listSharedWithMe(db, erin, { marker: expected[0] })).map((entry) => entry.account)).toEqual(expected.slice(1));
    expect((await listSharedWithMe(db, alice)).map((entry) => entry.account)).toEqual([carol, dave].sort());
  });

  it("makes objects public by a token that reads the current version", async () => {
    const db = await databases.open();
    const alice = randomUUID();
    const { container } = await createContainer(db, alice, "photos");
    const id = await put(db, container.id, "a/1.jpg", alice);
    const token = await setPublic(db, id, true);
    expect(token).toMatch(/^[0-9a-zA-Z]{16}$/);
    expect(await setPublic(db, id, true)).toBe(token); // already public: the same token
    await putVersion(db, container.id, "a/1.jpg", data("v2"), { modifiedBy: alice }, t0 + 1);
    expect(await getByPublicToken(db, token!)).toMatchObject({
      account: alice,
      containerId: container.id,
      containerName: "photos",
      path: "a/1.jpg",
      object: { id, publicToken: token },
      version: { mapName: "v2", state: "current" },
    });
    expect(await getByPublicToken(db, "0000000000000000")).toBeUndefined();
    expect(await getByPublicToken(db, "short")).toBeUndefined();
    // A move takes the object elsewhere; the token stays with the path's object, which is gone.
    await renameObject(db, container.id, "a/1.jpg", container.id, "b.jpg", { modifiedBy: alice }, t0 + 2);
    expect(await getByPublicToken(db, token!)).toBeUndefined();
    const moved = await put(db, container.id, "c.jpg", alice);
    const second = await setPublic(db, moved, true);
    expect(second).not.toBe(token);
    expect(await setPublic(db, moved, false)).toBeNull();
    expect(await getByPublicToken(db, second!)).toBeUndefined();
    const expiring = (await putVersion(db, container.id, "d", data("d", { deleteAt: t0 + 10 }), { modifiedBy: alice }, t0)).object.id;
    const third = await setPublic(db, expiring, true);
    expect(await getByPublicToken(db, third!, t0 + 9)).toBeDefined();
    expect(await getByPublicToken(db, third!, t0 + 10)).toBeUndefined();
    await rejectsWith(setPublic(db, 999_999, true), "ENOT_FOUND");
  });
});
