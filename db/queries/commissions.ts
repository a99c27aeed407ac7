/**
 * The two-phase commission protocol (synnefo.md D.3): a service reserves quota before it
 * consumes (issue), then makes the reservation final (accept) or undoes it (reject).
 *
 *   issue(clientKey, provisions) ──► pending ──accept──► accepted   usage += q
 *        │                              └────reject──► rejected    reservation released
 *        └─ over the limit: EQUOTA_EXCEEDED, nothing stored
 *
 * Per holding (user, resource), as Astakos's [usage_min, usage_max]:
 *   issue  q > 0: pending_increase += q   refused if usage + pending_increase + q > limit
 *   issue  q < 0: pending_decrease += |q| refused if usage − pending_decrease − |q| < 0
 *   accept: usage += q and the pending amount goes; reject: the pending amount goes.
 * Pending reservations count against the limit, so concurrent issues can never over-commit,
 * and a pending commission (stored in the database) survives any restart.
 *
 * Idempotency: an issue is keyed by the caller's clientKey (unique). A retry with the same key
 * and provisions returns the commission already stored, whatever its state; accept and reject
 * are idempotent by serial. So a service that persists its key before issuing and its serial
 * after can retry any step after a crash without double-counting.
 *
 * Concurrency: each call is one transaction (transaction.ts). On PostgreSQL the holdings are
 * locked FOR UPDATE in (user, resource) order, the users FOR SHARE (against deleteUser), the
 * commission row FOR UPDATE on resolve; SQLite runs the transactions one at a time.
 */
import assert from "node:assert/strict";
import type { Kysely, Selectable, Transaction } from "kysely";
import type { DatabaseEngine, MetadataDatabase } from "../connect.ts";
import { DbError } from "../errors.ts";
import type { CommissionState, CommissionsTable, Database, QuotaHoldingsTable } from "../schema.ts";
import { inTransaction } from "../transaction.ts";
import {
  checkInteger,
  checkListLimit,
  checkResourceName,
  checkText,
  checkUuid,
  clientKeyLengthMax,
  commissionNameLengthMax,
  provisionsPerCommissionMax,
} from "./limits.ts";

export interface Provision {
  userUuid: string;
  resource: string;
  /** Non-zero integer in the resource's unit; negative releases. */
  quantity: number;
}

export interface Commission {
  serial: number;
  clientKey: string;
  name: string;
  state: CommissionState;
  issuedAt: number;
  resolvedAt: number | null;
  /** Ordered by user, then resource. */
  provisions: Provision[];
}

export interface IssueCommissionInput {
  /** The caller's idempotency key (`compute:vm:<uuid>:create`); unique across commissions. */
  clientKey: string;
  /** For people reading the list of commissions. */
  name?: string;
  provisions: readonly Provision[];
  /**
   * Astakos's `force`: allow usage past the limit (an administrator's correction, a service
   * recording what already happened). Usage never goes below zero, forced or not.
   */
  force?: boolean;
  /** Astakos's `auto_accept`: issue and accept in one transaction. */
  autoAccept?: boolean;
}

/**
 * Reserves the provisions, all or none. Throws EQUOTA_EXCEEDED / EQUOTA_NEGATIVE with the
 * holding's figures when one does not fit, ENOT_FOUND for an unknown user or resource,
 * ECLIENT_KEY_REUSED when the key names a commission with other provisions.
 */
export async function issueCommission(db: MetadataDatabase, input: IssueCommissionInput, nowMs = Date.now()): Promise<Commission> {
  const checked = checkIssue(input, nowMs);
  return inTransaction(db, (tx) => issueCommissionIn(tx, db.engine, checked, nowMs));
}

/** An issue's input, checked (see checkIssue). */
export interface CheckedIssue {
  clientKey: string;
  name: string;
  provisions: Provision[];
  force: boolean;
  autoAccept: boolean;
}

/** Checks an issue's input before any transaction starts. */
export function checkIssue(input: IssueCommissionInput, nowMs: number): CheckedIssue {
  checkInteger("nowMs", nowMs, { min: 0 });
  return {
    clientKey: checkText("clientKey", input.clientKey, clientKeyLengthMax),
    name: input.name === undefined || input.name === "" ? "" : checkText("name", input.name, commissionNameLengthMax),
    provisions: checkProvisions(input.provisions),
    force: input.force === true,
    autoAccept: input.autoAccept === true,
  };
}

/**
 * issueCommission inside the caller's transaction: a service that records its own change
 * in the same transaction (an object store write charged with auto-accept) commits both at
 * once, or neither. Throws as issueCommission does, before writing anything of its own
 * except the commission row, which the caller's rollback removes.
 */
export async function issueCommissionIn(tx: Transaction<Database>, engine: DatabaseEngine, input: CheckedIssue, nowMs: number): Promise<Commission> {
  const { clientKey, name, provisions } = input;
  // First, so a retry finds the stored commission before touching any holding. On
  // PostgreSQL a concurrent issue with the same key waits here until the first commits
  // (then this one does nothing) or rolls back (then this one goes on).
  const inserted = await tx
    .insertInto("commissions")
    .values({ client_key: clientKey, name, state: "pending", issued_at: nowMs, resolved_at: null })
    .onConflict((conflict) => conflict.column("client_key").doNothing())
    .returning("serial")
    .executeTakeFirst();
  if (inserted === undefined) return sameCommission(tx, clientKey, provisions);

  const defaultLimits = await checkUsersAndResources(tx, engine, provisions);
  for (const provision of provisions) {
    const holding = await lockHolding(tx, engine, provision);
    checkCapacity(holding, defaultLimits.get(provision.resource)!, provision, input.force);
    await tx
      .updateTable("quota_holdings")
      .set((eb) =>
        provision.quantity > 0
          ? { pending_increase: eb("pending_increase", "+", provision.quantity) }
          : { pending_decrease: eb("pending_decrease", "+", -provision.quantity) },
      )
      .where("user_uuid", "=", provision.userUuid)
      .where("resource", "=", provision.resource)
      .execute();
  }
  await tx
    .insertInto("commission_provisions")
    .values(provisions.map((p) => ({ serial: inserted.serial, user_uuid: p.userUuid, resource: p.resource, quantity: p.quantity })))
    .execute();
  if (input.autoAccept) await settle(tx, inserted.serial, provisions, "accepted", nowMs);
  return (await readCommissions(tx, [inserted.serial]))[0]!;
}

/** Final: usage takes the provisions. Idempotent; ECOMMISSION_RESOLVED if it was rejected. */
export async function acceptCommission(db: MetadataDatabase, serial: number, nowMs = Date.now()): Promise<Commission> {
  return resolveCommission(db, serial, "accepted", nowMs);
}

/** Undone: the reservation is released. Idempotent; ECOMMISSION_RESOLVED if it was accepted. */
export async function rejectCommission(db: MetadataDatabase, serial: number, nowMs = Date.now()): Promise<Commission> {
  return resolveCommission(db, serial, "rejected", nowMs);
}

export interface ResolveCommissionsResult {
  accepted: number[];
  rejected: number[];
  /** Serials that could not be resolved, with the error (Astakos's `failed: [[serial, fault]]`). */
  failed: Array<{ serial: number; error: DbError }>;
}

/**
 * Astakos's bulk action `{accept: […], reject: […]}`: each serial in its own transaction, so
 * one failure does not hold back the rest. A serial in both lists fails as EINVALID.
 */
export async function resolveCommissions(
  db: MetadataDatabase,
  request: { accept?: readonly number[]; reject?: readonly number[] },
  nowMs = Date.now(),
): Promise<ResolveCommissionsResult> {
  const result: ResolveCommissionsResult = { accepted: [], rejected: [], failed: [] };
  const accept = request.accept ?? [];
  const reject = request.reject ?? [];
  const both = new Set(accept.filter((serial) => reject.includes(serial)));
  for (const serial of both) {
    result.failed.push({ serial, error: new DbError("EINVALID", `commission ${serial} both accepted and rejected`, { serial }) });
  }
  const work: Array<[number, "accepted" | "rejected"]> = [
    ...accept.filter((serial) => !both.has(serial)).map((serial): [number, "accepted"] => [serial, "accepted"]),
    ...reject.filter((serial) => !both.has(serial)).map((serial): [number, "rejected"] => [serial, "rejected"]),
  ];
  for (const [serial, target] of work) {
    try {
      await resolveCommission(db, serial, target, nowMs);
      (target === "accepted" ? result.accepted : result.rejected).push(serial);
    } catch (error) {
      if (!(error instanceof DbError)) throw error;
      result.failed.push({ serial, error });
    }
  }
  return result;
}

export async function getCommission(db: MetadataDatabase, serial: number): Promise<Commission | undefined> {
  return (await readCommissions(db.kysely, [serial]))[0];
}

/** The commission issued with this client key: what a service restarting after a crash asks. */
export async function findCommission(db: MetadataDatabase, clientKey: string): Promise<Commission | undefined> {
  const row = await db.kysely.selectFrom("commissions").select("serial").where("client_key", "=", clientKey).executeTakeFirst();
  return row && (await readCommissions(db.kysely, [row.serial]))[0];
}

export interface ListPendingOptions {
  /** Commissions with a larger serial (the last serial of the previous page). */
  afterSerial?: number;
  limit?: number;
}

/** Pending commissions, oldest (smallest serial) first. */
export async function listPendingCommissions(db: MetadataDatabase, options: ListPendingOptions = {}): Promise<Commission[]> {
  const limit = checkListLimit(options.limit, 1000);
  const afterSerial = options.afterSerial;
  const rows = await db.kysely
    .selectFrom("commissions")
    .select("serial")
    .where("state", "=", "pending")
    .$if(afterSerial !== undefined, (query) => query.where("serial", ">", checkInteger("afterSerial", afterSerial)))
    .orderBy("serial")
    .limit(limit)
    .execute();
  return readCommissions(
    db.kysely,
    rows.map((row) => row.serial),
  );
}

function checkProvisions(provisions: readonly Provision[]): Provision[] {
  if (!Array.isArray(provisions) || provisions.length === 0 || provisions.length > provisionsPerCommissionMax) {
    throw new DbError("EINVALID", `a commission has 1 to ${provisionsPerCommissionMax} provisions`, {
      provisions: Array.isArray(provisions) ? provisions.length : provisions,
    });
  }
  const checked = provisions.map((p) => ({
    userUuid: checkUuid("userUuid", p.userUuid),
    resource: checkResourceName(p.resource),
    quantity: checkInteger("quantity", p.quantity),
  }));
  // Sorted: the order rows are locked in, on every path (no deadlocks), and the order read back.
  checked.sort(compareProvisions);
  for (let i = 0; i < checked.length; i++) {
    const p = checked[i]!;
    if (p.quantity === 0) throw new DbError("EINVALID", "a provision's quantity is not zero", { provision: p });
    const previous = checked[i - 1];
    if (previous && previous.userUuid === p.userUuid && previous.resource === p.resource) {
      throw new DbError("EINVALID", "a commission names each (user, resource) once", { provision: p });
    }
  }
  return checked;
}

function compareProvisions(a: Provision, b: Provision): number {
  if (a.userUuid !== b.userUuid) return a.userUuid < b.userUuid ? -1 : 1;
  return a.resource < b.resource ? -1 : a.resource > b.resource ? 1 : 0;
}

async function sameCommission(tx: Transaction<Database>, clientKey: string, provisions: Provision[]): Promise<Commission> {
  const row = await tx.selectFrom("commissions").select("serial").where("client_key", "=", clientKey).executeTakeFirst();
  assert(row !== undefined, `commission with client key ${clientKey} conflicted yet cannot be read`);
  const existing = (await readCommissions(tx, [row.serial]))[0]!;
  const same =
    existing.provisions.length === provisions.length &&
    existing.provisions.every((p, i) => compareProvisions(p, provisions[i]!) === 0 && p.quantity === provisions[i]!.quantity);
  if (!same) {
    throw new DbError("ECLIENT_KEY_REUSED", `client key ${clientKey} already names commission ${existing.serial}`, {
      clientKey,
      serial: existing.serial,
    });
  }
  return existing;
}

/** Checks every user and resource exists; returns each resource's default limit. */
async function checkUsersAndResources(
  tx: Transaction<Database>,
  engine: DatabaseEngine,
  provisions: Provision[],
): Promise<Map<string, number>> {
  const userUuids = [...new Set(provisions.map((p) => p.userUuid))];
  const users = await tx
    .selectFrom("users")
    .select("uuid")
    .where("uuid", "in", userUuids)
    .orderBy("uuid")
    .$if(engine === "postgres", (query) => query.forShare())
    .execute();
  const found = new Set(users.map((user) => user.uuid));
  const missingUser = userUuids.find((uuid) => !found.has(uuid));
  if (missingUser !== undefined) throw new DbError("ENOT_FOUND", `no user ${missingUser}`, { uuid: missingUser });

  const names = [...new Set(provisions.map((p) => p.resource))];
  const resources = await tx.selectFrom("quota_resources").select(["name", "default_limit"]).where("name", "in", names).execute();
  const defaultLimits = new Map(resources.map((r) => [r.name, r.default_limit]));
  const missingResource = names.find((name) => !defaultLimits.has(name));
  if (missingResource !== undefined) {
    throw new DbError("ENOT_FOUND", `no resource ${missingResource}`, { resource: missingResource });
  }
  return defaultLimits;
}

/** The holding, created empty if new, locked against other writers until commit. */
async function lockHolding(tx: Transaction<Database>, engine: DatabaseEngine, provision: Provision): Promise<Selectable<QuotaHoldingsTable>> {
  const key = { user_uuid: provision.userUuid, resource: provision.resource };
  await tx
    .insertInto("quota_holdings")
    .values({ ...key, quota_limit: null, usage: 0, pending_increase: 0, pending_decrease: 0 })
    .onConflict((conflict) => conflict.columns(["user_uuid", "resource"]).doNothing())
    .execute();
  return tx
    .selectFrom("quota_holdings")
    .selectAll()
    .where("user_uuid", "=", key.user_uuid)
    .where("resource", "=", key.resource)
    .$if(engine === "postgres", (query) => query.forUpdate())
    .executeTakeFirstOrThrow();
}

function checkCapacity(holding: Selectable<QuotaHoldingsTable>, defaultLimit: number, provision: Provision, force: boolean): void {
  const limit = holding.quota_limit ?? defaultLimit;
  const figures = {
    userUuid: provision.userUuid,
    resource: provision.resource,
    quantity: provision.quantity,
    limit,
    usage: holding.usage,
    pendingIncrease: holding.pending_increase,
    pendingDecrease: holding.pending_decrease,
  };
  if (provision.quantity > 0) {
    const usageMax = holding.usage + holding.pending_increase + provision.quantity;
    if (!Number.isSafeInteger(usageMax)) throw new DbError("EINVALID", "usage would overflow", figures);
    if (usageMax > limit && !force) {
      throw new DbError("EQUOTA_EXCEEDED", `${provision.resource}: ${provision.quantity} more would exceed the limit of ${limit}`, figures);
    }
  } else if (holding.usage - holding.pending_decrease + provision.quantity < 0) {
    throw new DbError("EQUOTA_NEGATIVE", `${provision.resource}: releasing ${-provision.quantity} would take usage below zero`, figures);
  }
}

async function resolveCommission(
  db: MetadataDatabase,
  serial: number,
  target: "accepted" | "rejected",
  nowMs: number,
): Promise<Commission> {
  checkInteger("serial", serial, { min: 1 });
  checkInteger("nowMs", nowMs, { min: 0 });
  return inTransaction(db, async (tx) => {
    const row = await tx
      .selectFrom("commissions")
      .select(["serial", "state"])
      .where("serial", "=", serial)
      .$if(db.engine === "postgres", (query) => query.forUpdate())
      .executeTakeFirst();
    if (row === undefined) throw new DbError("ENOT_FOUND", `no commission ${serial}`, { serial });
    if (row.state === "pending") {
      const provisions = (await readCommissions(tx, [serial]))[0]!.provisions;
      await settle(tx, serial, provisions, target, nowMs);
    } else if (row.state !== target) {
      throw new DbError("ECOMMISSION_RESOLVED", `commission ${serial} is already ${row.state}`, { serial, state: row.state });
    }
    return (await readCommissions(tx, [serial]))[0]!;
  });
}

/** Moves a pending commission's provisions out of pending, into usage when accepted. */
async function settle(
  tx: Transaction<Database>,
  serial: number,
  provisions: Provision[],
  target: "accepted" | "rejected",
  nowMs: number,
): Promise<void> {
  for (const provision of provisions) {
    const { quantity } = provision;
    const result = await tx
      .updateTable("quota_holdings")
      .set((eb) => ({
        ...(quantity > 0
          ? { pending_increase: eb("pending_increase", "-", quantity) }
          : { pending_decrease: eb("pending_decrease", "-", -quantity) }),
        ...(target === "accepted" ? { usage: eb("usage", "+", quantity) } : {}),
      }))
      .where("user_uuid", "=", provision.userUuid)
      .where("resource", "=", provision.resource)
      .executeTakeFirst();
    assert(result.numUpdatedRows === 1n, `commission ${serial}: holding ${provision.userUuid}/${provision.resource} is gone`);
  }
  const result = await tx
    .updateTable("commissions")
    .set({ state: target, resolved_at: nowMs })
    .where("serial", "=", serial)
    .where("state", "=", "pending")
    .executeTakeFirst();
  assert(result.numUpdatedRows === 1n, `commission ${serial} was not pending`);
}

async function readCommissions(executor: Kysely<Database>, serials: number[]): Promise<Commission[]> {
  if (serials.length === 0) return [];
  const rows = await executor.selectFrom("commissions").selectAll().where("serial", "in", serials).orderBy("serial").execute();
  const provisions = await executor
    .selectFrom("commission_provisions")
    .selectAll()
    .where("serial", "in", serials)
    .orderBy("serial")
    .orderBy("user_uuid")
    .orderBy("resource")
    .execute();
  const bySerial = new Map<number, Provision[]>();
  for (const p of provisions) {
    const list = bySerial.get(p.serial) ?? [];
    list.push({ userUuid: p.user_uuid, resource: p.resource, quantity: p.quantity });
    bySerial.set(p.serial, list);
  }
  return rows.map((row: Selectable<CommissionsTable>) => ({
    serial: row.serial,
    clientKey: row.client_key,
    name: row.name,
    state: row.state,
    issuedAt: row.issued_at,
    resolvedAt: row.resolved_at,
    provisions: (bySerial.get(row.serial) ?? []).sort(compareProvisions),
  }));
}
