/**
 * Resumable decoders for what an NBD client sends. Pure: no sockets, no timers. Bytes are
 * pushed as they arrive, split anywhere; `next()` returns the next complete message, or
 * undefined when more bytes are needed. A stream that cannot be parsed any further throws
 * NbdProtocolError and the parser must not be used again.
 *
 *   push(chunk) ──► ByteQueue ──► HandshakeParser.next()  clientFlags, then options
 *                            └──► RequestParser.next()    request headers (+ WRITE payload)
 *
 * The session switches from the handshake parser to the request parser after GO or
 * EXPORT_NAME; both read the same queue, so bytes that arrived early are not lost.
 *
 * Bounded buffering: the handshake parser holds at most one option (its length is checked
 * against optionLengthMaxBytes before any of its payload is buffered); the request parser
 * copies a WRITE payload straight from the chunks into its destination (or skips it), so
 * the queue never holds more than a partial header plus the chunks the caller has not
 * pulled yet (the session stops reading the socket while it is not pulling).
 */
import assert from "node:assert/strict";
import { NbdProtocolError } from "./errors.ts";
import {
  clientFlagsBytes,
  Command,
  IHAVEOPT,
  optionHeaderBytes,
  optionLengthMaxBytes,
  REQUEST_MAGIC,
  requestHeaderBytes,
} from "./protocol.ts";
import type { HandshakeMessage, Request, RequestHeader } from "./wire.ts";
import { readU64 } from "./wire.ts";

/**
 * A FIFO of received chunks read without concatenating them:
 *
 *   chunks: [ c0 ][ c1 ][ c2 ]      head = index of c0, offset = bytes of c0 consumed
 *            ^^^ consumed
 *
 * A chunk may be borrowed (pushBorrowed): a view of the socket's reused read buffer, valid
 * only until the next read. The caller parses what it can, then calls unborrow(), which
 * copies the unconsumed rest (a partial header, or what arrived while we stopped parsing)
 * into memory of its own.
 */
export class ByteQueue {
  #chunks: Buffer[] = [];
  #head = 0;
  #offset = 0;
  #length = 0;
  #borrowed: Buffer | undefined;

  get length(): number {
    return this.#length;
  }

  push(chunk: Buffer): void {
    assert.ok(this.#borrowed === undefined, "a borrowed chunk must be given back before the next push");
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** Pushes a chunk whose memory is reused after the caller returns: unborrow() before then. */
  pushBorrowed(chunk: Buffer): void {
    this.push(chunk);
    if (chunk.length > 0) this.#borrowed = chunk;
  }

  /** Stops referencing the borrowed chunk: its unconsumed bytes, if any, are copied. */
  unborrow(): void {
    const chunk = this.#borrowed;
    this.#borrowed = undefined;
    const last = this.#chunks.length - 1;
    if (chunk === undefined || last < this.#head || this.#chunks[last] !== chunk) return; // consumed
    const consumed = last === this.#head ? this.#offset : 0;
    this.#chunks[last] = Buffer.from(chunk.subarray(consumed));
    if (last === this.#head) this.#offset = 0;
  }

  /**
   * `n` contiguous bytes at the front, not consumed: a view into the first chunk when it
   * holds them all (the common case), else copied into `scratch`.
   */
  peek(n: number, scratch: Buffer): Buffer {
    assert.ok(n <= this.#length && n <= scratch.length);
    const first = this.#chunks[this.#head] as Buffer;
    if (first.length - this.#offset >= n) return first.subarray(this.#offset, this.#offset + n);
    this.#copyOut(scratch, 0, n, false);
    return scratch.subarray(0, n);
  }

  /** Copies up to `n` bytes into `target` at `at`, consuming them; returns how many. */
  consumeInto(target: Buffer, at: number, n: number): number {
    const count = Math.min(n, this.#length);
    this.#copyOut(target, at, count, true);
    return count;
  }

  /** Drops up to `n` bytes; returns how many. */
  skip(n: number): number {
    let remaining = Math.min(n, this.#length);
    const skipped = remaining;
    while (remaining > 0) {
      const first = this.#chunks[this.#head] as Buffer;
      const step = Math.min(remaining, first.length - this.#offset);
      this.#advance(step, first.length);
      remaining -= step;
    }
    return skipped;
  }

  /** Forgets everything (the connection is closing). */
  clear(): void {
    this.#borrowed = undefined;
    this.#chunks = [];
    this.#head = 0;
    this.#offset = 0;
    this.#length = 0;
  }

  #copyOut(target: Buffer, at: number, n: number, consume: boolean): void {
    let copied = 0;
    let index = this.#head;
    let offset = this.#offset;
    while (copied < n) {
      const chunk = this.#chunks[index] as Buffer;
      const step = Math.min(n - copied, chunk.length - offset);
      chunk.copy(target, at + copied, offset, offset + step);
      copied += step;
      if (consume) {
        this.#advance(step, chunk.length);
        index = this.#head;
        offset = this.#offset;
      } else {
        index++;
        offset = 0;
      }
    }
  }

  #advance(n: number, chunkLength: number): void {
    this.#offset += n;
    this.#length -= n;
    if (this.#offset === chunkLength) {
      this.#head++;
      this.#offset = 0;
      // Compact now and then so the array does not grow with every chunk ever received.
      if (this.#head === this.#chunks.length) {
        this.#chunks = [];
        this.#head = 0;
      } else if (this.#head > 64) {
        this.#chunks = this.#chunks.slice(this.#head);
        this.#head = 0;
      }
    }
  }
}

const HandshakeStage = { CLIENT_FLAGS: "CLIENT_FLAGS", OPTION_HEADER: "OPTION_HEADER", OPTION_DATA: "OPTION_DATA" } as const;
type HandshakeStage = (typeof HandshakeStage)[keyof typeof HandshakeStage];

/** Client flags (u32), then options: IHAVEOPT, u32 option, u32 length, data. */
export class HandshakeParser {
  readonly #queue: ByteQueue;
  readonly #scratch = Buffer.allocUnsafe(optionHeaderBytes);
  #stage: HandshakeStage = HandshakeStage.CLIENT_FLAGS;
  #option = 0;
  #optionBytes = 0;

  constructor(queue: ByteQueue) {
    this.#queue = queue;
  }

  next(): HandshakeMessage | undefined {
    const queue = this.#queue;
    switch (this.#stage) {
      case HandshakeStage.CLIENT_FLAGS: {
        if (queue.length < clientFlagsBytes) return undefined;
        const flags = queue.peek(clientFlagsBytes, this.#scratch).readUInt32BE(0);
        queue.skip(clientFlagsBytes);
        this.#stage = HandshakeStage.OPTION_HEADER;
        return { kind: "clientFlags", flags };
      }
      case HandshakeStage.OPTION_HEADER: {
        if (queue.length < optionHeaderBytes) return undefined;
        const header = queue.peek(optionHeaderBytes, this.#scratch);
        if (header.readBigUInt64BE(0) !== IHAVEOPT) throw new NbdProtocolError("BAD_OPTION_MAGIC", "option does not start with IHAVEOPT");
        this.#option = header.readUInt32BE(8);
        this.#optionBytes = header.readUInt32BE(12);
        // proto.md: the server MAY disconnect on an option it considers too long; reading a
        // few GiB to discard them would only keep a misbehaving client busy.
        if (this.#optionBytes > optionLengthMaxBytes) {
          throw new NbdProtocolError("OPTION_TOO_LONG", `option ${this.#option} has ${this.#optionBytes} bytes of data, more than ${optionLengthMaxBytes}`);
        }
        queue.skip(optionHeaderBytes);
        this.#stage = HandshakeStage.OPTION_DATA;
        return this.next();
      }
      case HandshakeStage.OPTION_DATA: {
        if (queue.length < this.#optionBytes) return undefined;
        const data = Buffer.allocUnsafe(this.#optionBytes);
        queue.consumeInto(data, 0, this.#optionBytes);
        this.#stage = HandshakeStage.OPTION_HEADER;
        return { kind: "option", option: this.#option, data };
      }
    }
  }

  /** Bytes received and not yet returned as messages (for the buffering bound). */
  get bufferedBytes(): number {
    return this.#queue.length;
  }
}

/**
 * Decides where a WRITE's payload goes, given its header: a Buffer of exactly
 * `header.lengthBytes` to fill, or undefined to read and discard it (the request will be
 * refused, but proto.md requires its payload to be consumed to keep the stream in sync).
 */
export type PayloadTarget = (header: RequestHeader) => Buffer | undefined;

const RequestStage = { HEADER: "HEADER", PAYLOAD: "PAYLOAD" } as const;
type RequestStage = (typeof RequestStage)[keyof typeof RequestStage];

/** Requests: 28-byte headers, each WRITE followed at once by its payload. */
export class RequestParser {
  readonly #queue: ByteQueue;
  readonly #payloadTarget: PayloadTarget;
  readonly #scratch = Buffer.allocUnsafe(requestHeaderBytes);
  #stage: RequestStage = RequestStage.HEADER;
  /** The WRITE whose payload is being received. */
  #pending: Request | undefined;
  #payloadReceivedBytes = 0;

  constructor(queue: ByteQueue, payloadTarget: PayloadTarget) {
    this.#queue = queue;
    this.#payloadTarget = payloadTarget;
  }

  next(): Request | undefined {
    if (this.#stage === RequestStage.HEADER) {
      if (this.#queue.length < requestHeaderBytes) return undefined;
      const request = this.#parseHeader(this.#queue.peek(requestHeaderBytes, this.#scratch));
      this.#queue.skip(requestHeaderBytes);
      if (request.type !== Command.WRITE || request.lengthBytes === 0) {
        if (request.type === Command.WRITE) request.payload = Buffer.alloc(0);
        return request;
      }
      const target = this.#payloadTarget(request);
      assert.ok(target === undefined || target.length === request.lengthBytes, "a payload target must hold exactly the payload");
      request.payload = target;
      this.#pending = request;
      this.#payloadReceivedBytes = 0;
      this.#stage = RequestStage.PAYLOAD;
    }
    return this.#receivePayload();
  }

  /** The payload buffer of a WRITE still being received, if any (returned to its pool on close). */
  get pendingPayload(): Buffer | undefined {
    return this.#pending?.payload;
  }

  get bufferedBytes(): number {
    return this.#queue.length;
  }

  #receivePayload(): Request | undefined {
    const request = this.#pending as Request;
    const remaining = request.lengthBytes - this.#payloadReceivedBytes;
    const received =
      request.payload === undefined
        ? this.#queue.skip(remaining)
        : this.#queue.consumeInto(request.payload, this.#payloadReceivedBytes, remaining);
    this.#payloadReceivedBytes += received;
    if (this.#payloadReceivedBytes < request.lengthBytes) return undefined;
    this.#pending = undefined;
    this.#stage = RequestStage.HEADER;
    return request;
  }

  #parseHeader(header: Buffer): Request {
    const magic = header.readUInt32BE(0);
    if (magic !== REQUEST_MAGIC) {
      throw new NbdProtocolError("BAD_REQUEST_MAGIC", `request magic 0x${magic.toString(16).padStart(8, "0")} is not 0x${REQUEST_MAGIC.toString(16)}`);
    }
    return {
      flags: header.readUInt16BE(4),
      type: header.readUInt16BE(6),
      cookie: header.readBigUInt64BE(8),
      offsetBytes: readU64(header, 16),
      lengthBytes: header.readUInt32BE(24),
      payload: undefined,
    };
  }
}
