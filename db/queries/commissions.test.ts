import { expect, it } from "vitest";
import { migrateToLatest } from "../migrations/index.ts";
import { describeEachEngine } from "../testing/databases.ts";
import { rejectsWith, seedUser } from "../testing/fixtures.ts";
import {
  acceptCommission,
  findCommission,
  getCommission,
  issueCommission,
  listPendingCommissions,
  rejectCommission,
  resolveCommissions,
  type Provision,
} from "./commissions.ts";
import { provisionsPerCommissionMax } from "./limits.ts";
import { getQuota, setLimit, setResourceDefaultLimit } from "./quotas.ts";
import { createUser, deleteUser } from "./users.ts";

const t0 = 1_700_000_000_000;
const gib = 2 ** 30;
const nobody = "00000000-0000-4000-8000-000000000000";

describeEachEngine("commissions", (databases) => {
  const vm = (userUuid: string, quantity: number): Provision => ({ userUuid, resource: "compute.vm", quantity });
  const ram = (userUuid: string, quantity: number): Provision => ({ userUuid, resource: "compute.ram", quantity });

  it("reserve on issue, count pending against the limit, refuse what does not fit", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice", { "compute.vm": 10 });
    const first = await issueCommission(db, { clientKey: "k1", name: "create vm 1", provisions: [vm(alice.uuid, 6)] }, t0);
    expect(first).toEqual({
      serial: expect.any(Number),
      clientKey: "k1",
      name: "create vm 1",
      state: "pending",
      issuedAt: t0,
      resolvedAt: null,
      provisions: [vm(alice.uuid, 6)],
    });
    expect(await getQuota(db, alice.uuid, "compute.vm")).toMatchObject({ limit: 10, usage: 0, pendingIncrease: 6 });
    // 6 pending + 5 > 10, though usage is 0: refused, with the holding's figures.
    const refused = await rejectsWith(issueCommission(db, { clientKey: "k2", provisions: [vm(alice.uuid, 5)] }), "EQUOTA_EXCEEDED");
    expect(refused.details).toEqual({
      userUuid: alice.uuid,
      resource: "compute.vm",
      quantity: 5,
      limit: 10,
      usage: 0,
      pendingIncrease: 6,
      pendingDecrease: 0,
    });
    expect(await findCommission(db, "k2")).toBeUndefined(); // a refusal stores nothing
    const exact = await issueCommission(db, { clientKey: "k3", provisions: [vm(alice.uuid, 4)] });
    expect(exact.serial).toBeGreaterThan(first.serial);
    expect(await getQuota(db, alice.uuid, "compute.vm")).toMatchObject({ usage: 0, pendingIncrease: 10 });
  });

  it("move a reservation into usage on accept and release it on reject", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice", { "compute.vm": 10 });
    const a = await issueCommission(db, { clientKey: "a", provisions: [vm(alice.uuid, 3)] });
    const b = await issueCommission(db, { clientKey: "b", provisions: [vm(alice.uuid, 4)] });
    const accepted = await acceptCommission(db, a.serial, t0 + 1);
    expect(accepted).toMatchObject({ serial: a.serial, state: "accepted", resolvedAt: t0 + 1 });
    expect(await getQuota(db, alice.uuid, "compute.vm")).toMatchObject({ usage: 3, pendingIncrease: 4 });
    const rejected = await rejectCommission(db, b.serial, t0 + 2);
    expect(rejected).toMatchObject({ serial: b.serial, state: "rejected", resolvedAt: t0 + 2 });
    expect(await getQuota(db, alice.uuid, "compute.vm")).toMatchObject({ usage: 3, pendingIncrease: 0 });
    expect(await listPendingCommissions(db)).toEqual([]);
  });

  it("resolve idempotently by serial, never both ways", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice", { "compute.vm": 10 });
    const a = await issueCommission(db, { clientKey: "a", provisions: [vm(alice.uuid, 3)] });
    const once = await acceptCommission(db, a.serial, t0 + 1);
    const twice = await acceptCommission(db, a.serial, t0 + 2);
    expect(twice).toEqual(once); // same result, resolvedAt included
    expect(await getQuota(db, alice.uuid, "compute.vm")).toMatchObject({ usage: 3, pendingIncrease: 0 });
    await rejectsWith(rejectCommission(db, a.serial), "ECOMMISSION_RESOLVED");
    const b = await issueCommission(db, { clientKey: "b", provisions: [vm(alice.uuid, 2)] });
    await rejectCommission(db, b.serial);
    expect((await rejectCommission(db, b.serial)).state).toBe("rejected");
    await rejectsWith(acceptCommission(db, b.serial), "ECOMMISSION_RESOLVED");
    await rejectsWith(acceptCommission(db, 999_999), "ENOT_FOUND");
    await rejectsWith(rejectCommission(db, 0), "EINVALID");
    expect(await getQuota(db, alice.uuid, "compute.vm")).toMatchObject({ usage: 3, pendingIncrease: 0 });
  });

  it("return the same commission when an issue is retried with its client key", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice", { "compute.vm": 10 });
    const request = { clientKey: "compute:vm:1:create", provisions: [vm(alice.uuid, 4)] };
    const first = await issueCommission(db, request, t0);
    const retry = await issueCommission(db, request, t0 + 100);
    expect(retry).toEqual(first);
    expect(await getQuota(db, alice.uuid, "compute.vm")).toMatchObject({ pendingIncrease: 4 }); // counted once
    await acceptCommission(db, first.serial);
    const late = await issueCommission(db, request);
    expect(late).toMatchObject({ serial: first.serial, state: "accepted" });
    expect(await getQuota(db, alice.uuid, "compute.vm")).toMatchObject({ usage: 4, pendingIncrease: 0 });
    // The same key for other provisions is a caller's bug, not a retry.
    const reused = await rejectsWith(issueCommission(db, { ...request, provisions: [vm(alice.uuid, 5)] }), "ECLIENT_KEY_REUSED");
    expect(reused.details).toMatchObject({ serial: first.serial });
    // A retry of a refused issue is decided afresh: nothing was stored the first time.
    const big = { clientKey: "big", provisions: [vm(alice.uuid, 7)] };
    await rejectsWith(issueCommission(db, big), "EQUOTA_EXCEEDED");
    await setLimit(db, alice.uuid, "compute.vm", 11);
    expect((await issueCommission(db, big)).state).toBe("pending");
  });

  it("reserve all provisions or none", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice", { "compute.vm": 5, "compute.ram": 8 * gib });
    const bob = await seedUser(db, "bob", { "compute.vm": 1 });
    const both = await issueCommission(db, { clientKey: "both", provisions: [ram(alice.uuid, 2 * gib), vm(alice.uuid, 1), vm(bob.uuid, 1)] });
    // Read back ordered by user, then resource, whatever order they came in.
    expect(both.provisions).toEqual(
      [ram(alice.uuid, 2 * gib), vm(alice.uuid, 1), vm(bob.uuid, 1)].sort((x, y) =>
        x.userUuid === y.userUuid ? x.resource.localeCompare(y.resource) : x.userUuid < y.userUuid ? -1 : 1,
      ),
    );
    // alice's part fits, bob's does not: nothing of it is reserved.
    const refused = await rejectsWith(
      issueCommission(db, { clientKey: "no", provisions: [vm(alice.uuid, 1), ram(alice.uuid, gib), vm(bob.uuid, 1)] }),
      "EQUOTA_EXCEEDED",
    );
    expect(refused.details).toMatchObject({ userUuid: bob.uuid, resource: "compute.vm" });
    expect(await getQuota(db, alice.uuid, "compute.vm")).toMatchObject({ pendingIncrease: 1 });
    expect(await getQuota(db, alice.uuid, "compute.ram")).toMatchObject({ pendingIncrease: 2 * gib });
    await acceptCommission(db, both.serial);
    expect(await getQuota(db, alice.uuid, "compute.ram")).toMatchObject({ usage: 2 * gib, pendingIncrease: 0 });
    expect(await getQuota(db, bob.uuid, "compute.vm")).toMatchObject({ usage: 1, pendingIncrease: 0 });
  });

  it("release with negative quantities, never below zero", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice", { "volume.disk": 100 * gib });
    const grow = await issueCommission(db, { clientKey: "grow", provisions: [{ userUuid: alice.uuid, resource: "volume.disk", quantity: 10 * gib }], autoAccept: true });
    expect(grow.state).toBe("accepted");
    const disk = (quantity: number): Provision => ({ userUuid: alice.uuid, resource: "volume.disk", quantity });
    const shrink = await issueCommission(db, { clientKey: "shrink", provisions: [disk(-6 * gib)] });
    // Pending releases still count as used: only 4 GiB can be released on top.
    const error = await rejectsWith(issueCommission(db, { clientKey: "more", provisions: [disk(-5 * gib)] }), "EQUOTA_NEGATIVE");
    expect(error.details).toMatchObject({ usage: 10 * gib, pendingDecrease: 6 * gib, quantity: -5 * gib });
    await rejectsWith(issueCommission(db, { clientKey: "forced", provisions: [disk(-5 * gib)], force: true }), "EQUOTA_NEGATIVE");
    expect(await getQuota(db, alice.uuid, "volume.disk")).toMatchObject({ usage: 10 * gib, pendingDecrease: 6 * gib });
    await acceptCommission(db, shrink.serial);
    expect(await getQuota(db, alice.uuid, "volume.disk")).toMatchObject({ usage: 4 * gib, pendingDecrease: 0 });
    const release = await issueCommission(db, { clientKey: "release", provisions: [disk(-4 * gib)] });
    await rejectCommission(db, release.serial);
    expect(await getQuota(db, alice.uuid, "volume.disk")).toMatchObject({ usage: 4 * gib, pendingDecrease: 0 });
  });

  it("go past the limit only when forced", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice", { "compute.vm": 1 });
    await rejectsWith(issueCommission(db, { clientKey: "a", provisions: [vm(alice.uuid, 3)] }), "EQUOTA_EXCEEDED");
    const forced = await issueCommission(db, { clientKey: "a", provisions: [vm(alice.uuid, 3)], force: true, autoAccept: true });
    expect(forced.state).toBe("accepted");
    expect(await getQuota(db, alice.uuid, "compute.vm")).toMatchObject({ limit: 1, usage: 3 });
    await rejectsWith(issueCommission(db, { clientKey: "b", provisions: [vm(alice.uuid, 1)] }), "EQUOTA_EXCEEDED");
    // Lowering the limit below usage takes nothing back.
    await setLimit(db, alice.uuid, "compute.vm", 0);
    expect(await getQuota(db, alice.uuid, "compute.vm")).toMatchObject({ limit: 0, usage: 3 });
  });

  it("use the resource's default limit for users without one", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice"); // compute.vm default: 2
    await issueCommission(db, { clientKey: "a", provisions: [vm(alice.uuid, 2)] });
    await rejectsWith(issueCommission(db, { clientKey: "b", provisions: [vm(alice.uuid, 1)] }), "EQUOTA_EXCEEDED");
    await setResourceDefaultLimit(db, "compute.vm", 3);
    await issueCommission(db, { clientKey: "b", provisions: [vm(alice.uuid, 1)] });
  });

  it("refuse unknown users and resources, and malformed provisions", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice", { "compute.vm": 5 });
    await rejectsWith(issueCommission(db, { clientKey: "a", provisions: [vm(nobody, 1)] }), "ENOT_FOUND");
    await rejectsWith(issueCommission(db, { clientKey: "a", provisions: [{ userUuid: alice.uuid, resource: "no.such", quantity: 1 }] }), "ENOT_FOUND");
    for (const provisions of [
      [],
      [vm(alice.uuid, 0)],
      [vm(alice.uuid, 1.5)],
      [vm(alice.uuid, 1), vm(alice.uuid, 2)],
      [vm("not-a-uuid", 1)],
      Array.from({ length: provisionsPerCommissionMax + 1 }, (_, i) => ({ userUuid: alice.uuid, resource: `r${i}`, quantity: 1 })),
    ]) {
      await rejectsWith(issueCommission(db, { clientKey: "a", provisions }), "EINVALID");
    }
    await rejectsWith(issueCommission(db, { clientKey: "", provisions: [vm(alice.uuid, 1)] }), "EINVALID");
    expect(await findCommission(db, "a")).toBeUndefined();
    expect(await getQuota(db, alice.uuid, "compute.vm")).toMatchObject({ usage: 0, pendingIncrease: 0 });
  });

  it("stay pending across a reopen, and are resolved afterwards", async () => {
    const url = await databases.freshUrl();
    const first = await databases.connect(url);
    await migrateToLatest(first);
    const alice = await seedUser(first, "alice", { "compute.vm": 10 });
    const a = await issueCommission(first, { clientKey: "a", provisions: [vm(alice.uuid, 4)] });
    const b = await issueCommission(first, { clientKey: "b", provisions: [vm(alice.uuid, 5)] });
    await first.close(); // a restart

    const second = await databases.connect(url);
    expect(await migrateToLatest(second)).toEqual([]);
    expect((await listPendingCommissions(second)).map((c) => c.serial)).toEqual([a.serial, b.serial]);
    expect(await getQuota(second, alice.uuid, "compute.vm")).toMatchObject({ usage: 0, pendingIncrease: 9 });
    await rejectsWith(issueCommission(second, { clientKey: "c", provisions: [vm(alice.uuid, 2)] }), "EQUOTA_EXCEEDED");
    // The service finds its commission again by its key and finishes it.
    expect(await findCommission(second, "a")).toEqual(a);
    await acceptCommission(second, a.serial);
    await rejectCommission(second, b.serial);
    expect(await getQuota(second, alice.uuid, "compute.vm")).toMatchObject({ usage: 4, pendingIncrease: 0 });
  });

  it("list pending commissions oldest first, in pages", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice", { "compute.vm": 100 });
    const serials: number[] = [];
    for (let i = 0; i < 5; i++) serials.push((await issueCommission(db, { clientKey: `k${i}`, provisions: [vm(alice.uuid, 1)] })).serial);
    await acceptCommission(db, serials[1]!);
    const page = await listPendingCommissions(db, { limit: 2 });
    expect(page.map((c) => c.serial)).toEqual([serials[0], serials[2]]);
    expect(page[0]!.provisions).toEqual([vm(alice.uuid, 1)]);
    const next = await listPendingCommissions(db, { afterSerial: page.at(-1)!.serial, limit: 2 });
    expect(next.map((c) => c.serial)).toEqual([serials[3], serials[4]]);
    expect(await getCommission(db, serials[1]!)).toMatchObject({ state: "accepted" });
    expect(await getCommission(db, 999_999)).toBeUndefined();
  });

  it("resolve in bulk as Astakos's commissions/action, reporting each failure", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice", { "compute.vm": 100 });
    const serials: number[] = [];
    for (let i = 0; i < 4; i++) serials.push((await issueCommission(db, { clientKey: `k${i}`, provisions: [vm(alice.uuid, 1)] })).serial);
    await rejectCommission(db, serials[3]!);
    const [s0, s1, s2, s3] = serials as [number, number, number, number];
    const result = await resolveCommissions(db, { accept: [s0, s2, s3, 999_999], reject: [s1, s2] });
    expect(result.accepted).toEqual([s0]);
    expect(result.rejected).toEqual([s1]);
    expect(result.failed.map((f) => [f.serial, f.error.code]).sort()).toEqual(
      [
        [s2, "EINVALID"],
        [s3, "ECOMMISSION_RESOLVED"],
        [999_999, "ENOT_FOUND"],
      ].sort(),
    );
    expect(await getQuota(db, alice.uuid, "compute.vm")).toMatchObject({ usage: 1, pendingIncrease: 1 });
  });

  it("survive the deletion of an uninvolved user", async () => {
    const db = await databases.open();
    const alice = await seedUser(db, "alice", { "compute.vm": 5 });
    const bob = await createUser(db, { name: "bob" });
    const a = await issueCommission(db, { clientKey: "a", provisions: [vm(alice.uuid, 1)] });
    await deleteUser(db, bob.uuid);
    expect((await acceptCommission(db, a.serial)).state).toBe("accepted");
  });
});
