/**
 * Users (Astakos `AstakosUser`, reduced): create, read, list, update, delete.
 * Passwords arrive already hashed (identity/ hashes with scrypt or argon2); this layer stores
 * the string and never sees a password.
 */
import { randomUUID } from "node:crypto";
import type { Kysely, Selectable } from "kysely";
import type { MetadataDatabase } from "../connect.ts";
import { DbError, isUniqueViolation } from "../errors.ts";
import { userStates, type Database, type UserState, type UsersTable } from "../schema.ts";
import { inTransaction } from "../transaction.ts";
import {
  checkInteger,
  checkListLimit,
  checkOptionalText,
  checkText,
  checkUuid,
  emailLengthMax,
  passwordHashLengthMax,
  userNameLengthMax,
} from "./limits.ts";

export interface User {
  uuid: string;
  name: string;
  email: string | null;
  state: UserState;
  passwordHash: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface NewUser {
  name: string;
  email?: string | null;
  passwordHash?: string | null;
  state?: UserState;
  /** Given when importing a user from elsewhere; otherwise a random v4 UUID. */
  uuid?: string;
}

export interface UserPatch {
  name?: string;
  email?: string | null;
  passwordHash?: string | null;
  state?: UserState;
}

export function userFromRow(row: Selectable<UsersTable>): User {
  return {
    uuid: row.uuid,
    name: row.name,
    email: row.email,
    state: row.state,
    passwordHash: row.password_hash,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function checkState(value: unknown): UserState {
  if (!userStates.includes(value as UserState)) {
    throw new DbError("EINVALID", `state must be one of ${userStates.join(", ")}`, { state: value });
  }
  return value as UserState;
}

/** Throws EEXISTS when the name (or the given uuid) is taken. */
export async function createUser(db: MetadataDatabase, input: NewUser, nowMs = Date.now()): Promise<User> {
  const row = {
    uuid: input.uuid === undefined ? randomUUID() : checkUuid("uuid", input.uuid),
    name: checkText("name", input.name, userNameLengthMax),
    email: checkOptionalText("email", input.email, emailLengthMax),
    state: checkState(input.state ?? "active"),
    password_hash: checkOptionalText("passwordHash", input.passwordHash, passwordHashLengthMax),
    created_at: checkInteger("nowMs", nowMs, { min: 0 }),
    updated_at: nowMs,
  };
  // ON CONFLICT DO NOTHING rather than catching the violation: no aborted statement, and the
  // same on both engines.
  const inserted = await db.kysely
    .insertInto("users")
    .values(row)
    .onConflict((conflict) => conflict.doNothing())
    .returningAll()
    .executeTakeFirst();
  if (inserted === undefined) {
    const takenBy = input.uuid === undefined ? "name" : "name or uuid";
    throw new DbError("EEXISTS", `a user with that ${takenBy} already exists`, { name: row.name, uuid: row.uuid });
  }
  return userFromRow(inserted);
}

export async function getUser(db: MetadataDatabase, uuid: string): Promise<User | undefined> {
  const row = await db.kysely.selectFrom("users").selectAll().where("uuid", "=", uuid).executeTakeFirst();
  return row && userFromRow(row);
}

export async function getUserByName(db: MetadataDatabase, name: string): Promise<User | undefined> {
  const row = await db.kysely.selectFrom("users").selectAll().where("name", "=", name).executeTakeFirst();
  return row && userFromRow(row);
}

export interface ListUsersOptions {
  /** Users whose name sorts after this one (the last name of the previous page). */
  afterName?: string;
  state?: UserState;
  limit?: number;
}

/** Users ordered by name. */
export async function listUsers(db: MetadataDatabase, options: ListUsersOptions = {}): Promise<User[]> {
  const { afterName, state } = options;
  const limit = checkListLimit(options.limit, 1000);
  const rows = await db.kysely
    .selectFrom("users")
    .selectAll()
    .$if(afterName !== undefined, (query) => query.where("name", ">", afterName!))
    .$if(state !== undefined, (query) => query.where("state", "=", checkState(state)))
    .orderBy("name")
    .limit(limit)
    .execute();
  return rows.map(userFromRow);
}

/** Throws ENOT_FOUND for an unknown uuid, EEXISTS when renaming onto a taken name. */
export async function updateUser(db: MetadataDatabase, uuid: string, patch: UserPatch, nowMs = Date.now()): Promise<User> {
  const changes: Partial<Selectable<UsersTable>> = { updated_at: checkInteger("nowMs", nowMs, { min: 0 }) };
  if (patch.name !== undefined) changes.name = checkText("name", patch.name, userNameLengthMax);
  if (patch.email !== undefined) changes.email = checkOptionalText("email", patch.email, emailLengthMax);
  if (patch.state !== undefined) changes.state = checkState(patch.state);
  if (patch.passwordHash !== undefined) {
    changes.password_hash = checkOptionalText("passwordHash", patch.passwordHash, passwordHashLengthMax);
  }
  let row: Selectable<UsersTable> | undefined;
  try {
    // One statement outside any transaction: a violation aborts nothing else.
    row = await db.kysely.updateTable("users").set(changes).where("uuid", "=", uuid).returningAll().executeTakeFirst();
  } catch (error) {
    if (isUniqueViolation(error)) {
      throw new DbError("EEXISTS", `user ${patch.name} already exists`, { name: patch.name }, { cause: error });
    }
    throw error;
  }
  if (row === undefined) throw new DbError("ENOT_FOUND", `no user ${uuid}`, { uuid });
  return userFromRow(row);
}

/**
 * Deletes a user with their tokens and quota holdings. Refused (EBUSY) while a pending
 * commission charges the user: a pending commission can always be resolved later
 * (synnefo.md D.3), so its holdings must stay.
 */
export async function deleteUser(db: MetadataDatabase, uuid: string): Promise<void> {
  await inTransaction(db, async (tx) => {
    // PostgreSQL: the row lock orders this against issueCommission, which holds the user's
    // row FOR SHARE while it charges them.
    const user = await tx
      .selectFrom("users")
      .select("uuid")
      .where("uuid", "=", uuid)
      .$if(db.engine === "postgres", (query) => query.forUpdate())
      .executeTakeFirst();
    if (user === undefined) throw new DbError("ENOT_FOUND", `no user ${uuid}`, { uuid });
    const pending = await pendingSerialsOf(tx, uuid, 10);
    if (pending.length > 0) {
      throw new DbError("EBUSY", `user ${uuid} is charged by pending commissions`, { uuid, serials: pending });
    }
    await tx.deleteFrom("users").where("uuid", "=", uuid).execute();
  });
}

async function pendingSerialsOf(executor: Kysely<Database>, userUuid: string, limit: number): Promise<number[]> {
  const rows = await executor
    .selectFrom("commission_provisions as p")
    .innerJoin("commissions as c", "c.serial", "p.serial")
    .select("c.serial")
    .distinct()
    .where("p.user_uuid", "=", userUuid)
    .where("c.state", "=", "pending")
    .orderBy("c.serial")
    .limit(limit)
    .execute();
  return rows.map((row) => row.serial);
}
