/**
 * A small hand-written NBD client for tests: it sends exactly the bytes a test asks for
 * (including wrong ones) and reads replies field by field. Real clients (libnbd, qemu) refuse
 * to send most of what the negative tests need.
 */
import { createConnection, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";
import { ByteQueue } from "../parser.ts";
import {
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  Option,
  OptionReply,
  REPLY_MAGIC,
  ReplyFlag,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
} from "../protocol.ts";
import { clientFlagsFrame, infoRequestData, metaContextData, optionFrame, requestFrame, type RequestFields } from "./frames.ts";

export interface OptionReplyMessage {
  option: number;
  type: number;
  data: Buffer;
}

export interface Chunk {
  flags: number;
  type: number;
  cookie: bigint;
  payload: Buffer;
}

export interface SimpleReply {
  errno: number;
  cookie: bigint;
}

const readTimeoutMs = 10_000;

export class RawClient {
  /** The connection; a TLSSocket over it after startTls(). */
  socket: Socket;
  readonly #queue = new ByteQueue();
  #waiter: (() => void) | undefined;
  #ended = false;
  readonly closed: Promise<void>;
  readonly #onData = (chunk: Buffer) => {
    this.#queue.push(chunk);
    this.#waiter?.();
  };

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on("data", this.#onData);
    socket.on("error", () => undefined);
    this.closed = new Promise((resolve) =>
      socket.on("close", () => {
        this.#ended = true;
        this.#waiter?.();
        resolve();
      }),
    );
    socket.on("end", () => {
      this.#ended = true;
      this.#waiter?.();
    });
  }

  /** Connects to a unix socket path, or to a TCP port. */
  static connect(where: string | { port: number; host: string }): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = typeof where === "string" ? createConnection(where) : createConnection(where.port, where.host);
      socket.once("connect", () => resolve(new RawClient(socket)));
      socket.once("error", reject);
    });
  }

  /**
   * The client side of a TLS handshake on this connection (after STARTTLS was acknowledged);
   * everything afterwards goes through TLS. Rejects if the handshake fails.
   */
  async startTls(options: ConnectionOptions): Promise<void> {
    if (this.#queue.length !== 0) throw new Error(`${this.#queue.length} plaintext bytes unread before TLS`);
    const raw = this.socket;
    raw.off("data", this.#onData);
    const secure = tlsConnect({ ...options, socket: raw });
    secure.on("data", this.#onData);
    secure.on("error", () => undefined);
    secure.on("end", () => {
      this.#ended = true;
      this.#waiter?.();
    });
    this.socket = secure;
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", () => resolve());
      secure.once("error", reject);
      secure.once("close", () => reject(new Error("connection closed during the TLS handshake")));
    });
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Exactly `n` bytes; rejects if the server closes first or nothing comes in time. */
  async read(n: number): Promise<Buffer> {
    const deadline = Date.now() + readTimeoutMs;
    while (this.#queue.length < n) {
      if (this.#ended) throw new Error(`connection closed with ${this.#queue.length} of ${n} bytes`);
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`timed out waiting for ${n} bytes (have ${this.#queue.length})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.#waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#waiter = undefined;
    }
    const out = Buffer.alloc(n);
    this.#queue.consumeInto(out, 0, n);
    return out;
  }

  /** Resolves true if the server closes the connection within `ms` (and nothing more arrives). */
  async closesWithin(ms = 5000): Promise<boolean> {
    const timer = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms));
    return Promise.race([this.closed.then(() => true), timer]);
  }

  /** Reads the greeting and sends client flags; returns the server's handshake flags. */
  async handshake(clientFlags = FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES): Promise<number> {
    const greeting = await this.read(18);
    this.send(clientFlagsFrame(clientFlags));
    return greeting.readUInt16BE(16);
  }

  async readOptionReply(): Promise<OptionReplyMessage> {
    const header = await this.read(20);
    if (header.readBigUInt64BE(0) !== REPLY_MAGIC) throw new Error(`bad option reply magic ${header.toString("hex")}`);
    const length = header.readUInt32BE(16);
    return { option: header.readUInt32BE(8), type: header.readUInt32BE(12), data: await this.read(length) };
  }

  /** Sends an option and reads replies up to the final one (ACK or an error). */
  async option(option: number, data: Buffer = Buffer.alloc(0)): Promise<OptionReplyMessage[]> {
    this.send(optionFrame(option, data));
    const replies: OptionReplyMessage[] = [];
    for (;;) {
      const reply = await this.readOptionReply();
      replies.push(reply);
      if (reply.type === OptionReply.ACK || reply.type >= 2 ** 31) return replies;
    }
  }

  /** Handshake, optional structured replies and meta contexts, then GO; returns size and flags. */
  async open(exportName: string, options: { structured?: boolean; contexts?: string[] } = {}): Promise<{ sizeBytes: number; flags: number; contextIds: Map<string, number> }> {
    await this.handshake();
    const contextIds = new Map<string, number>();
    if (options.structured === true || options.contexts !== undefined) {
      const [ack] = await this.option(Option.STRUCTURED_REPLY);
      if (ack?.type !== OptionReply.ACK) throw new Error("STRUCTURED_REPLY refused");
    }
    if (options.contexts !== undefined) {
      for (const reply of await this.option(Option.SET_META_CONTEXT, metaContextData(exportName, options.contexts))) {
        if (reply.type === OptionReply.META_CONTEXT) contextIds.set(reply.data.subarray(4).toString(), reply.data.readUInt32BE(0));
      }
    }
    const replies = await this.option(Option.GO, infoRequestData(exportName));
    const final = replies.at(-1);
    if (final?.type !== OptionReply.ACK) throw new Error(`GO refused: 0x${final?.type.toString(16)} ${final?.data.toString()}`);
    const exportInfo = replies.find((reply) => reply.type === OptionReply.INFO && reply.data.readUInt16BE(0) === 0) as OptionReplyMessage;
    return { sizeBytes: Number(exportInfo.data.readBigUInt64BE(2)), flags: exportInfo.data.readUInt16BE(10), contextIds };
  }

  request(fields: RequestFields, payload?: Buffer): void {
    this.send(requestFrame(fields, payload));
  }

  async readSimpleReply(): Promise<SimpleReply> {
    const header = await this.read(16);
    if (header.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) throw new Error(`bad simple reply magic ${header.toString("hex")}`);
    return { errno: header.readUInt32BE(4), cookie: header.readBigUInt64BE(8) };
  }

  async readChunk(): Promise<Chunk> {
    const header = await this.read(20);
    if (header.readUInt32BE(0) !== STRUCTURED_REPLY_MAGIC) throw new Error(`bad chunk magic ${header.toString("hex")}`);
    return {
      flags: header.readUInt16BE(4),
      type: header.readUInt16BE(6),
      cookie: header.readBigUInt64BE(8),
      payload: await this.read(header.readUInt32BE(16)),
    };
  }

  /** Chunks of one reply, up to the one with DONE (assumes replies are not interleaved). */
  async readStructuredReply(): Promise<Chunk[]> {
    const chunks: Chunk[] = [];
    for (;;) {
      const chunk = await this.readChunk();
      chunks.push(chunk);
      if (chunk.flags & ReplyFlag.DONE) return chunks;
    }
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}
