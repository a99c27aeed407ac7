import { expect, it } from "vitest";
import { describeEachEngine } from "../testing/databases.ts";
import { rejectsWith, seedUser } from "../testing/fixtures.ts";
import { acceptCommission, issueCommission } from "./commissions.ts";
import { issueToken, lookupToken } from "./tokens.ts";
import { createUser, deleteUser, getUser, getUserByName, listUsers, updateUser } from "./users.ts";

const t0 = 1_700_000_000_000;

describeEachEngine("users", (databases) => {
  it("are created, read by uuid and by name", async () => {
    const db = await databases.open();
    const alice = await createUser(db, { name: "alice", email: "alice@example.org", passwordHash: "$scrypt$x" }, t0);
    expect(alice).toEqual({
      uuid: expect.stringMatching(/^[0-9a-f-]{36}$/),
      name: "alice",
      email: "alice@example.org",
      state: "active",
      passwordHash: "$scrypt$x",
      createdAt: t0,
      updatedAt: t0,
    });
    expect(await getUser(db, alice.uuid)).toEqual(alice);
    expect(await getUserByName(db, "alice")).toEqual(alice);
    expect(await getUser(db, "00000000-0000-4000-8000-000000000000")).toBeUndefined();
    expect(await getUserByName(db, "Alice")).toBeUndefined(); // names are case-sensitive
    const imported = await createUser(db, { name: "bob", uuid: "0f1e2d3c-4b5a-4697-8887-766554433221", state: "disabled" });
    expect(imported).toMatchObject({ uuid: "0f1e2d3c-4b5a-4697-8887-766554433221", email: null, passwordHash: null, state: "disabled" });
  });

  it("have unique names and uuids", async () => {
    const db = await databases.open();
    const alice = await createUser(db, { name: "alice" });
    await rejectsWith(createUser(db, { name: "alice" }), "EEXISTS");
    await rejectsWith(createUser(db, { name: "other", uuid: alice.uuid }), "EEXISTS");
    expect((await listUsers(db)).length).toBe(1);
  });

  it("refuse bad input", async () => {
    const db = await databases.open();
    await rejectsWith(createUser(db, { name: "" }), "EINVALID");
    await rejectsWith(createUser(db, { name: "x".repeat(256) }), "EINVALID");
    await rejectsWith(createUser(db, { name: "bad\nname" }), "EINVALID");
    await rejectsWith(createUser(db, { name: "ok", state: "frozen" as "active" }), "EINVALID");
    await rejectsWith(createUser(db, { name: "ok", uuid: "not-a-uuid" }), "EINVALID");
    await rejectsWith(createUser(db, { name: "ok", email: "e".repeat(255) }), "EINVALID");
    expect(await listUsers(db)).toEqual([]);
  });

  it("are listed by name, in pages, and by state", async () => {
    const db = await databases.open();
    for (const name of ["carol", "alice", "dave", "bob"]) await createUser(db, { name, state: name === "dave" ? "disabled" : "active" });
    expect((await listUsers(db)).map((u) => u.name)).toEqual(["alice", "bob", "carol", "dave"]);
    const first = await listUsers(db, { limit: 2 });
    expect(first.map((u) => u.name)).toEqual(["alice", "bob"]);
    expect((await listUsers(db, { afterName: first.at(-1)!.name, limit: 2 })).map((u) => u.name)).toEqual(["carol", "dave"]);
    expect((await listUsers(db, { state: "disabled" })).map((u) => u.name)).toEqual(["dave"]);
  });

  it("are updated field by field", async () => {
    const db = await databases.open();
    const alice = await createUser(db, { name: "alice", email: "a@example.org" }, t0);
    await createUser(db, { name: "bob" });
    const renamed = await updateUser(db, alice.uuid, { name: "alice2", email: null, passwordHash: "$argon2id$y" }, t0 + 5);
    expect(renamed).toEqual({ ...alice, name: "alice2", email: null, passwordHash: "$argon2id$y", updatedAt: t0 + 5 });
    const disabled = await updateUser(db, alice.uuid, { state: "disabled" }, t0 + 6);
    expect(disabled).toMatchObject({ name: "alice2", state: "disabled", passwordHash: "$argon2id$y" });
    await rejectsWith(updateUser(db, alice.uuid, { name: "bob" }), "EEXISTS");
    await rejectsWith(updateUser(db, "00000000-0000-4000-8000-000000000000", { name: "x" }), "ENOT_FOUND");
    await rejectsWith(updateUser(db, alice.uuid, { state: "gone" as "active" }), "EINVALID");
    expect((await getUser(db, alice.uuid))?.name).toBe("alice2");
  });

  it("are deleted with their tokens", async () => {
    const db = await databases.open();
    const alice = await createUser(db, { name: "alice" });
    const { token } = await issueToken(db, alice.uuid);
    await deleteUser(db, alice.uuid);
    expect(await getUser(db, alice.uuid)).toBeUndefined();
    expect(await lookupToken(db, token)).toEqual({ status: "unknown" });
    await rejectsWith(deleteUser(db, alice.uuid), "ENOT_FOUND");
    // The name is free again.
    await createUser(db, { name: "alice" });
  });

  it("are not deleted while a pending commission charges them", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice");
    const commission = await issueCommission(db, {
      clientKey: "test:1",
      provisions: [{ userUuid: alice.uuid, resource: "compute.vm", quantity: 1 }],
    });
    const error = await rejectsWith(deleteUser(db, alice.uuid), "EBUSY");
    expect(error.details).toMatchObject({ serials: [commission.serial] });
    await acceptCommission(db, commission.serial);
    await deleteUser(db, alice.uuid);
    expect(await getUser(db, alice.uuid)).toBeUndefined();
  });
});
