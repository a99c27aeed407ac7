/**
 * One table of metadata-database error codes. The HTTP services map these to their API's
 * status and body (identity: 404, 409, 413 `overLimit`…), the CLI to a one-line message.
 *
 * A DbError is an *operating* error (bad input, unknown name, a quota that would be
 * exceeded). A broken invariant is a bug: it is an AssertionError and crashes loudly. Driver
 * errors (connection refused, disk full) pass through unchanged.
 */
export const dbErrorCodes = {
  /** A user, resource, commission, container, object or version does not exist. */
  ENOT_FOUND: "not found",
  /** A user name (or uuid) is already taken. */
  EEXISTS: "already exists",
  /** Pithos+: deleting a container that still holds objects (Swift 409). */
  ECONFLICT: "conflict with the current state",
  /** Pithos+: `If-None-Match: *` on an existing object, or not the expected current version (412). */
  EPRECONDITION: "precondition failed",
  /** An argument outside what the operation accepts (empty name, non-integer quantity…). */
  EINVALID: "invalid argument",
  /**
   * Astakos `NoCapacityError`: the provision would take usage (with pending) over the limit.
   * Pithos+: a version would take a container or account past its quota_bytes (413).
   */
  EQUOTA_EXCEEDED: "quota exceeded",
  /** Astakos `NoQuantityError`: a release would take usage (with pending) below zero. */
  EQUOTA_NEGATIVE: "quota usage would go below zero",
  /** Accept of a rejected commission, reject of an accepted one. */
  ECOMMISSION_RESOLVED: "commission already resolved the other way",
  /** A client key reused for a commission with different provisions. */
  ECLIENT_KEY_REUSED: "client key already used for a different commission",
  /** Deleting a user who is charged by a pending commission. */
  EBUSY: "pending commissions",
  /** The URL names no engine we speak. */
  EUNSUPPORTED: "unsupported database URL",
} as const;

export type DbErrorCode = keyof typeof dbErrorCodes;

export class DbError extends Error {
  readonly code: DbErrorCode;
  /** Extra facts for the caller (the limit, the usage…), for error bodies and logs. */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: DbErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DbError";
    this.code = code;
    this.details = details;
  }
}

export function isDbError(value: unknown, code?: DbErrorCode): value is DbError {
  return value instanceof DbError && (code === undefined || value.code === code);
}

/**
 * A unique or primary-key constraint refused a write. PostgreSQL: SQLSTATE 23505; node:sqlite:
 * extended result codes SQLITE_CONSTRAINT_UNIQUE (2067) and SQLITE_CONSTRAINT_PRIMARYKEY (1555).
 */
export function isUniqueViolation(error: unknown): boolean {
  const { code, errcode } = (error ?? {}) as { code?: unknown; errcode?: unknown };
  return code === "23505" || errcode === 2067 || errcode === 1555;
}
