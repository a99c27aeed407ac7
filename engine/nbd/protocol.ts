/**
 * NBD wire constants, from the protocol specification (the nbd project's doc/proto.md).
 * Everything on the wire is big-endian. Names follow the spec without the NBD_ prefix.
 */

// ── handshake (fixed newstyle) ─────────────────────────────────────────────
export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
/** proto.md: option reply magic. */
export const REPLY_MAGIC = 0x0003e889045565a9n;

export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const FLAG_C_FIXED_NEWSTYLE = FLAG_FIXED_NEWSTYLE;
export const FLAG_C_NO_ZEROES = FLAG_NO_ZEROES;
/** What we send: fixed newstyle, and no 124 zero bytes after an EXPORT_NAME reply. */
export const serverHandshakeFlags = FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES;
/** proto.md "Client flags": a client setting any other bit gets disconnected. */
export const clientFlagsKnown = FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES;

/** NBDMAGIC, IHAVEOPT, u16 handshake flags. */
export const serverHandshakeBytes = 18;
export const clientFlagsBytes = 4;
/** IHAVEOPT, u32 option, u32 length. */
export const optionHeaderBytes = 16;
/** Reply magic, u32 option, u32 reply type, u32 length. */
export const optionReplyHeaderBytes = 20;
/** EXPORT_NAME success: u64 size, u16 transmission flags, then 124 zeros unless NO_ZEROES. */
export const exportNameReplyBytes = 10;
export const exportNameReplyZeroesBytes = 124;

export const Option = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

const replyError = 2 ** 31;
export const OptionReply = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: replyError + 1,
  ERR_POLICY: replyError + 2,
  ERR_INVALID: replyError + 3,
  ERR_PLATFORM: replyError + 4,
  ERR_TLS_REQD: replyError + 5,
  ERR_UNKNOWN: replyError + 6,
  ERR_SHUTDOWN: replyError + 7,
  ERR_BLOCK_SIZE_REQD: replyError + 8,
  ERR_TOO_BIG: replyError + 9,
} as const;

export const Info = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

/** Transmission flags (u16), advertised per export. */
export const TransmissionFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

// ── transmission ───────────────────────────────────────────────────────────
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;
export const requestHeaderBytes = 28;
export const simpleReplyHeaderBytes = 16;
export const structuredReplyHeaderBytes = 20;
/** Fixed part of a structured chunk's payload, per chunk type. */
export const offsetDataPrefixBytes = 8; // u64 offset, then the data
export const offsetHolePayloadBytes = 12; // u64 offset, u32 length
export const blockStatusPrefixBytes = 4; // u32 context id, then the extents
export const blockStatusExtentBytes = 8; // u32 length, u32 flags
export const errorPrefixBytes = 6; // u32 errno, u16 message length, then the message

export const Command = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
  RESIZE: 8,
} as const;

export const CommandFlag = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

export const ReplyFlag = { DONE: 1 << 0 } as const;

export const ReplyType = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 2 ** 15 + 1,
  ERROR_OFFSET: 2 ** 15 + 2,
} as const;

/** base:allocation extent flags. */
export const AllocationFlag = { HOLE: 1 << 0, ZERO: 1 << 1 } as const;
/** qemu:dirty-bitmap:NAME extent flags (qemu's docs/interop/nbd.txt): bit 0 = dirty. */
export const DirtyFlag = { DIRTY: 1 << 0 } as const;

/** Meta context names (proto.md "Metadata querying"; qemu's docs/interop/nbd.txt). */
export const baseAllocationContext = "base:allocation";
export const baseNamespace = "base:";
export const qemuNamespace = "qemu:";
export const dirtyBitmapContextPrefix = "qemu:dirty-bitmap:";

/** proto.md: error values are the Linux errno numbers. */
export const Errno = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

// ── limits ─────────────────────────────────────────────────────────────────
/** Largest READ/WRITE we accept: 32 MiB, what qemu and libnbd send at most (advertised as the maximum block size). */
export const requestLengthMaxBytes = 32 * 1024 * 1024;
/** Option payloads are names and short lists; 64 KiB is far above any legitimate one. */
export const optionLengthMaxBytes = 64 * 1024;
/** proto.md: export names and strings are at most 4096 bytes. */
export const stringLengthMaxBytes = 4096;
/**
 * NBD_INFO_BLOCK_SIZE we advertise (proto.md "Block size constraints"): any alignment works
 * (the volume splits requests at block boundaries itself), 4096 is what a guest file system
 * writes and avoids read-modify-write of partial pages, and the maximum is the request limit.
 */
export const blockSizeMinimumBytes = 1;
export const blockSizePreferredBytes = 4096;
export const blockSizeMaximumBytes = requestLengthMaxBytes;
