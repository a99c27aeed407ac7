/**
 * The control socket of `okeanos nbd serve`: how other local processes (the CLI's
 * `volume snapshot` and `volume resize`) reach the process that serves a volume — and holds
 * its writer lock — to act on the Volume it has open, between NBD requests.
 *
 *   okeanos volume snapshot vm1 s1
 *     engine.snapshot ─► EVOLUME_LOCKED, holder { host: this host, pid: P }
 *     connect <runtime dir>/nbd-P.sock (runtime-dir.ts)
 *       ─► {"op":"snapshot","volume":"vm1","snapshot":"s1"}\n        (control-wire.ts)
 *            ControlServer ─► ExportRegistry.snapshot ─► Volume.snapshot: in-flight requests
 *            finish, new ones wait, flush, epoch bumped durably, frozen map written, I/O resumes
 *       ◄─ {"ok":true,"snapshot":{…map header…}}\n
 *
 * Who may connect: the socket lives in a per-user directory of mode 0700 (runtime-dir.ts);
 * file-system permissions are the access control, as for ssh-agent and tmux.
 */
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { isEngineError } from "../errors.ts";
import {
  controlConnectionsMax,
  controlErrorCodes,
  controlFailure,
  controlIdleTimeoutMs,
  controlLineMaxBytes,
  controlProtocolVersion,
  isControlFailure,
  LineSplitter,
  parseControlRequest,
  type ControlRequest,
  type ControlResponse,
  type ControlStatus,
  type LineEvent,
} from "./control-wire.ts";
import type { ExportRegistry } from "./exports.ts";
import { silentLogger, type Logger } from "./logger.ts";
import { controlSocketName, prepareRuntimeDirectory } from "./runtime-dir.ts";
import type { ListenAddress } from "./server.ts";

/** What the control socket acts on: an NbdServer has all of it. */
export interface ControlTarget {
  readonly registry: ExportRegistry;
  readonly addresses: ListenAddress[];
  readonly connections: Array<{ id: number; state: string; inFlight: number }>;
}

export interface ControlServerOptions {
  logger?: Logger;
  connectionsMax?: number;
  idleTimeoutMs?: number;
}

export class ControlServer {
  readonly path: string;
  readonly #server: Server;
  readonly #target: ControlTarget;
  readonly #logger: Logger;
  readonly #options: ControlServerOptions;
  readonly #connections = new Set<ControlConnection>();
  #closing: Promise<void> | undefined;

  private constructor(path: string, server: Server, target: ControlTarget, options: ControlServerOptions) {
    this.path = path;
    this.#server = server;
    this.#target = target;
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    server.on("connection", (socket) => this.#onConnection(socket));
    server.on("error", (error) => this.#logger.error({ err: String(error) }, "control socket error"));
  }

  /** Listens on the unix socket `path` (which must not exist: runtime-dir.ts clears stale ones). */
  static async listen(path: string, target: ControlTarget, options: ControlServerOptions = {}): Promise<ControlServer> {
    const server = createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => {
        server.off("error", reject);
        resolve();
      });
    });
    return new ControlServer(path, server, target, options);
  }

  /** Connections open right now. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /**
   * Stops accepting (Node removes the socket file), lets each connection finish the request
   * it is running — a snapshot completes, it is never cut in half — and closes them all.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const stopped = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      for (const connection of this.#connections) connection.shutdown();
      await Promise.all([...this.#connections].map((connection) => connection.closed));
      await stopped;
    })();
    return this.#closing;
  }

  #onConnection(socket: Socket): void {
    socket.on("error", (error: NodeJS.ErrnoException) => this.#logger.debug({ code: error.code }, "control connection error"));
    const limit = this.#options.connectionsMax ?? controlConnectionsMax;
    if (this.#closing !== undefined || this.#connections.size >= limit) {
      const refusal = controlFailure(this.#closing === undefined ? "EBUSY" : "ECLOSED", this.#closing === undefined ? controlErrorCodes.EBUSY : "the server is shutting down");
      socket.write(`${JSON.stringify(refusal)}\n`);
      socket.destroySoon();
      return;
    }
    const connection = new ControlConnection(socket, (request) => this.#execute(request), this.#options.idleTimeoutMs ?? controlIdleTimeoutMs);
    this.#connections.add(connection);
    void connection.closed.then(() => this.#connections.delete(connection));
  }

  async #execute(request: ControlRequest): Promise<ControlResponse> {
    const echo = request.id === undefined ? {} : { id: request.id };
    try {
      switch (request.op) {
        case "status":
          return { ok: true, ...echo, status: this.#status() };
        case "snapshot": {
          const header = await this.#target.registry.snapshot(request.volume, request.snapshot);
          this.#logger.info({ volume: request.volume, snapshot: request.snapshot, epoch: header.epoch }, "snapshot taken (control socket)");
          return { ok: true, ...echo, snapshot: header };
        }
        case "resize": {
          const resized = await this.#target.registry.resize(request.volume, request.sizeBytes);
          this.#logger.info({ ...resized }, "volume resized (control socket)");
          return { ok: true, ...echo, resize: resized };
        }
      }
    } catch (error) {
      if (isEngineError(error)) return controlFailure(error.code, error.message, echo);
      this.#logger.error({ op: request.op, err: error instanceof Error ? (error.stack ?? error.message) : String(error) }, "control request failed");
      return controlFailure("EINTERNAL", `${request.op} failed: ${String(error)}`, echo);
    }
  }

  #status(): ControlStatus {
    const registry = this.#target.registry;
    return {
      protocol: controlProtocolVersion,
      pid: process.pid,
      exports: registry.served,
      readOnly: registry.readOnly,
      addresses: this.#target.addresses,
      open: [...registry.openExports].map(([name, connections]) => ({ name, connections })),
      connections: this.#target.connections,
    };
  }
}

/**
 * One control connection: lines in, one request at a time, responses out in order. While a
 * request runs the socket is paused, so a client pipelining requests is read no faster than
 * it is answered, and buffered input stays within one chunk plus one line.
 */
class ControlConnection {
  readonly closed: Promise<void>;
  readonly #socket: Socket;
  readonly #execute: (request: ControlRequest) => Promise<ControlResponse>;
  readonly #splitter = new LineSplitter(controlLineMaxBytes);
  readonly #pending: LineEvent[] = [];
  #busy = false;
  #inputEnded = false;
  #shuttingDown = false;

  constructor(socket: Socket, execute: (request: ControlRequest) => Promise<ControlResponse>, idleTimeoutMs: number) {
    this.#socket = socket;
    this.#execute = execute;
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.setTimeout(idleTimeoutMs, () => {
      if (!this.#busy) socket.destroy();
    });
    socket.on("data", (chunk: Buffer) => {
      this.#pending.push(...this.#splitter.push(chunk));
      void this.#pump();
    });
    socket.on("end", () => {
      this.#inputEnded = true;
      this.#pending.push(...this.#splitter.end());
      void this.#pump();
    });
  }

  /** Server shutdown: no further requests; the one running finishes and is answered. */
  shutdown(): void {
    this.#shuttingDown = true;
    this.#pending.length = 0;
    if (!this.#busy) this.#socket.destroySoon();
  }

  async #pump(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    this.#socket.pause();
    try {
      for (let event = this.#pending.shift(); event !== undefined && !this.#shuttingDown; event = this.#pending.shift()) {
        const response = await this.#answer(event);
        if (response === undefined || this.#socket.destroyed) continue;
        if (!this.#socket.write(`${JSON.stringify(response)}\n`)) await this.#drainedOrClosed();
      }
    } finally {
      this.#busy = false;
    }
    // destroySoon, not end: a client that never closes its side must not hold up shutdown.
    if (this.#shuttingDown || this.#inputEnded) this.#socket.destroySoon();
    else this.#socket.resume();
  }

  /** A client that does not read its responses is not read either (and one that goes away frees us). */
  #drainedOrClosed(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.#socket.off("drain", done);
        this.#socket.off("close", done);
        resolve();
      };
      this.#socket.on("drain", done);
      this.#socket.on("close", done);
    });
  }

  async #answer(event: LineEvent): Promise<ControlResponse | undefined> {
    if (event.kind === "too-long") return controlFailure("ELINE_TOO_LONG", controlErrorCodes.ELINE_TOO_LONG);
    if (event.line.trim() === "") return undefined; // blank lines are allowed, and unanswered
    const request = parseControlRequest(event.line);
    if (isControlFailure(request)) return request;
    return this.#execute(request);
  }
}

/**
 * Opens this process's control socket, `<runtime dir>/nbd-<pid>.sock` (runtime-dir.ts), for
 * `target`. Serving matters more than the control socket: when it cannot be opened (no private
 * runtime directory, a path too long for a unix socket) this logs a warning and resolves
 * undefined, and `okeanos volume snapshot` of a served volume then fails with the lock error.
 */
export async function openControlSocket(target: ControlTarget, options: ControlServerOptions = {}): Promise<ControlServer | undefined> {
  try {
    const directory = await prepareRuntimeDirectory();
    return await ControlServer.listen(join(directory, controlSocketName(process.pid)), target, options);
  } catch (error) {
    (options.logger ?? silentLogger).warn({ err: String(error) }, "no control socket: served volumes cannot be snapshotted from the CLI");
    return undefined;
  }
}
