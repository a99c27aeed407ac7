/**
 * The wire format of Ceph's `lock` object class (src/cls/lock/cls_lock_ops.h, cls_lock_types.h),
 * so locks go through ordinary async read/write ops (rados_write_op_exec, rados_read_op_exec)
 * instead of librados' synchronous rados_lock_* calls.
 *
 * Ceph's encoding: little-endian integers; a string is a u32 length then its bytes; a
 * versioned struct is u8 version, u8 compat version, u32 length, then its fields
 * (ENCODE_START / ENCODE_FINISH); a map is a u32 count then key, value pairs.
 *
 *   lock      { name, u8 type, cookie, tag, description, utime duration, u8 flags }
 *   unlock    { name, cookie }
 *   break_lock { name, entity_name locker, cookie }
 *   get_info  { name } → { map<locker_id, locker_info> lockers, u8 type, tag }
 *   locker_id   { entity_name { u8 type, s64 num }, cookie }
 *   locker_info { utime expiration, entity_addr addr, description }
 *   utime     u32 seconds, u32 nanoseconds (zero: no expiry)
 */

export const lockClass = "lock";
/** ClsLockType: LOCK_EXCLUSIVE, LOCK_SHARED (src/cls/lock/cls_lock_types.h). */
const lockTypeExclusive = 1;
const lockTypeShared = 2;
/** LIBRADOS_LOCK_FLAG_MUST_RENEW: renew our own lock, fail with ENOENT if we no longer hold it. */
export const lockFlagMustRenew = 2;

/** CEPH_ENTITY_TYPE_CLIENT, for naming a locker `client.<num>`. */
const entityTypeClient = 0x08;

class Encoder {
  readonly #chunks: Buffer[] = [];

  u8(value: number): this {
    this.#chunks.push(Buffer.from([value]));
    return this;
  }

  u32(value: number): this {
    const chunk = Buffer.alloc(4);
    chunk.writeUInt32LE(value);
    this.#chunks.push(chunk);
    return this;
  }

  s64(value: bigint): this {
    const chunk = Buffer.alloc(8);
    chunk.writeBigInt64LE(value);
    this.#chunks.push(chunk);
    return this;
  }

  string(value: string): this {
    const bytes = Buffer.from(value, "utf8");
    this.u32(bytes.length);
    this.#chunks.push(bytes);
    return this;
  }

  /** utime_t from milliseconds. */
  utime(milliseconds: number): this {
    return this.u32(Math.floor(milliseconds / 1000)).u32((milliseconds % 1000) * 1_000_000);
  }

  /** A versioned struct (version 1, compat 1) around the fields `body` encodes. */
  struct(body: (encoder: Encoder) => void): this {
    const inner = new Encoder();
    body(inner);
    const bytes = inner.finish();
    this.u8(1).u8(1).u32(bytes.length);
    this.#chunks.push(bytes);
    return this;
  }

  finish(): Buffer {
    return Buffer.concat(this.#chunks);
  }
}

class Decoder {
  readonly #bytes: Buffer;
  #offset = 0;

  constructor(bytes: Buffer) {
    this.#bytes = bytes;
  }

  u8(): number {
    return this.#bytes.readUInt8(this.#advance(1));
  }

  u32(): number {
    return this.#bytes.readUInt32LE(this.#advance(4));
  }

  s64(): bigint {
    return this.#bytes.readBigInt64LE(this.#advance(8));
  }

  string(): string {
    const length = this.u32();
    const start = this.#advance(length);
    return this.#bytes.toString("utf8", start, start + length);
  }

  skip(length: number): void {
    this.#advance(length);
  }

  peekU8(): number {
    return this.#bytes.readUInt8(this.#offset);
  }

  /** Decodes a versioned struct with `body`, then continues after it whatever `body` read. */
  struct<T>(body: (decoder: Decoder) => T): T {
    this.u8();
    this.u8();
    const length = this.u32();
    const end = this.#offset + length;
    if (end > this.#bytes.length) throw new RangeError(`struct of ${length} bytes past the end`);
    const value = body(this);
    this.#offset = end;
    return value;
  }

  #advance(length: number): number {
    const start = this.#offset;
    if (start + length > this.#bytes.length) throw new RangeError(`read of ${length} bytes past the end`);
    this.#offset += length;
    return start;
  }
}

export interface LockRequest {
  name: string;
  cookie: string;
  description: string;
  durationMs: number;
  flags: number;
  /** Shared lockers coexist (with the same tag, "" here); exclusive is the default. */
  shared?: boolean;
}

export function encodeLock(request: LockRequest): Buffer {
  return new Encoder()
    .struct((fields) =>
      fields.string(request.name).u8(request.shared === true ? lockTypeShared : lockTypeExclusive).string(request.cookie).string("").string(request.description).utime(request.durationMs).u8(request.flags),
    )
    .finish();
}

export function encodeUnlock(name: string, cookie: string): Buffer {
  return new Encoder().struct((fields) => fields.string(name).string(cookie)).finish();
}

export function encodeBreakLock(name: string, locker: Locker): Buffer {
  return new Encoder().struct((fields) => fields.string(name).u8(locker.entityType).s64(locker.entityNum).string(locker.cookie)).finish();
}

export function encodeGetInfo(name: string): Buffer {
  return new Encoder().struct((fields) => fields.string(name)).finish();
}

export interface Locker {
  /** e.g. `client.4134`. */
  entity: string;
  entityType: number;
  entityNum: bigint;
  cookie: string;
  /** Milliseconds since the epoch; 0 for a lock without expiry. */
  expirationMs: number;
  description: string;
}

/** A get_info reply: the lock's current holders (the class drops expired ones before answering). */
export function decodeGetInfoReply(bytes: Buffer): Locker[] {
  return new Decoder(bytes).struct((reply) => {
    const lockers: Locker[] = [];
    const count = reply.u32();
    for (let index = 0; index < count; index++) {
      const { entityType, entityNum, cookie } = reply.struct((id) => ({ entityType: id.u8(), entityNum: id.s64(), cookie: id.string() }));
      const entity = `${entityType === entityTypeClient ? "client" : `type${entityType}`}.${entityNum}`;
      const { expirationMs, description } = reply.struct((info) => {
        const seconds = info.u32();
        const nanoseconds = info.u32();
        skipEntityAddress(info);
        return { expirationMs: seconds * 1000 + Math.floor(nanoseconds / 1_000_000), description: info.string() };
      });
      lockers.push({ entity, entityType, entityNum, cookie, expirationMs, description });
    }
    return lockers;
  });
}

/**
 * entity_addr_t: a marker byte 1 then a versioned struct (current encoding), or the legacy
 * fixed 136 bytes (u32 0, u32 nonce, 128-byte sockaddr_storage) whose first byte is 0.
 */
function skipEntityAddress(decoder: Decoder): void {
  if (decoder.peekU8() === 1) {
    decoder.u8();
    decoder.struct(() => undefined);
  } else {
    decoder.skip(136);
  }
}
