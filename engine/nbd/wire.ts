/**
 * NBD messages: their typed form and one encoder per message (proto.md "Handshake",
 * "Option types", "Transmission"). The decoders are in parser.ts.
 *
 * Handshake messages are rare, so their encoders return fresh Buffers. Transmission replies
 * are encoded into a caller's buffer (a reply slot's header area, session.ts) at an offset and
 * return the offset after what they wrote: no allocation per reply. Data (READ results,
 * extents, error messages) travels as separate Buffers next to the header, written in the
 * same socket write.
 *
 *   option reply   │ 0x0003e889045565a9 │ option u32 │ type u32 │ length u32 │ data…
 *   simple reply   │ 0x67446698 │ errno u32 │ cookie u64 │ [READ data]
 *   chunk          │ 0x668e33ef │ flags u16 │ type u16 │ cookie u64 │ length u32 │ payload…
 */
import {
  blockStatusExtentBytes,
  blockStatusPrefixBytes,
  errorPrefixBytes,
  exportNameReplyBytes,
  exportNameReplyZeroesBytes,
  IHAVEOPT,
  Info,
  NBDMAGIC,
  offsetDataPrefixBytes,
  offsetHolePayloadBytes,
  optionReplyHeaderBytes,
  OptionReply,
  REPLY_MAGIC,
  ReplyFlag,
  ReplyType,
  serverHandshakeBytes,
  SIMPLE_REPLY_MAGIC,
  simpleReplyHeaderBytes,
  STRUCTURED_REPLY_MAGIC,
  structuredReplyHeaderBytes,
} from "./protocol.ts";

// ── messages the client sends (decoded by parser.ts) ───────────────────────

export interface ClientFlagsMessage {
  kind: "clientFlags";
  flags: number;
}

export interface OptionMessage {
  kind: "option";
  option: number;
  /** The whole option payload (≤ optionLengthMaxBytes). */
  data: Buffer;
}

export type HandshakeMessage = ClientFlagsMessage | OptionMessage;

/** proto.md "Request message": 28 bytes, then a WRITE's payload. */
export interface RequestHeader {
  flags: number;
  type: number;
  cookie: bigint;
  /**
   * u64 on the wire, held as a number: exact below 2^53, and any larger value is still
   * larger than every export (a map holds at most 2^24 blocks of 32 MiB = 2^49 bytes), so
   * range checks refuse it correctly.
   */
  offsetBytes: number;
  lengthBytes: number;
}

export interface Request extends RequestHeader {
  /** A WRITE's payload when it was kept (exactly lengthBytes); undefined when it was discarded. */
  payload: Buffer | undefined;
}

/** One base:allocation or dirty-bitmap extent. */
export interface WireExtent {
  lengthBytes: number;
  flags: number;
}

// ── u64 without BigInt ─────────────────────────────────────────────────────

const twoTo32 = 2 ** 32;

export function writeU64(target: Buffer, at: number, value: number): number {
  target.writeUInt32BE(Math.floor(value / twoTo32), at);
  target.writeUInt32BE(value >>> 0, at + 4);
  return at + 8;
}

export function readU64(source: Buffer, at: number): number {
  return source.readUInt32BE(at) * twoTo32 + source.readUInt32BE(at + 4);
}

// ── handshake ──────────────────────────────────────────────────────────────

/** Server → client greeting: NBDMAGIC, IHAVEOPT, handshake flags. */
export function encodeServerHandshake(handshakeFlags: number): Buffer {
  const out = Buffer.allocUnsafe(serverHandshakeBytes);
  out.writeBigUInt64BE(NBDMAGIC, 0);
  out.writeBigUInt64BE(IHAVEOPT, 8);
  out.writeUInt16BE(handshakeFlags, 16);
  return out;
}

/** Any option reply: header and data. */
export function encodeOptionReply(option: number, replyType: number, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(optionReplyHeaderBytes + data.length);
  out.writeBigUInt64BE(REPLY_MAGIC, 0);
  out.writeUInt32BE(option, 8);
  out.writeUInt32BE(replyType, 12);
  out.writeUInt32BE(data.length, 16);
  out.set(data, optionReplyHeaderBytes);
  return out;
}

export function encodeOptionAck(option: number): Buffer {
  return encodeOptionReply(option, OptionReply.ACK);
}

/** An NBD_REP_ERR_* reply; proto.md allows a UTF-8 message as its data, shown to users by libnbd. */
export function encodeOptionError(option: number, errorType: number, message: string): Buffer {
  return encodeOptionReply(option, errorType, Buffer.from(message, "utf8"));
}

/** NBD_REP_SERVER for NBD_OPT_LIST: u32 name length, name (no description). */
export function encodeServerEntry(option: number, name: string): Buffer {
  const nameBytes = Buffer.from(name, "utf8");
  const data = Buffer.allocUnsafe(4 + nameBytes.length);
  data.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(data, 4);
  return encodeOptionReply(option, OptionReply.SERVER, data);
}

/** NBD_REP_INFO / NBD_INFO_EXPORT: u16 type, u64 size, u16 transmission flags. */
export function encodeInfoExport(option: number, sizeBytes: number, transmissionFlags: number): Buffer {
  const data = Buffer.allocUnsafe(12);
  data.writeUInt16BE(Info.EXPORT, 0);
  writeU64(data, 2, sizeBytes);
  data.writeUInt16BE(transmissionFlags, 10);
  return encodeOptionReply(option, OptionReply.INFO, data);
}

/** NBD_INFO_NAME / NBD_INFO_DESCRIPTION: u16 type, then the string (its length is the rest). */
function encodeInfoString(option: number, infoType: number, text: string): Buffer {
  const textBytes = Buffer.from(text, "utf8");
  const data = Buffer.allocUnsafe(2 + textBytes.length);
  data.writeUInt16BE(infoType, 0);
  textBytes.copy(data, 2);
  return encodeOptionReply(option, OptionReply.INFO, data);
}

export function encodeInfoName(option: number, name: string): Buffer {
  return encodeInfoString(option, Info.NAME, name);
}

export function encodeInfoDescription(option: number, description: string): Buffer {
  return encodeInfoString(option, Info.DESCRIPTION, description);
}

/** NBD_INFO_BLOCK_SIZE: u16 type, u32 minimum, u32 preferred, u32 maximum. */
export function encodeInfoBlockSize(option: number, minimumBytes: number, preferredBytes: number, maximumBytes: number): Buffer {
  const data = Buffer.allocUnsafe(14);
  data.writeUInt16BE(Info.BLOCK_SIZE, 0);
  data.writeUInt32BE(minimumBytes, 2);
  data.writeUInt32BE(preferredBytes, 6);
  data.writeUInt32BE(maximumBytes, 10);
  return encodeOptionReply(option, OptionReply.INFO, data);
}

/** NBD_REP_META_CONTEXT: u32 context id (0 in LIST replies), then the name. */
export function encodeMetaContext(option: number, contextId: number, name: string): Buffer {
  const nameBytes = Buffer.from(name, "utf8");
  const data = Buffer.allocUnsafe(4 + nameBytes.length);
  data.writeUInt32BE(contextId, 0);
  nameBytes.copy(data, 4);
  return encodeOptionReply(option, OptionReply.META_CONTEXT, data);
}

/** NBD_OPT_EXPORT_NAME success: u64 size, u16 flags, and 124 zeros unless NO_ZEROES was agreed. */
export function encodeExportNameReply(sizeBytes: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const out = Buffer.alloc(exportNameReplyBytes + (noZeroes ? 0 : exportNameReplyZeroesBytes));
  writeU64(out, 0, sizeBytes);
  out.writeUInt16BE(transmissionFlags, 8);
  return out;
}

// ── transmission: simple replies ───────────────────────────────────────────

/** Simple reply header; a successful READ's data follows it. */
export function writeSimpleReply(target: Buffer, at: number, errno: number, cookie: bigint): number {
  target.writeUInt32BE(SIMPLE_REPLY_MAGIC, at);
  target.writeUInt32BE(errno, at + 4);
  target.writeBigUInt64BE(cookie, at + 8);
  return at + simpleReplyHeaderBytes;
}

// ── transmission: structured reply chunks ──────────────────────────────────

export function writeChunkHeader(target: Buffer, at: number, flags: number, type: number, cookie: bigint, payloadBytes: number): number {
  target.writeUInt32BE(STRUCTURED_REPLY_MAGIC, at);
  target.writeUInt16BE(flags, at + 4);
  target.writeUInt16BE(type, at + 6);
  target.writeBigUInt64BE(cookie, at + 8);
  target.writeUInt32BE(payloadBytes, at + 16);
  return at + structuredReplyHeaderBytes;
}

/** NBD_REPLY_TYPE_NONE with DONE: the whole reply of a successful non-READ command. */
export function writeNoneChunk(target: Buffer, at: number, cookie: bigint): number {
  return writeChunkHeader(target, at, ReplyFlag.DONE, ReplyType.NONE, cookie, 0);
}

/** NBD_REPLY_TYPE_OFFSET_DATA header and offset; `dataBytes` of data follow as their own Buffer. */
export function writeOffsetDataHeader(target: Buffer, at: number, flags: number, cookie: bigint, offsetBytes: number, dataBytes: number): number {
  const end = writeChunkHeader(target, at, flags, ReplyType.OFFSET_DATA, cookie, offsetDataPrefixBytes + dataBytes);
  return writeU64(target, end, offsetBytes);
}

/** NBD_REPLY_TYPE_OFFSET_HOLE: u64 offset, u32 length; the range reads as zeros. */
export function writeOffsetHoleChunk(target: Buffer, at: number, flags: number, cookie: bigint, offsetBytes: number, lengthBytes: number): number {
  let end = writeChunkHeader(target, at, flags, ReplyType.OFFSET_HOLE, cookie, offsetHolePayloadBytes);
  end = writeU64(target, end, offsetBytes);
  target.writeUInt32BE(lengthBytes, end);
  return end + 4;
}

/** NBD_REPLY_TYPE_BLOCK_STATUS header and context id; the extents (encodeExtents) follow. */
export function writeBlockStatusHeader(target: Buffer, at: number, flags: number, cookie: bigint, contextId: number, extentCount: number): number {
  const end = writeChunkHeader(target, at, flags, ReplyType.BLOCK_STATUS, cookie, blockStatusPrefixBytes + extentCount * blockStatusExtentBytes);
  target.writeUInt32BE(contextId, end);
  return end + blockStatusPrefixBytes;
}

/** The extent descriptors of a BLOCK_STATUS chunk: (u32 length, u32 flags) each. */
export function encodeExtents(extents: readonly WireExtent[]): Buffer {
  const out = Buffer.allocUnsafe(extents.length * blockStatusExtentBytes);
  let at = 0;
  for (const extent of extents) {
    out.writeUInt32BE(extent.lengthBytes, at);
    out.writeUInt32BE(extent.flags, at + 4);
    at += blockStatusExtentBytes;
  }
  return out;
}

/** NBD_REPLY_TYPE_ERROR header: u32 errno, u16 message length; the message follows. */
export function writeErrorChunkHeader(target: Buffer, at: number, flags: number, cookie: bigint, errno: number, messageBytes: number): number {
  let end = writeChunkHeader(target, at, flags, ReplyType.ERROR, cookie, errorPrefixBytes + messageBytes);
  target.writeUInt32BE(errno, end);
  target.writeUInt16BE(messageBytes, end + 4);
  end += errorPrefixBytes;
  return end;
}
