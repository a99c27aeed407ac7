/**
 * Named limits on what the query functions accept, and the checks that apply them. Each
 * public query function validates its input here once; past that point values are trusted.
 */
import { DbError } from "../errors.ts";

/** Keystone v3 allows user names of 255 characters; Astakos's are e-mail addresses (≤ 254). */
export const userNameLengthMax = 255;
/** RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle brackets. */
export const emailLengthMax = 254;
/** A PHC string of scrypt or argon2 is about 100 characters; ten times that is a bug. */
export const passwordHashLengthMax = 1024;
/** Resource names are dotted identifiers (`compute.ram`); Astakos's longest is 25. */
export const resourceNameLengthMax = 64;
export const resourceDescriptionLengthMax = 1024;
/** A service's idempotency key: a prefix and an id or two (`compute:vm:<uuid>:create`). */
export const clientKeyLengthMax = 255;
export const commissionNameLengthMax = 1024;
/**
 * Provisions in one commission. A VM create charges 4 resources (vm, cpu, ram, disk) for one
 * user, twice that once projects are charged too; 64 leaves room and bounds the rows a
 * single transaction locks.
 */
export const provisionsPerCommissionMax = 64;
/** Rows one list call returns at most; callers page with `after`. */
export const listLimitMax = 10_000;
/** Tokens we make are 43 characters; anything much longer is garbage, refused unhashed. */
export const tokenLengthMax = 512;

export function checkText(what: string, value: unknown, lengthMax: number): string {
  if (typeof value !== "string" || value.length === 0 || value.length > lengthMax) {
    throw new DbError("EINVALID", `${what} must be a string of 1 to ${lengthMax} characters`, { [what]: value });
  }
  // Control characters (C0, DEL) in a name or key are always a mistake and break logs.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) {
    throw new DbError("EINVALID", `${what} must not contain control characters`, { [what]: value });
  }
  return value;
}

export function checkOptionalText(what: string, value: unknown, lengthMax: number): string | null {
  return value === null || value === undefined ? null : checkText(what, value, lengthMax);
}

export function checkResourceName(value: unknown): string {
  const name = checkText("resource", value, resourceNameLengthMax);
  if (!/^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*$/.test(name)) {
    throw new DbError("EINVALID", "resource names are dotted lowercase identifiers (compute.ram)", { resource: name });
  }
  return name;
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function checkUuid(what: string, value: unknown): string {
  if (typeof value !== "string" || !uuidPattern.test(value)) {
    throw new DbError("EINVALID", `${what} must be a lowercase UUID`, { [what]: value });
  }
  return value;
}

/** An integer both engines store exactly (SQLite INTEGER, PostgreSQL bigint, a JS number). */
export function checkInteger(what: string, value: unknown, { min = Number.MIN_SAFE_INTEGER } = {}): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw new DbError("EINVALID", `${what} must be a safe integer${min > Number.MIN_SAFE_INTEGER ? ` ≥ ${min}` : ""}`, {
      [what]: value,
    });
  }
  return value;
}

export function checkListLimit(value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  return Math.min(checkInteger("limit", value, { min: 1 }), listLimitMax);
}
