/**
 * API tokens: issue, look up, renew, revoke. A token is 32 random bytes in base64url; the
 * database keeps only its SHA-256, so a copy of the database (a backup, a replica) lets no one
 * act as a user. SHA-256 without salt or stretching is enough here, unlike for passwords:
 * the input has 256 bits of entropy, so there is nothing to guess.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Kysely, Selectable, Transaction } from "kysely";
import type { MetadataDatabase } from "../connect.ts";
import { DbError } from "../errors.ts";
import type { Database, TokensTable } from "../schema.ts";
import { inTransaction } from "../transaction.ts";
import { checkInteger, tokenLengthMax } from "./limits.ts";
import { userFromRow, type User } from "./users.ts";

/** 256 bits: unguessable, and as strong as the SHA-256 we keep of it. */
export const tokenBytes = 32;
/**
 * A token's life when the caller says nothing. Keystone's default is 1 hour, Astakos's 30
 * days; a day keeps a CLI session usable without leaving long-lived secrets about.
 */
export const tokenTtlMsDefault = 24 * 60 * 60 * 1000;
/** A year: the longest life a token may be given (service tokens). */
export const tokenTtlMsMax = 365 * 24 * 60 * 60 * 1000;

export interface TokenRecord {
  /** Hex SHA-256 of the token; safe to log and to use as the token's id. */
  tokenHash: string;
  userUuid: string;
  issuedAt: number;
  expiresAt: number;
  revokedAt: number | null;
}

export interface IssuedToken {
  /** The secret, shown to the client once; never stored. */
  token: string;
  record: TokenRecord;
}

export type TokenLookup =
  | { status: "valid"; user: User; token: TokenRecord }
  | { status: "unknown" | "expired" | "revoked" | "user-disabled" };

export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

function tokenFromRow(row: Selectable<TokensTable>): TokenRecord {
  return {
    tokenHash: row.token_hash,
    userUuid: row.user_uuid,
    issuedAt: row.issued_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
  };
}

/** Garbage (empty, huge, not a string) is unknown without a query. */
function isPlausibleToken(token: unknown): token is string {
  return typeof token === "string" && token.length > 0 && token.length <= tokenLengthMax;
}

function checkTtl(ttlMs: number): number {
  return Math.min(checkInteger("ttlMs", ttlMs, { min: 1 }), tokenTtlMsMax);
}

export interface IssueTokenOptions {
  ttlMs?: number;
  nowMs?: number;
}

/** Throws ENOT_FOUND for an unknown user. A disabled user gets a token that never validates. */
export async function issueToken(db: MetadataDatabase, userUuid: string, options: IssueTokenOptions = {}): Promise<IssuedToken> {
  const ttlMs = checkTtl(options.ttlMs ?? tokenTtlMsDefault);
  const nowMs = checkInteger("nowMs", options.nowMs ?? Date.now(), { min: 0 });
  return inTransaction(db, (tx) => insertToken(tx, db, userUuid, ttlMs, nowMs));
}

async function insertToken(
  tx: Transaction<Database>,
  db: MetadataDatabase,
  userUuid: string,
  ttlMs: number,
  nowMs: number,
): Promise<IssuedToken> {
  const user = await tx
    .selectFrom("users")
    .select("uuid")
    .where("uuid", "=", userUuid)
    .$if(db.engine === "postgres", (query) => query.forShare())
    .executeTakeFirst();
  if (user === undefined) throw new DbError("ENOT_FOUND", `no user ${userUuid}`, { uuid: userUuid });
  const token = randomBytes(tokenBytes).toString("base64url");
  const row = await tx
    .insertInto("tokens")
    .values({ token_hash: hashToken(token), user_uuid: userUuid, issued_at: nowMs, expires_at: nowMs + ttlMs, revoked_at: null })
    .returningAll()
    .executeTakeFirstOrThrow();
  return { token, record: tokenFromRow(row) };
}

/** What a token presented by a client is worth at `nowMs`. */
export async function lookupToken(db: MetadataDatabase, token: string, nowMs = Date.now()): Promise<TokenLookup> {
  return lookupTokenWith(db.kysely, token, nowMs);
}

async function lookupTokenWith(executor: Kysely<Database>, token: string, nowMs: number): Promise<TokenLookup> {
  if (!isPlausibleToken(token)) return { status: "unknown" };
  const row = await executor
    .selectFrom("tokens as t")
    .innerJoin("users as u", "u.uuid", "t.user_uuid")
    .select([
      "t.token_hash",
      "t.user_uuid",
      "t.issued_at",
      "t.expires_at",
      "t.revoked_at",
      "u.uuid",
      "u.name",
      "u.email",
      "u.state",
      "u.password_hash",
      "u.created_at",
      "u.updated_at",
    ])
    .where("t.token_hash", "=", hashToken(token))
    .executeTakeFirst();
  if (row === undefined) return { status: "unknown" };
  if (row.revoked_at !== null) return { status: "revoked" };
  if (row.expires_at <= nowMs) return { status: "expired" };
  if (row.state !== "active") return { status: "user-disabled" };
  return { status: "valid", user: userFromRow(row), token: tokenFromRow(row) };
}

/**
 * Astakos's renewal: a valid token is revoked and a new one issued to the same user, in one
 * transaction. Returns the lookup failure when the old token is not valid.
 */
export async function renewToken(
  db: MetadataDatabase,
  token: string,
  options: IssueTokenOptions = {},
): Promise<IssuedToken | { status: "unknown" | "expired" | "revoked" | "user-disabled" }> {
  const ttlMs = checkTtl(options.ttlMs ?? tokenTtlMsDefault);
  const nowMs = checkInteger("nowMs", options.nowMs ?? Date.now(), { min: 0 });
  if (!isPlausibleToken(token)) return { status: "unknown" };
  return inTransaction(db, async (tx) => {
    // The conditional UPDATE is the check: of two renewals racing, one revokes, one finds nothing.
    const revoked = await tx
      .updateTable("tokens")
      .set({ revoked_at: nowMs })
      .where("token_hash", "=", hashToken(token))
      .where("revoked_at", "is", null)
      .where("expires_at", ">", nowMs)
      .where((eb) => eb.exists(eb.selectFrom("users").select("uuid").whereRef("users.uuid", "=", "tokens.user_uuid").where("state", "=", "active")))
      .returning("user_uuid")
      .executeTakeFirst();
    if (revoked === undefined) {
      const lookup = await lookupTokenWith(tx, token, nowMs);
      return lookup.status === "valid" ? { status: "unknown" as const } : lookup;
    }
    return insertToken(tx, db, revoked.user_uuid, ttlMs, nowMs);
  });
}

/** Returns whether the token was live (known, not revoked) and is now revoked. */
export async function revokeToken(db: MetadataDatabase, token: string, nowMs = Date.now()): Promise<boolean> {
  if (!isPlausibleToken(token)) return false;
  const result = await db.kysely
    .updateTable("tokens")
    .set({ revoked_at: checkInteger("nowMs", nowMs, { min: 0 }) })
    .where("token_hash", "=", hashToken(token))
    .where("revoked_at", "is", null)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Revokes every live token of a user (password change, compromise); returns how many. */
export async function revokeUserTokens(db: MetadataDatabase, userUuid: string, nowMs = Date.now()): Promise<number> {
  const result = await db.kysely
    .updateTable("tokens")
    .set({ revoked_at: checkInteger("nowMs", nowMs, { min: 0 }) })
    .where("user_uuid", "=", userUuid)
    .where("revoked_at", "is", null)
    .where("expires_at", ">", nowMs)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** Live tokens of a user, newest first (their hashes only). */
export async function listUserTokens(db: MetadataDatabase, userUuid: string, nowMs = Date.now()): Promise<TokenRecord[]> {
  const rows = await db.kysely
    .selectFrom("tokens")
    .selectAll()
    .where("user_uuid", "=", userUuid)
    .where("revoked_at", "is", null)
    .where("expires_at", ">", nowMs)
    .orderBy("issued_at", "desc")
    .execute();
  return rows.map(tokenFromRow);
}

/** Deletes tokens that expired or were revoked before `beforeMs`; returns how many. */
export async function purgeTokens(db: MetadataDatabase, beforeMs: number): Promise<number> {
  checkInteger("beforeMs", beforeMs, { min: 0 });
  const result = await db.kysely
    .deleteFrom("tokens")
    .where((eb) => eb.or([eb("expires_at", "<", beforeMs), eb("revoked_at", "<", beforeMs)]))
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}
