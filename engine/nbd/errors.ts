/**
 * Errors of the NBD layer, and the one mapping from engine errors to each NBD wire:
 *
 *   EngineError.code ──errnoByEngineCode──────► errno in a simple reply / ERROR chunk
 *                    └─optionErrorByEngineCode─► NBD_REP_ERR_* when GO/INFO cannot open an export
 *   NbdProtocolError ──► the stream is unparseable: the connection is closed (terminal state)
 *
 * proto.md "Error values": the values are the Linux errno numbers; a server SHOULD map
 * anything else onto EINVAL (bad request) or EIO (failure it cannot describe).
 */
import { isEngineError, type EngineErrorCode } from "../errors.ts";
import { Errno, OptionReply } from "./protocol.ts";

/** Why a byte stream cannot be parsed any further; the session closes the connection. */
export type ProtocolErrorCode =
  | "BAD_CLIENT_FLAGS"
  | "BAD_OPTION_MAGIC"
  | "OPTION_TOO_LONG"
  | "BAD_REQUEST_MAGIC";

export class NbdProtocolError extends Error {
  readonly code: ProtocolErrorCode;

  constructor(code: ProtocolErrorCode, message: string) {
    super(message);
    this.name = "NbdProtocolError";
    this.code = code;
  }
}

export function isProtocolError(value: unknown): value is NbdProtocolError {
  return value instanceof NbdProtocolError;
}

/**
 * Engine error code → errno on the wire. Range errors are normally caught before the
 * volume is called (with ENOSPC for writes, as proto.md asks); this row is the backstop.
 * ECLOSED happens only while the server shuts down: proto.md reserves ESHUTDOWN for that.
 * EVOLUME_LOCKED reaches a request only when our lease was lost: the volume refuses writes,
 * an I/O error to the guest.
 */
const errnoByEngineCode: Readonly<Record<EngineErrorCode, number>> = {
  ENOT_FOUND: Errno.EIO, // an object the map names is missing: damage, not a bad request
  EEXISTS: Errno.EIO,
  EVOLUME_LOCKED: Errno.EIO,
  ERANGE_PAST_END: Errno.EINVAL,
  EREAD_ONLY: Errno.EPERM,
  EINVALID: Errno.EINVAL,
  ENOT_FROZEN: Errno.EIO,
  ECORRUPT: Errno.EIO,
  ENO_STORE: Errno.EIO,
  ECLOSED: Errno.ESHUTDOWN,
  EIO: Errno.EIO,
};

/** System errno codes (EngineError details.errno from the file backend) worth passing on. */
const errnoBySystemCode: Readonly<Record<string, number>> = {
  ENOSPC: Errno.ENOSPC,
  EDQUOT: Errno.ENOSPC,
  ENOMEM: Errno.ENOMEM,
  EROFS: Errno.EPERM,
};

/** The errno to send for a failed volume operation. Not an EngineError: a bug below us, EIO. */
export function errnoOf(error: unknown): number {
  if (!isEngineError(error)) return Errno.EIO;
  if (error.code === "EIO") {
    const system = error.details["errno"];
    if (typeof system === "string" && system in errnoBySystemCode) return errnoBySystemCode[system] as number;
  }
  return errnoByEngineCode[error.code];
}

/** Option reply error when an export cannot be opened for GO/INFO. */
const optionErrorByEngineCode: Readonly<Record<EngineErrorCode, number>> = {
  ENOT_FOUND: OptionReply.ERR_UNKNOWN,
  EINVALID: OptionReply.ERR_UNKNOWN, // a name the engine cannot even parse names nothing
  EVOLUME_LOCKED: OptionReply.ERR_POLICY, // served by another process: refused, with its holder in the message
  EREAD_ONLY: OptionReply.ERR_POLICY,
  EEXISTS: OptionReply.ERR_POLICY,
  ERANGE_PAST_END: OptionReply.ERR_POLICY,
  ENOT_FROZEN: OptionReply.ERR_POLICY,
  ECORRUPT: OptionReply.ERR_POLICY,
  ENO_STORE: OptionReply.ERR_POLICY,
  EIO: OptionReply.ERR_POLICY,
  ECLOSED: OptionReply.ERR_SHUTDOWN,
};

export function optionErrorOf(error: unknown): number {
  return isEngineError(error) ? optionErrorByEngineCode[error.code] : OptionReply.ERR_POLICY;
}

/** Names of errno values, for logs and test messages. */
export function errnoName(errno: number): string {
  const found = Object.entries(Errno).find(([, value]) => value === errno);
  return found === undefined ? `errno ${errno}` : found[0];
}
