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
import { connectionsMax as connectionsMaxDefault, shutdownTimeoutMs as shutdownTimeoutMsDefault, socketReadBufferBytes } from "./limits.ts";
import { silentLogger, type Logger } from "./logger.ts";
import { Session } from "./session.ts";
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
}

export type ListenAddress = { kind: "tcp"; host: string; port: number } | { kind: "unix"; path: string };

export class NbdServer {
  readonly registry: ExportRegistry;
  readonly pool = new BufferPool();
  readonly #options: NbdServerOptions;
  readonly #logger: Logger;
  readonly #listeners: Server[] = [];
  readonly #sessions = new Set<Session>();
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
      await this.#listenOn((server) => server.listen(socketPath));
      this.#addresses.push({ kind: "unix", path: socketPath });
    }
    if (tcp !== undefined) {
      const host = tcp.host ?? "127.0.0.1";
      const server = await this.#listenOn((listener) => listener.listen(tcp.port ?? nbdPortDefault, host));
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

  /** Each open connection's id, state and requests in flight (for status output and tests). */
  get connections(): Array<{ id: number; state: string; inFlight: number }> {
    return [...this.#sessions].map((session) => ({ id: session.id, state: session.state, inFlight: session.inFlight }));
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

  async #listenOn(start: (server: Server) => void): Promise<Server> {
    // Paused: adoptWithReadBuffer moves the connection to a socket that reads into a reused buffer.
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.#onConnection(socket));
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

  #onConnection(accepted: Socket): void {
    const limit = this.#options.connectionsMax ?? connectionsMaxDefault;
    if (this.#closing !== undefined || this.#sessions.size >= limit) {
      this.#logger.warn({ connections: this.#sessions.size, limit }, this.#closing ? "refused: shutting down" : "refused: too many connections");
      accepted.on("error", () => undefined);
      accepted.destroy();
      return;
    }
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
    void session.closed.then(() => this.#sessions.delete(session));
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
