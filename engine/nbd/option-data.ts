/**
 * Decoders for the payloads of the options that carry structure (proto.md "Option types"):
 *
 *   INFO / GO              u32 name length, name, u16 count, count × u16 info type
 *   LIST / SET_META_CONTEXT u32 name length, name, u32 count, count × (u32 length, query)
 *
 * A payload that does not add up exactly is NBD_REP_ERR_INVALID; a string longer than
 * proto.md's 4096-byte limit is NBD_REP_ERR_TOO_BIG. Either way the session answers and the
 * handshake goes on: the option's bytes were already consumed whole.
 */
import { metaContextQueriesMax } from "./limits.ts";
import { OptionReply, stringLengthMaxBytes } from "./protocol.ts";

export interface OptionDataError {
  error: number;
  message: string;
}

export interface InfoRequest {
  exportName: string;
  infoTypes: number[];
}

export interface MetaContextRequest {
  exportName: string;
  queries: string[];
}

export function isOptionDataError(value: unknown): value is OptionDataError {
  return typeof value === "object" && value !== null && "error" in value;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Reads fields in order; every method returns undefined once the data runs out. */
class Reader {
  readonly #data: Buffer;
  #at = 0;

  constructor(data: Buffer) {
    this.#data = data;
  }

  get remaining(): number {
    return this.#data.length - this.#at;
  }

  u16(): number | undefined {
    if (this.remaining < 2) return undefined;
    const value = this.#data.readUInt16BE(this.#at);
    this.#at += 2;
    return value;
  }

  u32(): number | undefined {
    if (this.remaining < 4) return undefined;
    const value = this.#data.readUInt32BE(this.#at);
    this.#at += 4;
    return value;
  }

  /** A UTF-8 string of `lengthBytes`; an OptionDataError if it is too long or not UTF-8. */
  string(lengthBytes: number, what: string): string | OptionDataError | undefined {
    if (this.remaining < lengthBytes) return undefined;
    if (lengthBytes > stringLengthMaxBytes) return { error: OptionReply.ERR_TOO_BIG, message: `${what} is longer than ${stringLengthMaxBytes} bytes` };
    const bytes = this.#data.subarray(this.#at, this.#at + lengthBytes);
    this.#at += lengthBytes;
    try {
      return utf8.decode(bytes);
    } catch {
      return { error: OptionReply.ERR_INVALID, message: `${what} is not UTF-8` };
    }
  }
}

function truncated(what: string): OptionDataError {
  return { error: OptionReply.ERR_INVALID, message: `${what}: option data is truncated or has trailing bytes` };
}

export function decodeInfoRequest(data: Buffer, what: string): InfoRequest | OptionDataError {
  const reader = new Reader(data);
  const nameBytes = reader.u32();
  if (nameBytes === undefined) return truncated(what);
  const exportName = reader.string(nameBytes, "export name");
  if (exportName === undefined) return truncated(what);
  if (isOptionDataError(exportName)) return exportName;
  const count = reader.u16();
  if (count === undefined || reader.remaining !== count * 2) return truncated(what);
  const infoTypes: number[] = [];
  for (let index = 0; index < count; index++) infoTypes.push(reader.u16() as number);
  return { exportName, infoTypes };
}

export function decodeMetaContextRequest(data: Buffer, what: string): MetaContextRequest | OptionDataError {
  const reader = new Reader(data);
  const nameBytes = reader.u32();
  if (nameBytes === undefined) return truncated(what);
  const exportName = reader.string(nameBytes, "export name");
  if (exportName === undefined) return truncated(what);
  if (isOptionDataError(exportName)) return exportName;
  const count = reader.u32();
  if (count === undefined) return truncated(what);
  // Each query takes at least its 4-byte length: a count the data cannot hold is malformed.
  if (count > reader.remaining / 4) return truncated(what);
  if (count > metaContextQueriesMax) return { error: OptionReply.ERR_TOO_BIG, message: `more than ${metaContextQueriesMax} queries` };
  const queries: string[] = [];
  for (let index = 0; index < count; index++) {
    const queryBytes = reader.u32();
    if (queryBytes === undefined) return truncated(what);
    const query = reader.string(queryBytes, "meta context query");
    if (query === undefined) return truncated(what);
    if (isOptionDataError(query)) return query;
    queries.push(query);
  }
  if (reader.remaining !== 0) return truncated(what);
  return { exportName, queries };
}
