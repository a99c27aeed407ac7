/**
 * Framing of the engine's small metadata objects (store header, map headers, directory
 * entries): a fixed preamble that identifies and checks the payload, then msgpack.
 *
 *   0        8          12         16         20
 *   +--------+----------+----------+----------+-------------------+
 *   | magic  | version  | length   | crc32    | msgpack payload   |
 *   | 8 B    | u32 BE   | u32 BE   | u32 BE   | `length` bytes    |
 *   +--------+----------+----------+----------+-------------------+
 *
 * A truncated, foreign or bit-flipped object fails decoding with ECORRUPT before any of
 * its fields is trusted.
 */
import { crc32 } from "node:zlib";
// The subpaths are msgpackr's plain JavaScript: its main entry also loads msgpackr-extract, a
// native string decoder that only pays off on large string-heavy messages and costs every
// process 50–70 ms to load; these objects are a few hundred bytes. Same bytes either way.
import { pack } from "msgpackr/pack";
import { unpack } from "msgpackr/unpack";
import { EngineError } from "../errors.ts";

const preambleBytes = 20;
/** Metadata objects are small; anything larger than 1 MiB is not one of ours. */
const payloadLengthMaxBytes = 1024 * 1024;

export function encodeFramed(magic: string, version: number, payload: unknown): Buffer {
  const magicBytes = magicToBytes(magic);
  const body = pack(payload);
  const out = Buffer.alloc(preambleBytes + body.length);
  magicBytes.copy(out, 0);
  out.writeUInt32BE(version, 8);
  out.writeUInt32BE(body.length, 12);
  out.writeUInt32BE(crc32(body), 16);
  body.copy(out, preambleBytes);
  return out;
}

/** Decodes a framed object; `what` names it in error messages. */
export function decodeFramed(magic: string, versionMax: number, data: Buffer, what: string): { version: number; payload: unknown } {
  if (data.length < preambleBytes) throw corrupt(what, `truncated (${data.length} bytes)`);
  if (!data.subarray(0, 8).equals(magicToBytes(magic))) throw corrupt(what, "bad magic");
  const version = data.readUInt32BE(8);
  if (version === 0 || version > versionMax) throw corrupt(what, `unsupported format version ${version}`);
  const lengthBytes = data.readUInt32BE(12);
  if (lengthBytes > payloadLengthMaxBytes || preambleBytes + lengthBytes > data.length) throw corrupt(what, "truncated payload");
  const body = data.subarray(preambleBytes, preambleBytes + lengthBytes);
  if (crc32(body) !== data.readUInt32BE(16)) throw corrupt(what, "checksum mismatch");
  try {
    return { version, payload: unpack(body) };
  } catch (error) {
    throw corrupt(what, "undecodable payload", error);
  }
}

function magicToBytes(magic: string): Buffer {
  const bytes = Buffer.alloc(8);
  bytes.write(magic, "latin1");
  return bytes;
}

function corrupt(what: string, reason: string, cause?: unknown): EngineError {
  return new EngineError("ECORRUPT", `${what} is corrupt: ${reason}`, { object: what }, { cause });
}

/** Field checks for decoded payloads: a wrong type is corruption, not a crash. */
export function field<T>(record: Record<string, unknown>, key: string, check: (value: unknown) => value is T, what: string): T {
  const value = record[key];
  if (!check(value)) throw corrupt(what, `field ${key} is missing or invalid`);
  return value;
}

export const isString = (value: unknown): value is string => typeof value === "string";
export const isSafeNonNegativeInteger = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;
export const isBoolean = (value: unknown): value is boolean => typeof value === "boolean";
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
