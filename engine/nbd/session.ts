/**
 * One NBD connection: a named state machine over a socket (libnbd's state_machine.ml habit).
 *
 *   AWAIT_CLIENT_FLAGS ──flags ok──► OPTIONS ──GO / EXPORT_NAME──► TRANSMISSION
 *          │                        │  ▲  │  ▲ option replies            │
 *          │          STARTTLS, ACK │  │  └──┘                           │ DISC, client EOF,
 *          │                        ▼  │ handshake done                  │ server shutdown
 *          │                   TLS_HANDSHAKE ──failed──┐                 │
 *          │ bad flags, bad magic, ABORT, timeout,     │                 │
 *          ▼ unknown EXPORT_NAME                       ▼                 ▼
 *        CLOSED ◄───────── socket closed, operations settled ◄──── DRAINING
 *                           lease released (last one flushes)      (no new requests; in-flight
 *                                                                   replies finish, then close)
 *
 * Input that leaves the stream unparseable (bad magic, an oversize option) is a protocol
 * error: the socket is destroyed. Input that is merely wrong (unknown option, bad request)
 * gets an error reply and the session goes on.
 *
 * In transmission, requests run concurrently and replies go out in completion order. Each
 * request owns a reply slot from parse until its reply has been handed to the kernel (the
 * socket write's callback): the slot's header area holds the reply headers, so headers are
 * never allocated per request and never overwritten while a write still references them.
 * No free slot, or more than inFlightBytesMax in flight, and we stop parsing and pause the
 * socket: backpressure reaches the client through TCP, and memory stays bounded even when
 * a client stops reading its replies.
 *
 * STARTTLS (tls.ts) swaps the socket at an option boundary: the ACK goes out in plaintext,
 * the raw socket's input listeners come off, a tls.TLSSocket takes its stream over, and
 * #attach puts the same listeners on it. The parser, its queue and the handshake timer stay;
 * what was negotiated before is forgotten (proto.md "NBD_OPT_STARTTLS"). Bytes received
 * after STARTTLS and before its ACK went out cannot be a ClientHello (the client must wait
 * for the ACK): a protocol error. A failed handshake closes this connection only.
 */
import assert from "node:assert/strict";
import type { Socket } from "node:net";
import type { BufferPool } from "./buffer-pool.ts";
import { isProtocolError, NbdProtocolError } from "./errors.ts";
import type { ExportLease, ExportRegistry } from "./exports.ts";
import { handshakeTimeoutMs, inFlightBytesMax, inFlightMax, keepAliveDelayMs, optionsPerConnectionMax } from "./limits.ts";
import type { Logger } from "./logger.ts";
import { handleOption, type Negotiation, type OptionOutcome } from "./options.ts";
import { ByteQueue, HandshakeParser, RequestParser } from "./parser.ts";
import { clientFlagsKnown, Command, FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES, serverHandshakeFlags } from "./protocol.ts";
import { TlsMode, upgradeToTls, type TlsConfig, type TlsUpgrade } from "./tls.ts";
import { replyHeaderAreaBytes, Transmission } from "./transmission.ts";
import { encodeServerHandshake, type HandshakeMessage, type Request, type RequestHeader } from "./wire.ts";

export const SessionState = {
  AWAIT_CLIENT_FLAGS: "AWAIT_CLIENT_FLAGS",
  OPTIONS: "OPTIONS",
  /** STARTTLS acknowledged: the TLS handshake runs; nothing is parsed until it is done. */
  TLS_HANDSHAKE: "TLS_HANDSHAKE",
  TRANSMISSION: "TRANSMISSION",
  DRAINING: "DRAINING",
  CLOSED: "CLOSED",
} as const;
export type SessionState = (typeof SessionState)[keyof typeof SessionState];

export interface SessionContext {
  registry: ExportRegistry;
  pool: BufferPool;
  logger: Logger;
  /** Default handshakeTimeoutMs (limits.ts); tests shorten it. */
  handshakeTimeoutMs?: number;
  /** Certificates and mode; absent: no TLS (STARTTLS gets ERR_POLICY). */
  tls?: TlsConfig | undefined;
  /**
   * The socket reads into one reused buffer (socket-input.ts) and its bytes arrive through
   * receive(), not 'data' events. A TLSSocket after STARTTLS emits 'data' as usual.
   */
  reusedReadBuffer?: boolean;
}

/** A request's claim on the connection, from parse to reply written (see the header comment). */
interface ReplySlot {
  readonly index: number;
  readonly area: Buffer;
  /** Bytes of request data this slot holds (payload or read result), counted in #bytesInFlight. */
  bytes: number;
  busy: boolean;
}

let nextSessionId = 1;

export class Session {
  readonly id = nextSessionId++;
  /** Resolves once the session is CLOSED: socket gone, operations settled, export released. */
  readonly closed: Promise<void>;
  readonly #context: SessionContext;
  readonly #logger: Logger;
  #socket: Socket;
  #state: SessionState = SessionState.AWAIT_CLIENT_FLAGS;
  readonly #queue = new ByteQueue();
  readonly #handshake = new HandshakeParser(this.#queue);
  #requests: RequestParser | undefined;
  readonly #negotiation: Negotiation = { noZeroes: false, structured: false, meta: undefined, tls: false };
  #optionsSeen = 0;
  #optionBusy = false;
  #transmission: Transmission | undefined;
  #lease: ExportLease | undefined;
  readonly #slots: ReplySlot[];
  readonly #freeSlots: number[];
  #bytesInFlight = 0;
  /** Requests executing against the volume (their replies not yet queued). */
  #operations = 0;
  #pumping = false;
  #paused = false;
  #inputEnded = false;
  #socketClosed = false;
  #ending = false;
  #handshakeTimer: NodeJS.Timeout | undefined;
  /** The socket corked for this turn's replies, uncorked by the pending setImmediate. */
  #corked: Socket | undefined;
  #resolveClosed!: () => void;
  // The socket listeners, kept to take the input ones off the raw socket at STARTTLS.
  readonly #dataListener = (chunk: Buffer) => this.#onData(chunk);
  readonly #endListener = () => this.#onEnd();
  readonly #errorListener = (error: NodeJS.ErrnoException) => this.#logger.debug({ session: this.id, code: error.code, err: error.message }, "socket error");
  readonly #closeListener = () => this.#onClose();
  readonly #uncork = () => {
    const socket = this.#corked;
    this.#corked = undefined;
    socket?.uncork(); // a no-op if end() flushed it already
  };

  constructor(socket: Socket, context: SessionContext) {
    this.#context = context;
    this.#logger = context.logger;
    this.#socket = socket;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    // Slot i's header area is bytes [i × area, (i+1) × area) of one allocation.
    const areas = Buffer.allocUnsafeSlow(inFlightMax * replyHeaderAreaBytes);
    this.#slots = Array.from({ length: inFlightMax }, (_, index) => ({
      index,
      area: areas.subarray(index * replyHeaderAreaBytes, (index + 1) * replyHeaderAreaBytes),
      bytes: 0,
      busy: false,
    }));
    this.#freeSlots = this.#slots.map((slot) => slot.index).reverse();
    socket.setNoDelay(true); // replies are whole messages: never wait to coalesce (QD1 latency)
    socket.setKeepAlive(true, keepAliveDelayMs);
    this.#attach(socket, context.reusedReadBuffer === true);
    const timeoutMs = context.handshakeTimeoutMs ?? handshakeTimeoutMs;
    this.#handshakeTimer = setTimeout(() => this.#abort(`no export chosen within ${timeoutMs} ms`), timeoutMs);
    this.#handshakeTimer.unref();
    this.#write([encodeServerHandshake(serverHandshakeFlags)]);
  }

  get state(): SessionState {
    return this.#state;
  }

  /** Requests parsed whose replies are not written out yet. */
  get inFlight(): number {
    return inFlightMax - this.#freeSlots.length;
  }

  /**
   * Graceful end for server shutdown: no new requests; in-flight ones finish and their
   * replies are written; then the socket is closed. A session still haggling just closes.
   */
  shutdown(): void {
    if (this.#state === SessionState.DRAINING || this.#state === SessionState.CLOSED) return;
    this.#drain("server shutting down");
  }

  /** Ends the connection at once (shutdown timed out, protocol error). */
  destroy(): void {
    this.#abort("destroyed");
  }

  // ── socket ───────────────────────────────────────────────────────────────

  /**
   * Reads and writes go through `socket` from now on: the accepted one, or the TLSSocket
   * that took it over after STARTTLS (then both report 'close'; the first one counts).
   */
  #attach(socket: Socket, reusedReadBuffer: boolean): void {
    this.#socket = socket;
    if (!reusedReadBuffer) socket.on("data", this.#dataListener);
    socket.on("end", this.#endListener);
    // EPIPE / ECONNRESET are how clients leave; 'close' follows and does the cleanup.
    socket.on("error", this.#errorListener);
    socket.on("close", this.#closeListener);
  }

  /** Writes buffers as one batch (one writev): a reply's bytes never interleave with another's. */
  #write(buffers: readonly Buffer[], done?: (error?: Error | null) => void): boolean {
    const socket = this.#socket;
    if (socket.destroyed || socket.writableEnded) return false;
    const nonEmpty = buffers.filter((buffer) => buffer.length > 0);
    assert.ok(nonEmpty.length > 0, "every message has a header");
    socket.cork();
    nonEmpty.forEach((buffer, index) => socket.write(buffer, index === nonEmpty.length - 1 ? done : undefined));
    socket.uncork();
    return true;
  }

  /**
   * Writes a reply as part of this event-loop turn's batch: the first reply of a turn corks
   * the socket and a setImmediate uncorks it, so the replies of every request completed in
   * one turn (at QD32 one socket read brings many requests, and page-cache I/O completes
   * them in the same turn) leave in one writev and wake the client once. Each reply's buffers are written back to back, so replies never
   * interleave; each write's callback still runs once the batch is handed to the kernel.
   * setImmediate runs right after the poll phase that completed the requests, so a lone
   * reply (QD1) waits for nothing but the rest of its turn.
   */
  #writeReply(buffers: readonly Buffer[], done: (error?: Error | null) => void): boolean {
    const socket = this.#socket;
    if (socket.destroyed || socket.writableEnded) return false;
    if (this.#corked === undefined) {
      this.#corked = socket;
      socket.cork();
      setImmediate(this.#uncork);
    }
    let last = buffers.length - 1;
    while (last > 0 && (buffers[last] as Buffer).length === 0) last--;
    assert.ok(last >= 0 && (buffers[0] as Buffer).length > 0, "every message has a header");
    for (let index = 0; index <= last; index++) {
      const buffer = buffers[index] as Buffer;
      if (buffer.length > 0) socket.write(buffer, index === last ? done : undefined);
    }
    return true;
  }

  #onData(chunk: Buffer): void {
    if (this.#state === SessionState.DRAINING || this.#state === SessionState.CLOSED) return; // no longer listening
    this.#queue.push(chunk);
    this.#pump();
  }

  /**
   * Bytes read into the socket's reused buffer (context.reusedReadBuffer): valid only during
   * this call. WRITE payloads are copied straight into their pooled buffers by the pump;
   * whatever is left unparsed is copied out before we return.
   */
  receive(bytes: Buffer): void {
    // After STARTTLS the TLS layer owns the raw stream; nothing more comes this way.
    if (this.#state === SessionState.DRAINING || this.#state === SessionState.CLOSED || this.#state === SessionState.TLS_HANDSHAKE) return;
    this.#queue.pushBorrowed(bytes);
    try {
      this.#pump();
    } finally {
      this.#queue.unborrow();
    }
  }

  #onEnd(): void {
    this.#inputEnded = true;
    this.#pump();
  }

  #onClose(): void {
    if (this.#socketClosed) return; // the raw socket and its TLSSocket both report it
    this.#socketClosed = true;
    if (this.#state !== SessionState.DRAINING && this.#state !== SessionState.CLOSED) this.#state = SessionState.DRAINING;
    this.#clearHandshakeTimer();
    this.#queue.clear();
    // A WRITE payload being received when the client vanished goes back to the pool.
    const pending = this.#requests?.pendingPayload;
    if (pending !== undefined) this.#context.pool.give(pending);
    // Write callbacks of a destroyed socket may never run: its slots are free now.
    for (const slot of this.#slots) if (slot.busy) this.#releaseSlot(slot);
    this.#maybeFinish();
  }

  /** Pauses or resumes the socket: read only while we would parse what arrives. */
  #updateFlow(): void {
    if (this.#state === SessionState.TLS_HANDSHAKE) return; // the TLS layer owns the stream
    const wanted =
      ((this.#state === SessionState.AWAIT_CLIENT_FLAGS || this.#state === SessionState.OPTIONS) && !this.#optionBusy) ||
      (this.#state === SessionState.TRANSMISSION && !this.#overLimit());
    if (wanted === !this.#paused || this.#socket.destroyed) return;
    this.#paused = !wanted;
    if (wanted) this.#socket.resume();
    else this.#socket.pause();
  }

  // ── the pump: parse and dispatch while we may ────────────────────────────

  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    let needInput = false;
    try {
      for (;;) {
        const state = this.#state;
        if (state === SessionState.AWAIT_CLIENT_FLAGS || state === SessionState.OPTIONS) {
          if (this.#optionBusy) break;
          const message = this.#handshake.next();
          if (message === undefined) {
            needInput = true;
            break;
          }
          this.#onHandshakeMessage(message);
        } else if (state === SessionState.TRANSMISSION) {
          if (this.#overLimit()) break;
          const request = (this.#requests as RequestParser).next();
          if (request === undefined) {
            needInput = true;
            break;
          }
          this.#dispatch(request);
        } else {
          break;
        }
      }
    } catch (error) {
      if (!isProtocolError(error)) throw error;
      this.#abort(`protocol error: ${error.message}`);
      return;
    } finally {
      this.#pumping = false;
    }
    // Client EOF with nothing left to parse: finish what is in flight, then close.
    if (needInput && this.#inputEnded) this.#drain("client closed its side");
    this.#updateFlow();
  }

  // ── handshake ────────────────────────────────────────────────────────────

  #onHandshakeMessage(message: HandshakeMessage): void {
    if (message.kind === "clientFlags") {
      // proto.md "Client flags": unknown bits → close. We speak fixed newstyle only.
      if ((message.flags & ~clientFlagsKnown) !== 0 || (message.flags & FLAG_C_FIXED_NEWSTYLE) === 0) {
        throw new NbdProtocolError("BAD_CLIENT_FLAGS", `client flags 0x${message.flags.toString(16)}`);
      }
      this.#negotiation.noZeroes = (message.flags & FLAG_C_NO_ZEROES) !== 0;
      this.#state = SessionState.OPTIONS;
      return;
    }
    if (++this.#optionsSeen > optionsPerConnectionMax) {
      this.#abort(`more than ${optionsPerConnectionMax} options`);
      return;
    }
    this.#optionBusy = true;
    const context = { registry: this.#context.registry, logger: this.#logger, tlsMode: this.#context.tls?.mode ?? TlsMode.OFF };
    handleOption(message, this.#negotiation, context)
      .then((outcome) => this.#afterOption(outcome))
      .catch((error: unknown) => {
        this.#logger.error({ session: this.id, err: String(error) }, "option handling failed");
        this.#abort("internal error");
      })
      .finally(() => {
        this.#optionBusy = false;
        this.#pump();
        this.#maybeFinish();
      });
    this.#updateFlow();
  }

  #afterOption(outcome: OptionOutcome): void {
    if (this.#state !== SessionState.OPTIONS) {
      // Shut down or disconnected while the option ran: nothing to answer.
      if (outcome.next === "transmission") void this.#releaseLease(outcome.lease);
      return;
    }
    this.#write(outcome.replies);
    if (outcome.next === "close") {
      this.#drain("client aborted or export refused");
    } else if (outcome.next === "starttls") {
      this.#startTls();
    } else if (outcome.next === "transmission") {
      this.#enterTransmission(outcome.lease, outcome.transmissionFlags, outcome.contexts);
    }
  }

  #enterTransmission(lease: ExportLease, transmissionFlags: number, contexts: Transmission["contexts"]): void {
    this.#clearHandshakeTimer();
    this.#lease = lease;
    this.#transmission = new Transmission({
      volume: lease.volume,
      transmissionFlags,
      structured: this.#negotiation.structured,
      contexts,
      pool: this.#context.pool,
    });
    this.#requests = new RequestParser(this.#queue, (header) => this.#payloadTarget(header));
    this.#state = SessionState.TRANSMISSION;
    this.#logger.info({ session: this.id, export: lease.name, structured: this.#negotiation.structured, contexts: contexts.map((c) => c.name) }, "transmission");
  }

  // ── TLS ──────────────────────────────────────────────────────────────────

  /** Right after the STARTTLS ACK was written (same tick): hand the stream to TLS. */
  #startTls(): void {
    const config = this.#context.tls;
    assert.ok(config !== undefined, "STARTTLS is acknowledged only with TLS configured");
    const raw = this.#socket;
    if (this.#queue.length > 0 || raw.readableLength > 0) {
      this.#abort("protocol error: data sent after STARTTLS before its ACK");
      return;
    }
    this.#state = SessionState.TLS_HANDSHAKE;
    raw.off("data", this.#dataListener);
    raw.off("end", this.#endListener);
    upgradeToTls(raw, config, (outcome) => this.#afterTls(outcome));
  }

  #afterTls(outcome: TlsUpgrade): void {
    if (!outcome.ok) {
      // Worth an operator's eye (a rejected certificate, a client speaking something else),
      // unless we were closing the connection ourselves.
      if (this.#state === SessionState.TLS_HANDSHAKE) this.#logger.warn({ session: this.id, reason: outcome.reason }, "TLS handshake failed");
      this.#abort(`TLS handshake failed: ${outcome.reason}`);
      return;
    }
    const socket = outcome.socket;
    if (this.#state !== SessionState.TLS_HANDSHAKE) {
      socket.destroy(); // shut down or timed out during the handshake
      return;
    }
    // proto.md "NBD_OPT_STARTTLS": no negotiation state from before TLS is kept.
    this.#negotiation.structured = false;
    this.#negotiation.meta = undefined;
    this.#negotiation.tls = true;
    this.#state = SessionState.OPTIONS;
    this.#paused = false; // a new stream, flowing once its 'data' listener is on
    this.#attach(socket, false);
    const peer = socket.getPeerX509Certificate();
    this.#logger.info(
      { session: this.id, protocol: socket.getProtocol(), cipher: socket.getCipher().name, ...(peer === undefined ? {} : { client: peer.subject.replaceAll("\n", ", ") }) },
      "TLS established",
    );
    this.#pump();
  }

  // ── transmission ─────────────────────────────────────────────────────────

  #overLimit(): boolean {
    const slotsInUse = inFlightMax - this.#freeSlots.length;
    // With nothing in flight we always take the next request, so one request larger than
    // the byte budget still makes progress.
    return this.#freeSlots.length === 0 || (slotsInUse > 0 && this.#bytesInFlight >= inFlightBytesMax);
  }

  /** Where a WRITE's payload goes: a pooled buffer, or nowhere when it will be refused. */
  #payloadTarget(header: RequestHeader): Buffer | undefined {
    if (this.#state !== SessionState.TRANSMISSION) return undefined;
    if ((this.#transmission as Transmission).refusal(header) !== undefined) return undefined;
    this.#bytesInFlight += header.lengthBytes;
    return this.#context.pool.take(header.lengthBytes);
  }

  #dispatch(request: Request): void {
    if (request.type === Command.DISC) {
      // proto.md: DISC has no reply; finish in-flight requests, then close.
      this.#drain("client sent DISC");
      return;
    }
    const transmission = this.#transmission as Transmission;
    const slot = this.#slots[this.#freeSlots.pop() as number] as ReplySlot;
    assert.ok(!slot.busy);
    slot.busy = true;
    slot.bytes = request.payload?.length ?? 0; // a kept payload was counted when it was taken
    if (request.type === Command.READ && transmission.refusal(request) === undefined) {
      slot.bytes = request.lengthBytes;
      this.#bytesInFlight += request.lengthBytes;
    }
    this.#operations++;
    void transmission.execute(request, slot.area).then((reply) => {
      this.#operations--;
      const written = () => {
        // The kernel has the bytes (or the write was cancelled): the buffer is free again.
        if (reply.pooled !== undefined) this.#context.pool.give(reply.pooled);
        this.#releaseSlot(slot);
      };
      if (!this.#writeReply(reply.segments, written)) written();
      this.#maybeFinish();
    });
  }

  #releaseSlot(slot: ReplySlot): void {
    if (!slot.busy) return; // released already (socket closed before its write callback)
    slot.busy = false;
    this.#bytesInFlight -= slot.bytes;
    slot.bytes = 0;
    this.#freeSlots.push(slot.index);
    if (this.#state === SessionState.TRANSMISSION && this.#paused && !this.#overLimit()) this.#pump();
    this.#maybeFinish();
  }

  // ── ending ───────────────────────────────────────────────────────────────

  /** Stop taking requests; once in-flight work is done and written, close the socket. */
  #drain(reason: string): void {
    if (this.#state === SessionState.DRAINING || this.#state === SessionState.CLOSED) return;
    if (this.#state === SessionState.TLS_HANDSHAKE) {
      this.#abort(reason); // nothing in flight, and the stream belongs to the TLS layer
      return;
    }
    this.#logger.debug({ session: this.id, reason }, "draining");
    this.#state = SessionState.DRAINING;
    this.#clearHandshakeTimer();
    if (!this.#socket.destroyed) this.#socket.pause();
    this.#paused = true;
    this.#maybeFinish();
  }

  /** Protocol error, timeout or forced close: destroy the socket now. */
  #abort(reason: string): void {
    if (this.#state === SessionState.CLOSED) return;
    this.#logger.info({ session: this.id, reason }, "closing connection");
    if (this.#state !== SessionState.DRAINING) this.#state = SessionState.DRAINING;
    this.#clearHandshakeTimer();
    this.#socket.destroy();
  }

  /** DRAINING and nothing left: close the socket, then (once it is closed) release the export. */
  #maybeFinish(): void {
    if (this.#state !== SessionState.DRAINING || this.#optionBusy || this.#operations > 0) return;
    if (!this.#socketClosed) {
      // Every reply is queued: end our side once they are written, and do not wait for a
      // client that never closes its own (destroySoon destroys after the last write).
      if (this.inFlight === 0 && !this.#ending) {
        this.#ending = true;
        this.#socket.destroySoon();
      }
      return;
    }
    this.#state = SessionState.CLOSED;
    const lease = this.#lease;
    this.#lease = undefined;
    void this.#releaseLease(lease).finally(() => this.#resolveClosed());
  }

  async #releaseLease(lease: ExportLease | undefined): Promise<void> {
    try {
      await lease?.release();
    } catch (error) {
      this.#logger.error({ session: this.id, export: lease?.name, err: String(error) }, "closing the export failed");
    }
  }

  #clearHandshakeTimer(): void {
    if (this.#handshakeTimer !== undefined) clearTimeout(this.#handshakeTimer);
    this.#handshakeTimer = undefined;
  }
}
