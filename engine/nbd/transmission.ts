/**
 * The transmission phase of one connection: what each command does to the volume, and the
 * reply it gets (proto.md "Transmission", "Request types", "Structured reply chunk message").
 *
 *   request ──refusal()──► errno ──────────────────────────────► error reply
 *           └─execute()──► volume.read / write / writeZeroes / trim / flush / blockStatus
 *                           └─► reply segments: [header area…, data…] written as one write
 *
 * Validation happens once, before the volume is touched (nbdkit's backend_pwrite habit): an
 * unknown command or flag is EINVAL, a write to a read-only export EPERM, a range past the
 * end EINVAL (ENOSPC for writes, proto.md "Request errors"). None of these ends the
 * connection. execute() never rejects: a failed volume operation becomes an error reply with
 * the errno of errors.ts's one table.
 */
import assert, { AssertionError } from "node:assert/strict";
import type { Volume } from "../volume.ts";
import type { BufferPool } from "./buffer-pool.ts";
import { errnoName, errnoOf } from "./errors.ts";
import { allocationExtents, dirtyExtents, extentsBytes } from "./extents.ts";
import { blockStatusExtentsMax, readChunksMax } from "./limits.ts";
import type { MetaContext } from "./meta-context.ts";
import { AllocationFlag, Command, CommandFlag, Errno, ReplyFlag, requestLengthMaxBytes, TransmissionFlag } from "./protocol.ts";
import {
  encodeExtents,
  writeBlockStatusHeader,
  writeErrorChunkHeader,
  writeNoneChunk,
  writeOffsetDataHeader,
  writeOffsetHoleChunk,
  writeSimpleReply,
  type Request,
  type RequestHeader,
  type WireExtent,
} from "./wire.ts";

/**
 * Bytes of header area each in-flight request owns for its reply: every chunk header we
 * write (20 bytes) plus its fixed payload prefix (≤ 12 bytes) is ≤ 32 bytes, and a reply has
 * at most readChunksMax chunks (a READ) or one per meta context (BLOCK_STATUS).
 */
export const replyHeaderAreaBytes = 32 * readChunksMax;
/** Error chunk messages are for people reading logs; keep them short. */
const errorMessageBytesMax = 512;

/**
 * The transmission flags an export advertises (proto.md "Transmission flags"), derived
 * from what the volume can do and what was negotiated: nothing we do not implement.
 * - FLUSH, CACHE and multi-conn always (all connections share one Volume: exports.ts);
 * - DF only with structured replies (proto.md: it means "one data chunk");
 * - FUA, TRIM, WRITE_ZEROES and FAST_ZERO only when writable.
 * Not ROTATIONAL (object storage has no seek penalty) and not RESIZE (not implemented).
 */
export function transmissionFlagsFor(readOnly: boolean, structured: boolean): number {
  let flags = TransmissionFlag.HAS_FLAGS | TransmissionFlag.SEND_FLUSH | TransmissionFlag.CAN_MULTI_CONN | TransmissionFlag.SEND_CACHE;
  if (structured) flags |= TransmissionFlag.SEND_DF;
  if (readOnly) return flags | TransmissionFlag.READ_ONLY;
  return flags | TransmissionFlag.SEND_FUA | TransmissionFlag.SEND_TRIM | TransmissionFlag.SEND_WRITE_ZEROES | TransmissionFlag.SEND_FAST_ZERO;
}

export interface TransmissionOptions {
  volume: Volume;
  /** What GO / EXPORT_NAME advertised. */
  transmissionFlags: number;
  structured: boolean;
  contexts: readonly MetaContext[];
  pool: BufferPool;
}

export interface Refusal {
  errno: number;
  message: string;
}

/**
 * A reply: its segments, written as one batch, and the pooled buffer among them (a READ's
 * data) that goes back to the pool once the socket has written it.
 */
export interface Reply {
  segments: Buffer[];
  pooled: Buffer | undefined;
}

function reply(segments: Buffer[], pooled?: Buffer): Reply {
  return { segments, pooled };
}

export class Transmission {
  readonly volume: Volume;
  readonly structured: boolean;
  readonly contexts: readonly MetaContext[];
  readonly #pool: BufferPool;
  readonly #readOnly: boolean;
  /** Command flags each command accepts on this connection (proto.md "Command flags"). */
  readonly #allowedFlags: ReadonlyMap<number, number>;

  constructor(options: TransmissionOptions) {
    this.volume = options.volume;
    this.structured = options.structured;
    this.contexts = options.contexts;
    this.#pool = options.pool;
    const flags = options.transmissionFlags;
    this.#readOnly = (flags & TransmissionFlag.READ_ONLY) !== 0;
    const fua = flags & TransmissionFlag.SEND_FUA ? CommandFlag.FUA : 0;
    const fastZero = flags & TransmissionFlag.SEND_FAST_ZERO ? CommandFlag.FAST_ZERO : 0;
    this.#allowedFlags = new Map([
      [Command.READ, flags & TransmissionFlag.SEND_DF ? CommandFlag.DF : 0],
      [Command.WRITE, fua],
      [Command.FLUSH, 0],
      [Command.TRIM, fua],
      [Command.CACHE, 0],
      [Command.WRITE_ZEROES, fua | CommandFlag.NO_HOLE | fastZero],
      [Command.BLOCK_STATUS, CommandFlag.REQ_ONE],
    ]);
  }

  /** Why this request must be refused, or undefined. Pure: called again for a WRITE's header. */
  refusal(request: RequestHeader): Refusal | undefined {
    const allowed = this.#allowedFlags.get(request.type);
    if (allowed === undefined) return { errno: Errno.EINVAL, message: `unknown command ${request.type}` };
    if ((request.flags & ~allowed) !== 0) return { errno: Errno.EINVAL, message: `flags 0x${request.flags.toString(16)} not allowed on command ${request.type}` };
    const writes = request.type === Command.WRITE || request.type === Command.WRITE_ZEROES || request.type === Command.TRIM;
    if (writes && this.#readOnly) return { errno: Errno.EPERM, message: "the export is read-only" };
    if (request.type === Command.BLOCK_STATUS) {
      if (this.contexts.length === 0) return { errno: Errno.EINVAL, message: "no meta context was negotiated" };
      if (request.lengthBytes === 0) return { errno: Errno.EINVAL, message: "block status of an empty range" };
    }
    if ((request.type === Command.READ || request.type === Command.WRITE) && request.lengthBytes > requestLengthMaxBytes) {
      return { errno: Errno.EINVAL, message: `length ${request.lengthBytes} is over the maximum block size ${requestLengthMaxBytes}` };
    }
    if (request.type !== Command.FLUSH && request.offsetBytes + request.lengthBytes > this.volume.sizeBytes) {
      // proto.md "Request errors": ENOSPC for a write past the end, EINVAL for the rest.
      const errno = request.type === Command.WRITE || request.type === Command.WRITE_ZEROES ? Errno.ENOSPC : Errno.EINVAL;
      return { errno, message: `range ${request.offsetBytes}+${request.lengthBytes} is past the end (${this.volume.sizeBytes} bytes)` };
    }
    return undefined;
  }

  /** Runs a request and encodes its reply into `area` (this request's own header area). */
  async execute(request: Request, area: Buffer): Promise<Reply> {
    assert.ok(area.length >= replyHeaderAreaBytes);
    const refused = this.refusal(request);
    if (refused !== undefined) return reply(this.errorReply(request, area, refused.errno, refused.message));
    try {
      switch (request.type) {
        case Command.READ:
          return await this.#read(request, area);
        case Command.WRITE:
          return reply(await this.#write(request, area));
        case Command.FLUSH:
          await this.volume.flush();
          return reply(this.#done(request, area));
        case Command.TRIM:
          if (request.lengthBytes > 0) await this.volume.trim(request.offsetBytes, request.lengthBytes, { fua: this.#fua(request) });
          return reply(this.#done(request, area));
        case Command.WRITE_ZEROES:
          return reply(await this.#writeZeroes(request, area));
        case Command.CACHE:
          // proto.md: advisory. Our blocks are read on demand from the store, whose own
          // cache (and the page cache) is the only one there is to warm: nothing to do.
          return reply(this.#done(request, area));
        case Command.BLOCK_STATUS:
          return reply(this.#blockStatus(request, area));
        default:
          assert.fail(`refusal() lets command ${request.type} through`);
      }
    } catch (error) {
      if (error instanceof AssertionError) throw error; // a bug: crash loudly, never an errno
      return reply(this.errorReply(request, area, errnoOf(error), error instanceof Error ? error.message : String(error)));
    }
  }

  /** An error reply: simple, or one ERROR chunk with DONE. */
  errorReply(request: RequestHeader, area: Buffer, errno: number, message: string): Buffer[] {
    assert.ok(errno !== 0);
    if (!this.structured) return [area.subarray(0, writeSimpleReply(area, 0, errno, request.cookie))];
    const text = Buffer.from(`${errnoName(errno)}: ${message}`.slice(0, errorMessageBytesMax), "utf8").subarray(0, errorMessageBytesMax);
    return [area.subarray(0, writeErrorChunkHeader(area, 0, ReplyFlag.DONE, request.cookie, errno, text.length)), text];
  }

  /** Success without data: a simple reply, or a NONE chunk with DONE. */
  #done(request: RequestHeader, area: Buffer): Buffer[] {
    const end = this.structured ? writeNoneChunk(area, 0, request.cookie) : writeSimpleReply(area, 0, 0, request.cookie);
    return [area.subarray(0, end)];
  }

  #fua(request: RequestHeader): boolean {
    return (request.flags & CommandFlag.FUA) !== 0;
  }

  async #write(request: Request, area: Buffer): Promise<Buffer[]> {
    const payload = request.payload;
    assert.ok(payload !== undefined && payload.length === request.lengthBytes, "a valid WRITE keeps its payload");
    if (payload.length === 0) return this.#done(request, area);
    await this.volume.write(request.offsetBytes, payload, { fua: this.#fua(request) });
    // Only after success: a failed write may leave block writes still reading the buffer.
    this.#pool.give(payload);
    request.payload = undefined;
    return this.#done(request, area);
  }

  /**
   * WRITE_ZEROES. FAST_ZERO (proto.md: fail fast with ENOTSUP unless zeroing is faster than
   * writing zeros) is honoured when every block the range touches either becomes a zero
   * entry (whole blocks, no NO_HOLE: a map change, no data I/O) or is a zero entry already;
   * NO_HOLE, or a partial block with data, needs a data write, so that is ENOTSUP.
   */
  async #writeZeroes(request: Request, area: Buffer): Promise<Buffer[]> {
    const noHole = (request.flags & CommandFlag.NO_HOLE) !== 0;
    if ((request.flags & CommandFlag.FAST_ZERO) !== 0 && !this.#canZeroFast(request.offsetBytes, request.lengthBytes, noHole)) {
      return this.errorReply(request, area, Errno.ENOTSUP, "zeroing this range needs a data write");
    }
    if (request.lengthBytes > 0) await this.volume.writeZeroes(request.offsetBytes, request.lengthBytes, { fua: this.#fua(request), noHole });
    return this.#done(request, area);
  }

  #canZeroFast(offsetBytes: number, lengthBytes: number, noHole: boolean): boolean {
    if (lengthBytes === 0) return true;
    if (noHole) return false;
    const blockSizeBytes = this.volume.blockSizeBytes;
    const endBytes = offsetBytes + lengthBytes;
    // Only the first and the last block can be partly covered; the volume zeroes a partly
    // covered block by writing zeros unless its entry is zero already.
    const firstBlock = Math.floor(offsetBytes / blockSizeBytes);
    const lastBlock = Math.floor((endBytes - 1) / blockSizeBytes);
    for (const index of firstBlock === lastBlock ? [firstBlock] : [firstBlock, lastBlock]) {
      const blockStart = index * blockSizeBytes;
      const blockEnd = Math.min(blockStart + blockSizeBytes, this.volume.sizeBytes);
      if (offsetBytes <= blockStart && endBytes >= blockEnd) continue;
      const from = Math.max(offsetBytes, blockStart);
      const to = Math.min(endBytes, blockEnd);
      if (!this.volume.blockStatus(from, to - from).every((extent) => extent.zero)) return false;
    }
    return true;
  }

  /**
   * READ. Simple replies carry the data after the header. Structured replies follow the map
   * unless DF: zero entries become OFFSET_HOLE chunks (no zeros on the wire, and no read at
   * all when the whole range is a hole), the rest OFFSET_DATA; more than readChunksMax
   * pieces, or DF, is one OFFSET_DATA chunk (proto.md: with DF the reply is one data chunk).
   */
  async #read(request: Request, area: Buffer): Promise<Reply> {
    const { offsetBytes, lengthBytes, cookie } = request;
    if (lengthBytes === 0) {
      return reply(this.structured ? this.#done(request, area) : [area.subarray(0, writeSimpleReply(area, 0, 0, cookie))]);
    }
    if (!this.structured) {
      const data = await this.#readPooled(offsetBytes, lengthBytes);
      return reply([area.subarray(0, writeSimpleReply(area, 0, 0, cookie)), data], data);
    }
    const fragment = (request.flags & CommandFlag.DF) === 0;
    const extents = fragment ? allocationExtents(this.volume, offsetBytes, lengthBytes, readChunksMax + 1) : [];
    const holes = extents.filter((extent) => extent.flags & AllocationFlag.ZERO).length;
    if (extents.length === 1 && holes === 1) {
      return reply([area.subarray(0, writeOffsetHoleChunk(area, 0, ReplyFlag.DONE, cookie, offsetBytes, lengthBytes))]);
    }
    const data = await this.#readPooled(offsetBytes, lengthBytes);
    if (holes === 0 || extents.length > readChunksMax) {
      return reply([area.subarray(0, writeOffsetDataHeader(area, 0, ReplyFlag.DONE, cookie, offsetBytes, lengthBytes)), data], data);
    }
    assert.equal(extentsBytes(extents), lengthBytes, "a read's extents cover it exactly");
    return reply(this.#readChunks(request, area, extents, data), data);
  }

  /**
   * Reads into a pooled buffer. On failure the buffer is abandoned, not given back: block
   * reads of the failed request may still be filling it.
   */
  async #readPooled(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.volume.read(offsetBytes, lengthBytes, this.#pool.take(lengthBytes));
  }

  /** One chunk per extent, in order; DONE on the last; all headers in this request's area. */
  #readChunks(request: Request, area: Buffer, extents: readonly WireExtent[], data: Buffer): Buffer[] {
    const segments: Buffer[] = [];
    let at = 0;
    let position = 0;
    extents.forEach((extent, index) => {
      const flags = index === extents.length - 1 ? ReplyFlag.DONE : 0;
      const offsetBytes = request.offsetBytes + position;
      const start = at;
      if (extent.flags & AllocationFlag.ZERO) {
        at = writeOffsetHoleChunk(area, at, flags, request.cookie, offsetBytes, extent.lengthBytes);
        segments.push(area.subarray(start, at));
      } else {
        at = writeOffsetDataHeader(area, at, flags, request.cookie, offsetBytes, extent.lengthBytes);
        segments.push(area.subarray(start, at), data.subarray(position, position + extent.lengthBytes));
      }
      position += extent.lengthBytes;
    });
    assert.ok(at <= area.length);
    return segments;
  }

  /** One BLOCK_STATUS chunk per selected context (proto.md: each exactly once), DONE on the last. */
  #blockStatus(request: Request, area: Buffer): Buffer[] {
    const extentsMax = request.flags & CommandFlag.REQ_ONE ? 1 : blockStatusExtentsMax;
    const segments: Buffer[] = [];
    let at = 0;
    this.contexts.forEach((context, index) => {
      const extents =
        context.kind === "allocation"
          ? allocationExtents(this.volume, request.offsetBytes, request.lengthBytes, extentsMax)
          : dirtyExtents(context.ranges, request.offsetBytes, request.lengthBytes, extentsMax);
      assert.ok(extents.length >= 1 && extents.length <= extentsMax && extentsBytes(extents) <= request.lengthBytes);
      const flags = index === this.contexts.length - 1 ? ReplyFlag.DONE : 0;
      const start = at;
      at = writeBlockStatusHeader(area, at, flags, request.cookie, context.id, extents.length);
      segments.push(area.subarray(start, at), encodeExtents(extents));
    });
    assert.ok(at <= area.length);
    return segments;
  }
}
