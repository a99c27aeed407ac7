/**
 * A small QMP client over a unix socket: connect, read the greeting, leave capabilities
 * negotiation with `qmp_capabilities`, then `execute` commands (each with its own id and
 * timeout) and collect events.
 *
 *   CONNECTING ──greeting──► NEGOTIATING ──qmp_capabilities ok──► READY ──close/EOF──► CLOSED
 *        └──────────── timeout, socket error, protocol error ─────────┴──────────────► CLOSED
 *
 * QEMU's monitor serves one client at a time (its chardev stops accepting while one is
 * connected), so a session is meant to be short: connect, do one thing, close.
 */
import { createConnection, type Socket } from "node:net";
import { QmpParser, QmpProtocolError, encodeCommand, type QmpEvent, type QmpGreeting, type QmpId, type QmpMessage } from "./qmp-wire.ts";

export const QmpState = {
  CONNECTING: "connecting",
  NEGOTIATING: "negotiating",
  READY: "ready",
  CLOSED: "closed",
} as const;
export type QmpState = (typeof QmpState)[keyof typeof QmpState];

/**
 * A QMP failure. ECOMMAND: QEMU answered with an error (`errorClass`, e.g. CommandNotFound);
 * ETIMEOUT: no answer in time; ECLOSED: the connection ended (QEMU exited, or close());
 * EPROTOCOL: QEMU sent something that is not QMP; ECONNECT: nobody listens on the socket.
 */
export type QmpErrorCode = "ECOMMAND" | "ETIMEOUT" | "ECLOSED" | "EPROTOCOL" | "ECONNECT";

export class QmpError extends Error {
  readonly code: QmpErrorCode;
  readonly errorClass: string | undefined;

  constructor(code: QmpErrorCode, message: string, options: { errorClass?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? {} : { cause: options.cause });
    this.name = "QmpError";
    this.code = code;
    this.errorClass = options.errorClass;
  }
}

export function isQmpError(error: unknown, code?: QmpErrorCode): error is QmpError {
  return error instanceof QmpError && (code === undefined || error.code === code);
}

/** Connecting, the greeting and qmp_capabilities: QEMU answers in milliseconds; a loaded TCG host may take seconds. */
export const connectTimeoutMsDefault = 10_000;
/** A command's answer: the commands the driver sends return at once (none waits on the guest). */
export const commandTimeoutMsDefault = 10_000;
/** Events kept for waitForEvent: a session lives for a few commands, during which QEMU sends a handful. */
export const eventBacklogMax = 256;

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: QmpError) => void;
  timer: NodeJS.Timeout;
}

interface EventWaiter {
  name: string;
  resolve: (event: QmpEvent) => void;
  reject: (error: QmpError) => void;
  timer: NodeJS.Timeout;
}

export class QmpClient {
  readonly #socket: Socket;
  readonly #parser = new QmpParser();
  readonly #pending = new Map<QmpId, Pending>();
  readonly #events: QmpEvent[] = [];
  readonly #eventWaiters = new Set<EventWaiter>();
  readonly #eventListeners = new Set<(event: QmpEvent) => void>();
  #state: QmpState = QmpState.CONNECTING;
  #nextId: QmpId = 1;
  #greeting: QmpGreeting | undefined;
  #onGreeting: ((greeting: QmpGreeting) => void) | undefined;
  #closeError: QmpError | undefined;
  readonly closed: Promise<void>;
  #markClosed!: () => void;

  private constructor(socket: Socket) {
    this.#socket = socket;
    this.closed = new Promise((resolve) => (this.#markClosed = resolve));
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("error", (error) => this.#close(new QmpError("ECLOSED", `QMP connection failed: ${error.message}`, { cause: error })));
    socket.on("close", () => this.#close(new QmpError("ECLOSED", "QMP connection closed by QEMU")));
  }

  /** Connects to QEMU's QMP socket and negotiates; resolves in READY. */
  static async connect(socketPath: string, options: { timeoutMs?: number } = {}): Promise<QmpClient> {
    const timeoutMs = options.timeoutMs ?? connectTimeoutMsDefault;
    const socket = createConnection(socketPath);
    const client = new QmpClient(socket);
    const timer = setTimeout(() => client.#close(new QmpError("ETIMEOUT", `QMP on ${socketPath} was not ready (greeting, qmp_capabilities) within ${timeoutMs} ms`)), timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("error", (error: NodeJS.ErrnoException) =>
          reject(new QmpError("ECONNECT", `cannot connect to QMP at ${socketPath}: ${error.code ?? error.message}`, { cause: error })),
        );
      });
      const greeting = await new Promise<QmpGreeting>((resolve, reject) => {
        client.#onGreeting = resolve;
        void client.closed.then(() => reject(client.#closeError));
      });
      client.#greeting = greeting;
      client.#state = QmpState.NEGOTIATING;
      await client.execute("qmp_capabilities", undefined, { timeoutMs });
      client.#state = QmpState.READY;
      return client;
    } catch (error) {
      client.close();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  get state(): QmpState {
    return this.#state;
  }

  get greeting(): QmpGreeting | undefined {
    return this.#greeting;
  }

  /** Runs one command; resolves with its `return` value, rejects with a QmpError. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, options: { timeoutMs?: number } = {}): Promise<T> {
    if (this.#state === QmpState.CLOSED) return Promise.reject(this.#closeError ?? new QmpError("ECLOSED", "QMP connection closed"));
    const id = this.#nextId++;
    const timeoutMs = options.timeoutMs ?? commandTimeoutMsDefault;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new QmpError("ETIMEOUT", `QMP ${command} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { command, resolve: resolve as (value: unknown) => void, reject, timer });
      this.#socket.write(encodeCommand(command, args, id));
    });
  }

  /** Every event from now on. Returns the function that stops listening. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.#eventListeners.add(listener);
    return () => this.#eventListeners.delete(listener);
  }

  /** The first event named `name` received on this connection (also before this call), or the next one. */
  waitForEvent(name: string, options: { timeoutMs?: number } = {}): Promise<QmpEvent> {
    const seen = this.#events.find((event) => event.event === name);
    if (seen !== undefined) return Promise.resolve(seen);
    if (this.#state === QmpState.CLOSED) return Promise.reject(this.#closeError ?? new QmpError("ECLOSED", "QMP connection closed"));
    const timeoutMs = options.timeoutMs ?? commandTimeoutMsDefault;
    return new Promise((resolve, reject) => {
      const waiter: EventWaiter = {
        name,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#eventWaiters.delete(waiter);
          reject(new QmpError("ETIMEOUT", `no QMP event ${name} within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.#eventWaiters.add(waiter);
    });
  }

  close(): void {
    this.#close(new QmpError("ECLOSED", "QMP connection closed"));
  }

  #onData(chunk: Buffer): void {
    let messages: QmpMessage[];
    try {
      messages = this.#parser.push(chunk);
    } catch (error) {
      const message = error instanceof QmpProtocolError ? error.message : String(error);
      this.#close(new QmpError("EPROTOCOL", message, { cause: error }));
      return;
    }
    for (const message of messages) this.#dispatch(message);
  }

  #dispatch(message: QmpMessage): void {
    switch (message.kind) {
      case "greeting":
        if (this.#state !== QmpState.CONNECTING || this.#onGreeting === undefined) {
          this.#close(new QmpError("EPROTOCOL", "a second QMP greeting"));
          return;
        }
        this.#onGreeting(message);
        this.#onGreeting = undefined;
        return;
      case "event":
        if (this.#events.length >= eventBacklogMax) this.#events.shift();
        this.#events.push(message);
        for (const waiter of this.#eventWaiters) {
          if (waiter.name !== message.event) continue;
          clearTimeout(waiter.timer);
          this.#eventWaiters.delete(waiter);
          waiter.resolve(message);
        }
        for (const listener of this.#eventListeners) listener(message);
        return;
      case "return":
      case "error": {
        // An error without an id answers a request QEMU could not parse; commands run in
        // order, so it belongs to the oldest one waiting.
        const id = message.id ?? this.#pending.keys().next().value;
        const pending = id === undefined ? undefined : this.#pending.get(id);
        if (pending === undefined || id === undefined) return; // answered after its timeout
        this.#pending.delete(id);
        clearTimeout(pending.timer);
        if (message.kind === "return") pending.resolve(message.value);
        else {
          pending.reject(
            new QmpError("ECOMMAND", `QMP ${pending.command} failed: ${message.errorClass}: ${message.description}`, { errorClass: message.errorClass }),
          );
        }
        return;
      }
    }
  }

  #close(error: QmpError): void {
    if (this.#state === QmpState.CLOSED) return;
    this.#state = QmpState.CLOSED;
    this.#closeError = error;
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.#pending.clear();
    for (const waiter of this.#eventWaiters) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    this.#eventWaiters.clear();
    this.#socket.destroy();
    this.#markClosed();
  }
}

/** Connects, runs one command and closes: the usual shape of a driver's QMP use. */
export async function qmpExecute<T = unknown>(socketPath: string, command: string, args?: Record<string, unknown>, options: { timeoutMs?: number } = {}): Promise<T> {
  const client = await QmpClient.connect(socketPath, options);
  try {
    return await client.execute<T>(command, args, options);
  } finally {
    client.close();
  }
}
