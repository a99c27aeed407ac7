/**
 * NbdServer: listens on TCP and/or a unix socket and runs one Session per connection, all
 * sharing one ExportRegistry (one open Volume per export) and one BufferPool.
 *
 *   net.Server(s) ──connection──► Session ──GO──► ExportRegistry.acquire ──► Volume
 *                                   │
 *   close(): stop accepting ─► sessions drain (in-flight finish, replies written)
 *            ─► after shutdownTimeoutMs, remaining sockets destroyed
 *            ─► registry.close(): every volume flushed and closed
 *
 * The engine is not ours: the caller closes it after close() resolves.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { lstat, rm } from "node:fs/promises";
import { EngineError } from "../errors.ts";
import type { Engine } from "../engine.ts";
import { BufferPool } from "./buffer-pool.ts";
import type { VolumeIoCounters } from "../volume.ts";
import { ExportRegistry } from "./exports.ts";
import { connectionsMax as connectionsMaxDefault, shutdownTimeoutMs as shutdownTimeoutMsDefault, socketReadBufferBytes, unixSendBufferBytes as unixSendBufferBytesDefault } from "./limits.ts";
import { silentLogger, type Logger } from "./logger.ts";
import { Session } from "./session.ts";
import { setSendBuffer } from "./socket-buffer.ts";
import { adoptWithReadBuffer } from "./socket-input.ts";
import { TlsMode, type TlsConfig } from "./tls.ts";

/** IANA's port for NBD. */
export const nbdPortDefault = 10809;

export interface NbdServerOptions {
  engine: Engine;
  /** Names served, or "all". */
  exports: readonly string[] | "all";
  readOnly?: boolean;
  /** Listen on TCP (port default 10809, host default 127.0.0.1). */
  tcp?: { port?: number; host?: string };
  /** Listen on a unix socket at this path. */
  socketPath?: string;
  connectionsMax?: number;
  shutdownTimeoutMs?: number;
  /** A client must reach transmission within this long (default handshakeTimeoutMs in limits.ts). */
  handshakeTimeoutMs?: number;
  logger?: Logger;
  /** Recorded in the volume locks. */
  owner?: string;
  /** STARTTLS with these certificates (tls.ts: tlsConfigFromOptions); absent: no TLS. */
  tls?: TlsConfig | undefined;
  /**
   * The kernel send buffer of each unix-socket connection (socket-buffer.ts; default
   * limits.ts unixSendBufferBytes, 0: the kernel's default). Needs the NBD addon.
   */
  unixSendBufferBytes?: number;
}

export type ListenAddress = { kind: "tcp"; host: string; port: number } | { kind: "unix"; path: string };

export class NbdServer {
  readonly registry: ExportRegistry;
  readonly pool = new BufferPool();
  readonly #options: NbdServerOptions;
  readonly #logger: Logger;
  readonly #listeners: Server[] = [];
  readonly #sessions = new Set<Session>();
  /** The send buffer each unix-socket session got (kernel bytes), for status output. */
  readonly #sendBuffers = new WeakMap<Session, number>();
  #sendBufferNoted = false;
  #addresses: ListenAddress[] = [];
  #closing: Promise<void> | undefined;

  constructor(options: NbdServerOptions) {
    if (options.tcp === undefined && options.socketPath === undefined) {
      throw new EngineError("EINVALID", "an NBD server needs a TCP port or a unix socket path");
    }
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.registry = new ExportRegistry(options.engine, {
      names: options.exports,
      readOnly: options.readOnly === true,
      ...(options.owner === undefined ? {} : { owner: options.owner }),
    });
  }

  /** Starts listening; resolves with the addresses actually bound (port 0 picks a free one). */
  async listen(): Promise<ListenAddress[]> {
    const { tcp, socketPath } = this.#options;
    if (socketPath !== undefined) {
      await removeStaleSocket(socketPath);
      await this.#listenOn("unix", (server) => server.listen(socketPath));
      this.#addresses.push({ kind: "unix", path: socketPath });
    }
    if (tcp !== undefined) {
      const host = tcp.host ?? "127.0.0.1";
      const server = await this.#listenOn("tcp", (listener) => listener.listen(tcp.port ?? nbdPortDefault, host));
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : (tcp.port ?? nbdPortDefault);
      this.#addresses.push({ kind: "tcp", host, port });
    }
    return this.addresses;
  }

  get addresses(): ListenAddress[] {
    return [...this.#addresses];
  }

  /** Connections open right now. */
  get connectionCount(): number {
    return this.#sessions.size;
  }

  /** Each open connection's id, state, requests in flight and, when set, kernel send buffer (for status output and tests). */
  get connections(): Array<{ id: number; state: string; inFlight: number; sendBufferBytes?: number }> {
    return [...this.#sessions].map((session) => {
      const sendBufferBytes = this.#sendBuffers.get(session);
      return { id: session.id, state: session.state, inFlight: session.inFlight, ...(sendBufferBytes === undefined ? {} : { sendBufferBytes }) };
    });
  }

  /** Requests and bytes per export since the server started (for /metrics). */
  ioCounters(): Promise<Map<string, VolumeIoCounters>> {
    return this.registry.ioCounters();
  }

  /** NBD URIs (the format qemu, libnbd and nbdinfo take) for `name` on every address. */
  uris(name: string): string[] {
    const path = encodeURIComponent(name);
    return this.#addresses.map((address) =>
      address.kind === "unix"
        ? `${this.#scheme}+unix:///${path}?socket=${address.path}`
        : `${this.#scheme}://${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}/${path}`,
    );
  }

  /** libnbd's URI scheme: `nbds` tells the client to insist on TLS. */
  get #scheme(): string {
    return this.#options.tls?.mode === TlsMode.REQUIRE ? "nbds" : "nbd";
  }

  /** Graceful shutdown; idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    const stopped = Promise.all(this.#listeners.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    for (const session of this.#sessions) session.shutdown();
    const timeoutMs = this.#options.shutdownTimeoutMs ?? shutdownTimeoutMsDefault;
    if (!(await settlesWithin(this.#allSessionsClosed(), timeoutMs))) {
      this.#logger.warn({ sessions: this.#sessions.size, timeoutMs }, "shutdown timed out: closing the remaining connections");
      for (const session of this.#sessions) session.destroy();
      // Their operations are still bounded by the volume; give them one more period.
      await settlesWithin(this.#allSessionsClosed(), timeoutMs);
    }
    await this.registry.close();
    await stopped;
    // The socket file is not removed here: closing the listener unlinked it already (libuv),
    // and by now the path may belong to a successor started while we drained (a restart
    // under reconnecting clients), or to the live server that made our listen() fail.
  }

  #allSessionsClosed(): Promise<void> {
    return Promise.all([...this.#sessions].map((session) => session.closed)).then(() => undefined);
  }

  async #listenOn(transport: ListenAddress["kind"], start: (server: Server) => void): Promise<Server> {
    // Paused: adoptWithReadBuffer moves the connection to a socket that reads into a reused buffer.
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.#onConnection(socket, transport));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.once("listening", () => {
        server.off("error", reject);
        resolve();
      });
      start(server);
    });
    server.on("error", (error) => this.#logger.error({ err: String(error) }, "listener error"));
    this.#listeners.push(server);
    return server;
  }

  #onConnection(accepted: Socket, transport: ListenAddress["kind"]): void {
    const limit = this.#options.connectionsMax ?? connectionsMaxDefault;
    if (this.#closing !== undefined || this.#sessions.size >= limit) {
      this.#logger.warn({ connections: this.#sessions.size, limit }, this.#closing ? "refused: shutting down" : "refused: too many connections");
      accepted.on("error", () => undefined);
      accepted.destroy();
      return;
    }
    const sendBufferBytes = transport === "unix" ? this.#enlargeSendBuffer(accepted) : undefined;
    // The socket exists before its session; its first read comes in a later turn.
    const receiver: { session?: Session } = {};
    const { socket, reusedReadBuffer } = adoptWithReadBuffer(accepted, Buffer.allocUnsafeSlow(socketReadBufferBytes), (bytes) => receiver.session?.receive(bytes));
    const session = new Session(socket, {
      registry: this.registry,
      pool: this.pool,
      logger: this.#logger,
      ...(this.#options.handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs: this.#options.handshakeTimeoutMs }),
      tls: this.#options.tls,
      reusedReadBuffer,
    });
    receiver.session = session;
    this.#sessions.add(session);
    if (sendBufferBytes !== undefined) this.#sendBuffers.set(session, sendBufferBytes);
    void session.closed.then(() => this.#sessions.delete(session));
  }

  /** The kernel send buffer granted, or undefined (kernel default); says once per server why it is not what was asked. */
  #enlargeSendBuffer(socket: Socket): number | undefined {
    const bytes = this.#options.unixSendBufferBytes ?? unixSendBufferBytesDefault;
    if (bytes === 0) return undefined;
    const result = setSendBuffer(socket, bytes);
    if (!result.ok) {
      this.#noteSendBuffer({ reason: result.reason }, "unix connections keep the kernel's default send buffer: large reads are slower");
      return undefined;
    }
    if (result.bytes < bytes) {
      this.#noteSendBuffer({ askedBytes: bytes, grantedBytes: result.bytes }, "send buffer capped by net.core.wmem_max: raise it, or serve with CAP_NET_ADMIN");
    }
    return result.bytes;
  }

  #noteSendBuffer(fields: Record<string, unknown>, message: string): void {
    if (this.#sendBufferNoted) return;
    this.#sendBufferNoted = true;
    this.#logger.info(fields, message);
  }
}

/** A socket file left by a server that died is removed; one a live server answers on is not. */
async function removeStaleSocket(path: string): Promise<void> {
  const found = await lstat(path).catch(() => undefined);
  if (found === undefined) return;
  if (!found.isSocket()) throw new EngineError("EINVALID", `${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
  if (live) throw new EngineError("EINVALID", `another server is listening on ${path}`);
  await rm(path, { force: true });
}

async function settlesWithin(promise: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
