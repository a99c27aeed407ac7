/**
 * The metadata database's tables as Kysely sees them. Column names are snake_case as stored;
 * the query functions (db/queries/) map rows to camelCase records.
 *
 * Conventions, the same on both engines:
 * - Times are integers, milliseconds since the Unix epoch (`*_at`): SQLite INTEGER,
 *   PostgreSQL bigint (read back as a JS number by connect.ts's int8 parser).
 * - Quantities (quota limits, usage, deltas) are integers in the resource's unit (bytes,
 *   count); bigint on PostgreSQL. They stay below 2^53, checked on the way in.
 * - States are short lowercase text with a CHECK constraint, never booleans.
 *
 * Identity (synnefo.md D):
 *
 *   users ─┬─< tokens                      (a token row per issued token; only its SHA-256)
 *          └─< quota_holdings >── quota_resources
 *                  ^
 *   commissions ─< commission_provisions   (provision → holding (user_uuid, resource))
 */
import type { Generated } from "kysely";

export const userStates = ["active", "disabled"] as const;
export type UserState = (typeof userStates)[number];

export const commissionStates = ["pending", "accepted", "rejected"] as const;
export type CommissionState = (typeof commissionStates)[number];

export interface UsersTable {
  uuid: string;
  /** Login name; unique, case-sensitive. */
  name: string;
  email: string | null;
  state: UserState;
  /** A PHC-format hash (scrypt/argon2) written by identity/; null: no password login. */
  password_hash: string | null;
  created_at: number;
  updated_at: number;
}

export interface TokensTable {
  /** Hex SHA-256 of the token as the client sends it; the token itself is never stored. */
  token_hash: string;
  user_uuid: string;
  issued_at: number;
  expires_at: number;
  revoked_at: number | null;
}

/** A kind of thing a service counts against users (`compute.vm`, `volume.disk`…). */
export interface QuotaResourcesTable {
  name: string;
  description: string;
  /** `count` or `bytes`; shown to users, never converted. */
  unit: string;
  /** The limit of a user who has no explicit one (Astakos's base quota). */
  default_limit: number;
}

/**
 * A user's holding of one resource (Astakos `Holding`, holder `user:<uuid>`, no project).
 * The interval [usage − pending_decrease, usage + pending_increase] is Astakos's
 * [usage_min, usage_max]: pending commissions are reserved at issue and folded into `usage`
 * when accepted.
 */
export interface QuotaHoldingsTable {
  user_uuid: string;
  resource: string;
  /** Null: the resource's default_limit applies. */
  quota_limit: number | null;
  /** Accepted usage. */
  usage: number;
  /** Sum of the positive quantities of this holding's pending commissions. */
  pending_increase: number;
  /** Sum of the magnitudes of the negative quantities of its pending commissions. */
  pending_decrease: number;
}

export interface CommissionsTable {
  /** Assigned by the database, increasing, never reused (Astakos's serial). */
  serial: Generated<number>;
  /**
   * The issuer's idempotency key, unique: a service persists it before issuing, and an issue
   * retried with the same key (after a timeout or a crash) returns the same commission.
   */
  client_key: string;
  /** Free text for people (`create vm 42`). */
  name: string;
  state: CommissionState;
  issued_at: number;
  resolved_at: number | null;
}

export interface CommissionProvisionsTable {
  serial: number;
  user_uuid: string;
  resource: string;
  /** Non-zero; positive reserves, negative releases. */
  quantity: number;
}

export interface Database {
  users: UsersTable;
  tokens: TokensTable;
  quota_resources: QuotaResourcesTable;
  quota_holdings: QuotaHoldingsTable;
  commissions: CommissionsTable;
  commission_provisions: CommissionProvisionsTable;
}
