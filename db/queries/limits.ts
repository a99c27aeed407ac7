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

// Pithos+ (synnefo.md B.1, swift.md 4–5 and 8). Names are measured in UTF-8 bytes, as Swift
// measures them; metadata in characters, which is never stricter than a byte count.

/** swift.md 4: a container name of more than 256 bytes → 400 (`max_container_name_length`). */
export const pithosContainerNameBytesMax = 256;
/** swift.md 5: an object name of more than 1024 bytes → 400 (`max_object_name_length`). */
export const pithosObjectPathBytesMax = 1024;
/** swift.md 8: `container_listing_limit`, the default and the maximum of `limit`. */
export const pithosListingLimitMax = 10_000;
/**
 * Metadata per account, container or version. Swift's /info: max_meta_count 90, name 128,
 * value 256 bytes (Pithos+ allows 32 keys); the gateways enforce their protocol's figures, this
 * layer the widest of them.
 */
export const pithosMetaKeysMax = 90;
export const pithosMetaKeyLengthMax = 128;
export const pithosMetaValueLengthMax = 256;
/** Groups an account defines (`X-Account-Group-*`): each is one header of ≤ 8192 bytes. */
export const pithosGroupsPerAccountMax = 128;
export const pithosGroupNameLengthMax = 128;
/** A header of 8192 bytes holds about 220 uuids; 1000 leaves room for POSTs that merge. */
export const pithosGroupMembersMax = 1000;
/** Entries of one object's read plus write lists (`X-Object-Sharing`, one header). */
export const pithosSharingEntriesMax = 1000;
/** Engine map names are short generated ids; anything near this is a bug. */
export const pithosMapNameLengthMax = 256;
/** Merkle roots and MD5s are hex (64, 32); a quoted manifest etag is a little longer. */
export const pithosHashLengthMax = 128;
/** Content-Type, Content-Encoding, Content-Disposition values: header values (≤ 8192 bytes). */
export const pithosHeaderValueLengthMax = 8192;
/** `X-Object-Manifest: <container>/<prefix>`: a container name, a slash and an object path. */
export const pithosManifestLengthMax = pithosContainerNameBytesMax + 1 + pithosObjectPathBytesMax;
/** swift.md 9: /info `slo.max_manifest_size` 8 MiB (the PUT body; the stored form is alike). */
export const pithosSloManifestLengthMax = 8 * 1024 * 1024;
