/**
 * Commissions under real concurrency. On PostgreSQL the parallel calls run on separate pooled
 * connections, so these exercise the row locks; on SQLite they are serialised in-process, and
 * the multi-process test exercises BEGIN IMMEDIATE and the busy timeout across processes.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import fc from "fast-check";
import { expect, it } from "vitest";
import type { MetadataDatabase } from "../connect.ts";
import { isDbError } from "../errors.ts";
import { migrateToLatest } from "../migrations/index.ts";
import { describeEachEngine } from "../testing/databases.ts";
import { seedUser } from "../testing/fixtures.ts";
import { acceptCommission, issueCommission, rejectCommission, type Provision } from "./commissions.ts";
import { getQuota } from "./quotas.ts";

const execFileAsync = promisify(execFile);
/** More connections than parallel calls, so every call really runs at once on PostgreSQL. */
const poolSizeMax = 24;

function outcomes(results: PromiseSettledResult<unknown>[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const result of results) {
    const key = result.status === "fulfilled" ? "ok" : isDbError(result.reason) ? result.reason.code : String(result.reason);
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/**
 * The holdings agree with the commissions that made them, and no limit is exceeded:
 *   usage            = Σ accepted quantities
 *   pending_increase = Σ pending positive quantities, pending_decrease = Σ |pending negative|
 *   usage + pending_increase ≤ limit, usage − pending_decrease ≥ 0
 */
async function checkHoldings(db: MetadataDatabase, userUuid: string): Promise<void> {
  const provisions = await db.kysely
    .selectFrom("commission_provisions as p")
    .innerJoin("commissions as c", "c.serial", "p.serial")
    .select(["p.resource", "p.quantity", "c.state"])
    .where("p.user_uuid", "=", userUuid)
    .execute();
  const holdings = await db.kysely
    .selectFrom("quota_holdings as h")
    .innerJoin("quota_resources as r", "r.name", "h.resource")
    .select(["h.resource", "h.usage", "h.pending_increase", "h.pending_decrease", "h.quota_limit", "r.default_limit"])
    .where("h.user_uuid", "=", userUuid)
    .execute();
  for (const holding of holdings) {
    const mine = provisions.filter((p) => p.resource === holding.resource);
    const sum = (keep: (p: (typeof mine)[number]) => boolean) => mine.filter(keep).reduce((total, p) => total + p.quantity, 0);
    expect(holding.usage, holding.resource).toBe(sum((p) => p.state === "accepted"));
    expect(holding.pending_increase, holding.resource).toBe(sum((p) => p.state === "pending" && p.quantity > 0));
    expect(holding.pending_decrease, holding.resource).toBe(0 - sum((p) => p.state === "pending" && p.quantity < 0));
    expect(holding.usage + holding.pending_increase, holding.resource).toBeLessThanOrEqual(holding.quota_limit ?? holding.default_limit);
    expect(holding.usage - holding.pending_decrease, holding.resource).toBeGreaterThanOrEqual(0);
  }
}

describeEachEngine("commissions under concurrency", (databases) => {
  const vm = (userUuid: string, quantity: number): Provision => ({ userUuid, resource: "compute.vm", quantity });

  it("never over-commit: 20 issues in parallel against a limit of 10", async () => {
    const db = await databases.open({ poolSizeMax });
    const alice = await seedUser(db, "alice", { "compute.vm": 10 });
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => issueCommission(db, { clientKey: `vm:${i}`, provisions: [vm(alice.uuid, 1)] })),
    );
    expect(outcomes(results)).toEqual({ ok: 10, EQUOTA_EXCEEDED: 10 });
    expect(await getQuota(db, alice.uuid, "compute.vm")).toMatchObject({ usage: 0, pendingIncrease: 10 });
    await checkHoldings(db, alice.uuid);
  });

  it("make one commission of parallel issues with one client key", async () => {
    const db = await databases.open({ poolSizeMax });
    const alice = await seedUser(db, "alice", { "compute.vm": 10 });
    const results = await Promise.all(
      Array.from({ length: 12 }, () => issueCommission(db, { clientKey: "same", provisions: [vm(alice.uuid, 3)] })),
    );
    expect(new Set(results.map((c) => c.serial)).size).toBe(1);
    expect(await getQuota(db, alice.uuid, "compute.vm")).toMatchObject({ pendingIncrease: 3 });
  });

  it("let exactly one of a racing accept and reject win", async () => {
    const db = await databases.open({ poolSizeMax });
    const alice = await seedUser(db, "alice", { "compute.vm": 100 });
    for (let round = 0; round < 5; round++) {
      const { serial } = await issueCommission(db, { clientKey: `race:${round}`, provisions: [vm(alice.uuid, 2)] });
      const results = await Promise.allSettled([
        acceptCommission(db, serial),
        rejectCommission(db, serial),
        acceptCommission(db, serial),
        rejectCommission(db, serial),
      ]);
      const counts = outcomes(results);
      expect(counts.ok! === 2 && counts.ECOMMISSION_RESOLVED === 2, JSON.stringify(counts)).toBe(true);
    }
    await checkHoldings(db, alice.uuid);
  });

  it("do not deadlock on commissions that share holdings, given in any order", async () => {
    const db = await databases.open({ poolSizeMax });
    const alice = await seedUser(db, "alice", { "compute.vm": 1000, "compute.ram": 1000 });
    const bob = await seedUser(db, "bob", { "compute.vm": 1000, "compute.ram": 1000 });
    const all: Provision[] = [alice, bob].flatMap((u) => [
      { userUuid: u.uuid, resource: "compute.vm", quantity: 1 },
      { userUuid: u.uuid, resource: "compute.ram", quantity: 1 },
    ]);
    const issued = await Promise.all(
      Array.from({ length: 20 }, (_, i) => {
        const provisions = i % 2 === 0 ? all : [...all].reverse();
        return issueCommission(db, { clientKey: `shared:${i}`, provisions });
      }),
    );
    await Promise.all(issued.map((c, i) => (i % 3 === 0 ? rejectCommission(db, c.serial) : acceptCommission(db, c.serial))));
    await checkHoldings(db, alice.uuid);
    await checkHoldings(db, bob.uuid);
    expect(await getQuota(db, bob.uuid, "compute.ram")).toMatchObject({ usage: 13, pendingIncrease: 0 });
  });

  it("never over-commit across processes sharing one database", async () => {
    const url = await databases.freshUrl();
    const db = await databases.connect(url);
    await migrateToLatest(db);
    const alice = await seedUser(db, "alice", { "compute.vm": 15 });
    const child = join(import.meta.dirname, "..", "testing", "issue-child.ts");
    const runs = await Promise.all(
      ["p1", "p2", "p3"].map((prefix) => execFileAsync(process.execPath, [child, url, alice.uuid, "compute.vm", "10", prefix])),
    );
    const totals = runs
      .map((run) => JSON.parse(run.stdout) as { issued: number; refused: number })
      .reduce((sum, r) => ({ issued: sum.issued + r.issued, refused: sum.refused + r.refused }), { issued: 0, refused: 0 });
    expect(totals).toEqual({ issued: 15, refused: 15 });
    expect(await getQuota(db, alice.uuid, "compute.vm")).toMatchObject({ pendingIncrease: 15 });
    await checkHoldings(db, alice.uuid);
  });

  it("keep holdings equal to their commissions under random concurrent batches (property)", async () => {
    const db = await databases.open({ poolSizeMax });
    let run = 0;
    type Operation =
      | { kind: "issue"; vm: number; ram: number }
      | { kind: "accept" | "reject" | "retry"; pick: number };
    const operation: fc.Arbitrary<Operation> = fc.oneof(
      fc.record({ kind: fc.constant("issue" as const), vm: fc.integer({ min: -3, max: 4 }), ram: fc.integer({ min: -2, max: 3 }) }),
      fc.record({ kind: fc.constantFrom("accept" as const, "reject" as const, "retry" as const), pick: fc.nat() }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(operation, { minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 0, max: 8 }),
        async (batches, limit) => {
          const user = await seedUser(db, `user${++run}`, { "compute.vm": limit, "compute.ram": limit });
          const issued: Array<{ clientKey: string; serial: number; provisions: Provision[] }> = [];
          let keys = 0;
          for (const batch of batches) {
            const known = [...issued];
            const results = await Promise.allSettled(
              batch.map(async (op) => {
                if (op.kind === "issue") {
                  const provisions = [
                    { userUuid: user.uuid, resource: "compute.vm", quantity: op.vm },
                    { userUuid: user.uuid, resource: "compute.ram", quantity: op.ram },
                  ].filter((p) => p.quantity !== 0);
                  if (provisions.length === 0) return;
                  const clientKey = `${run}:${keys++}`;
                  const commission = await issueCommission(db, { clientKey, provisions });
                  issued.push({ clientKey, serial: commission.serial, provisions });
                  return;
                }
                const target = known[op.pick % Math.max(known.length, 1)];
                if (target === undefined) return;
                if (op.kind === "retry") {
                  const again = await issueCommission(db, { clientKey: target.clientKey, provisions: target.provisions });
                  expect(again.serial).toBe(target.serial);
                } else if (op.kind === "accept") await acceptCommission(db, target.serial);
                else await rejectCommission(db, target.serial);
              }),
            );
            for (const result of results) {
              if (result.status === "fulfilled") continue;
              const expected = ["EQUOTA_EXCEEDED", "EQUOTA_NEGATIVE", "ECOMMISSION_RESOLVED"];
              if (!isDbError(result.reason) || !expected.includes(result.reason.code)) throw result.reason;
            }
            await checkHoldings(db, user.uuid);
          }
        },
      ),
      { numRuns: 15 },
    );
  });
});
