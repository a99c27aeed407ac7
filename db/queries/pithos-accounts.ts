/**
 * Pithos+ accounts (synnefo.md B.2 `/v1/{account}`, swift.md 3).
 *
 * An account is a user uuid, created on first use. Its usage is the sum of its containers'
 * counters (current versions only: history is free, synnefo.md B.5), which every object write
 * keeps under the container's row lock. Groups (`X-Account-Group-<name>`) are rows of
 * pithos_groups, so "which groups is user X in" is an index lookup for sharing checks.
 */
import type { Kysely } from "kysely";
import type { MetadataDatabase } from "../connect.ts";
import { DbError } from "../errors.ts";
import type { Database } from "../schema.ts";
import { inTransaction } from "../transaction.ts";
import { checkInteger, pithosGroupMembersMax, pithosGroupNameLengthMax, pithosGroupsPerAccountMax } from "./limits.ts";
import { checkAccount, checkMeta, checkQuota, insertAccount, lockAccount, mergeMeta, parseMeta, type PithosMeta } from "./pithos-common.ts";
import { compareNames } from "./pithos-listing.ts";

export type PithosGroups = Record<string, string[]>;

export interface PithosAccount {
  account: string;
  meta: PithosMeta;
  groups: PithosGroups;
  quotaBytes: number | null;
  createdAt: number;
  /** The latest change to the account or any of its containers (Last-Modified). */
  modifiedAt: number;
  containerCount: number;
  objectCount: number;
  bytesUsed: number;
}

/** Creates the account's row if it has none; Pithos+ accounts exist from first use. */
export async function ensureAccount(db: MetadataDatabase, account: string, nowMs = Date.now()): Promise<void> {
  await insertAccount(db.kysely, checkAccount(account), checkInteger("nowMs", nowMs, { min: 0 }));
}

/** Undefined when the account was never used. */
export async function getAccount(db: MetadataDatabase, account: string): Promise<PithosAccount | undefined> {
  return readAccount(db.kysely, checkAccount(account));
}

async function readAccount(executor: Kysely<Database>, account: string): Promise<PithosAccount | undefined> {
  const row = await executor.selectFrom("pithos_accounts").selectAll().where("account", "=", account).executeTakeFirst();
  if (row === undefined) return undefined;
  const totals = await executor
    .selectFrom("pithos_containers")
    .select((eb) => [
      eb.fn.countAll<number>().as("containers"),
      eb.fn.coalesce(eb.fn.sum<number>("object_count"), eb.lit(0)).as("objects"),
      eb.fn.coalesce(eb.fn.sum<number>("bytes_used"), eb.lit(0)).as("bytes"),
      eb.fn.max("modified_at").as("modified"),
    ])
    .where("account", "=", account)
    .executeTakeFirstOrThrow();
  return {
    account: row.account,
    meta: parseMeta(row.meta),
    groups: await readGroups(executor, account),
    quotaBytes: row.quota_bytes,
    createdAt: row.created_at,
    modifiedAt: Math.max(row.modified_at, Number(totals.modified ?? 0)),
    // COUNT and SUM come back as strings from PostgreSQL (numeric for SUM of bigint).
    containerCount: Number(totals.containers),
    objectCount: Number(totals.objects),
    bytesUsed: Number(totals.bytes),
  };
}

async function readGroups(executor: Kysely<Database>, account: string): Promise<PithosGroups> {
  const rows = await executor.selectFrom("pithos_groups").select(["name", "member"]).where("account", "=", account).execute();
  const groups: PithosGroups = {};
  for (const name of [...new Set(rows.map((row) => row.name))].sort(compareNames)) {
    groups[name] = rows
      .filter((row) => row.name === name)
      .map((row) => row.member)
      .sort(compareNames);
  }
  return groups;
}

export interface ReplaceOption {
  /** Replace everything (Pithos POST without `update`); otherwise merge (default). */
  replace?: boolean;
}

/** Account meta; an empty value removes its key. Returns the account. */
export async function setAccountMeta(
  db: MetadataDatabase,
  account: string,
  meta: PithosMeta,
  options: ReplaceOption = {},
  nowMs = Date.now(),
): Promise<PithosAccount> {
  const checkedAccount = checkAccount(account);
  const changes = checkMeta(meta);
  checkInteger("nowMs", nowMs, { min: 0 });
  return inTransaction(db, async (tx) => {
    const row = await lockAccount(tx, db.engine, checkedAccount, nowMs);
    const merged = checkMeta(mergeMeta(parseMeta(row.meta), changes, options.replace === true));
    await tx
      .updateTable("pithos_accounts")
      .set({ meta: JSON.stringify(merged), modified_at: nowMs })
      .where("account", "=", checkedAccount)
      .execute();
    return (await readAccount(tx, checkedAccount))!;
  });
}

/**
 * Groups (`X-Account-Group-<name>: uuid,uuid`). Merging replaces the groups named and keeps
 * the others; an empty member list removes its group. Returns the account.
 */
export async function setAccountGroups(
  db: MetadataDatabase,
  account: string,
  groups: PithosGroups,
  options: ReplaceOption = {},
  nowMs = Date.now(),
): Promise<PithosAccount> {
  const checkedAccount = checkAccount(account);
  const checked = checkGroups(groups);
  checkInteger("nowMs", nowMs, { min: 0 });
  return inTransaction(db, async (tx) => {
    await lockAccount(tx, db.engine, checkedAccount, nowMs);
    if (options.replace === true) {
      await tx.deleteFrom("pithos_groups").where("account", "=", checkedAccount).execute();
    } else if (checked.size > 0) {
      await tx.deleteFrom("pithos_groups").where("account", "=", checkedAccount).where("name", "in", [...checked.keys()]).execute();
    }
    const rows = [...checked].flatMap(([name, members]) => members.map((member) => ({ account: checkedAccount, name, member })));
    if (rows.length > 0) await tx.insertInto("pithos_groups").values(rows).execute();
    const count = await tx
      .selectFrom("pithos_groups")
      .select((eb) => eb.fn.count<number>("name").distinct().as("n"))
      .where("account", "=", checkedAccount)
      .executeTakeFirstOrThrow();
    if (Number(count.n) > pithosGroupsPerAccountMax) {
      throw new DbError("EINVALID", `an account has at most ${pithosGroupsPerAccountMax} groups`, { groups: Number(count.n) });
    }
    await tx.updateTable("pithos_accounts").set({ modified_at: nowMs }).where("account", "=", checkedAccount).execute();
    return (await readAccount(tx, checkedAccount))!;
  });
}

/** Group names appear in sharing entries as `<account>:<name>`, between commas. */
// eslint-disable-next-line no-control-regex
const groupNamePattern = /^[^\s,;:=*/\u0000-\u001f\u007f]+$/u;

function checkGroups(groups: unknown): Map<string, string[]> {
  if (groups === null || typeof groups !== "object" || Array.isArray(groups)) {
    throw new DbError("EINVALID", "groups must be an object of member lists", { groups });
  }
  const checked = new Map<string, string[]>();
  for (const [name, members] of Object.entries(groups as Record<string, unknown>)) {
    if (name.length > pithosGroupNameLengthMax || !groupNamePattern.test(name) || !name.isWellFormed()) {
      throw new DbError("EINVALID", `group names are 1 to ${pithosGroupNameLengthMax} characters without spaces or ,;:=*/`, {
        group: name,
      });
    }
    if (!Array.isArray(members) || members.length > pithosGroupMembersMax) {
      throw new DbError("EINVALID", `a group is a list of at most ${pithosGroupMembersMax} user uuids`, { group: name });
    }
    checked.set(name, [...new Set(members.map((member) => checkAccount(member)))]);
  }
  return checked;
}

/** Null: unlimited. Returns the account. */
export async function setAccountQuota(
  db: MetadataDatabase,
  account: string,
  quotaBytes: number | null,
  nowMs = Date.now(),
): Promise<PithosAccount> {
  const checkedAccount = checkAccount(account);
  const quota = checkQuota(quotaBytes);
  checkInteger("nowMs", nowMs, { min: 0 });
  return inTransaction(db, async (tx) => {
    await lockAccount(tx, db.engine, checkedAccount, nowMs);
    await tx
      .updateTable("pithos_accounts")
      .set({ quota_bytes: quota, modified_at: nowMs })
      .where("account", "=", checkedAccount)
      .execute();
    return (await readAccount(tx, checkedAccount))!;
  });
}
