/**
 * One table of engine error codes. Every layer above maps these to its own wire:
 * the NBD server to errno values, the HTTP gateways to status codes and bodies,
 * the CLI to a one-line message and a non-zero exit code.
 *
 * An EngineError is an *operating* error (bad input, missing name, lock held, disk
 * full). A broken invariant is a bug: it is an AssertionError and crashes loudly.
 */
export const engineErrorCodes = {
  /** A named volume, snapshot, image or object does not exist. */
  ENOT_FOUND: "not found",
  /** A name is already taken. */
  EEXISTS: "already exists",
  /** A writable open of a volume another live process holds. */
  EVOLUME_LOCKED: "volume is locked by another process",
  /** An I/O request reaching past the end of a volume. */
  ERANGE_PAST_END: "request reaches past the end",
  /** A write to a read-only open or a frozen map. */
  EREAD_ONLY: "read-only",
  /** An argument outside what the operation accepts (shrink, bad size, bad name…). */
  EINVALID: "invalid argument",
  /** Clone or hash of a map that is not frozen. */
  ENOT_FROZEN: "map is not frozen",
  /** A header, map or object that fails its checksum or format checks. */
  ECORRUPT: "corrupt metadata",
  /** The store has no header: `okeanos store init` was not run. */
  ENO_STORE: "store is not initialised",
  /** The volume object was closed. */
  ECLOSED: "volume is closed",
  /** The backing store failed (disk full, permission, I/O error). */
  EIO: "storage I/O error",
} as const;

export type EngineErrorCode = keyof typeof engineErrorCodes;

export class EngineError extends Error {
  readonly code: EngineErrorCode;
  /** Extra facts for the caller (e.g. the lock holder), never needed to act on the error. */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: EngineErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "EngineError";
    this.code = code;
    this.details = details;
  }
}

export function isEngineError(value: unknown, code?: EngineErrorCode): value is EngineError {
  return value instanceof EngineError && (code === undefined || value.code === code);
}
