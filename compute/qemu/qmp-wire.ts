/**
 * QMP on the wire (qemu docs/interop/qmp-spec.rst): JSON objects in both directions. The
 * server sends a greeting, then replies (`return` or `error`, echoing the command's `id`) and
 * asynchronous events; the client sends `{"execute":…, "arguments":…, "id":…}`.
 *
 * QEMU ends each message with CRLF, but the spec does not promise a line framing (QEMU's own
 * input side is a JSON streamer), so the parser finds message boundaries by scanning the JSON
 * itself: brace and bracket depth outside strings. Pure: no sockets, no timers. Bytes are
 * pushed as they arrive, split anywhere — inside a string, an escape or a multi-byte UTF-8
 * sequence; the structural characters are ASCII and never occur inside a UTF-8 sequence, so
 * scanning bytes is exact.
 *
 *   BETWEEN ──'{'──► OBJECT ◄──'"'/end──► STRING ◄──► ESCAPE
 *      ▲                │ depth back to 0: one message
 *      └────────────────┘
 *   anything but whitespace between messages, a message over messageBytesMax, invalid JSON or
 *   an object of no known shape ──► FAILED (terminal: the stream cannot be resynchronised)
 */

/** The QMP states of the byte scanner. */
export const ScanState = {
  BETWEEN: "between",
  OBJECT: "object",
  STRING: "string",
  ESCAPE: "escape",
  FAILED: "failed",
} as const;
export type ScanState = (typeof ScanState)[keyof typeof ScanState];

/**
 * The largest message accepted. The biggest reply we ask for is query-block (~1 KiB a disk);
 * `query-qmp-schema`, the largest QEMU can send, is ~200 KiB in 7.2. 4 MiB is far above both
 * and still bounds what a broken peer can make us buffer.
 */
export const messageBytesMax = 4 * 1024 * 1024;

export type QmpId = number;

export interface QmpGreeting {
  kind: "greeting";
  /** e.g. { qemu: { major: 7, minor: 2, micro: 22 }, package: "…" } */
  version: unknown;
  capabilities: readonly string[];
}

export interface QmpReturn {
  kind: "return";
  id: QmpId | undefined;
  value: unknown;
}

export interface QmpErrorReply {
  kind: "error";
  id: QmpId | undefined;
  /** QMP's error class: GenericError, CommandNotFound, DeviceNotFound… */
  errorClass: string;
  description: string;
}

export interface QmpEvent {
  kind: "event";
  event: string;
  data: Record<string, unknown>;
  /** Microseconds since the epoch (QEMU's seconds + microseconds). */
  timestampMicros: number;
}

export type QmpMessage = QmpGreeting | QmpReturn | QmpErrorReply | QmpEvent;

/** The stream cannot be parsed any further; the parser is not to be used again. */
export class QmpProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "QmpProtocolError";
  }
}

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
/** JSON's insignificant whitespace (RFC 8259 2): space, tab, LF, CR. */
const whitespace = new Set([0x20, 0x09, 0x0a, 0x0d]);

export class QmpParser {
  #state: ScanState = ScanState.BETWEEN;
  #depth = 0;
  /** The current message's bytes so far (pieces of chunks, not yet concatenated). */
  #pieces: Buffer[] = [];
  #pieceBytes = 0;

  get state(): ScanState {
    return this.#state;
  }

  /** Feeds received bytes; returns every message they complete, in order. Throws QmpProtocolError (then FAILED). */
  push(chunk: Buffer): QmpMessage[] {
    if (this.#state === ScanState.FAILED) throw new QmpProtocolError("the QMP stream already failed");
    const messages: QmpMessage[] = [];
    let start = -1; // where the current message's bytes begin in this chunk
    for (let index = 0; index < chunk.length; index++) {
      const byte = chunk[index] as number;
      switch (this.#state) {
        case ScanState.BETWEEN:
          if (whitespace.has(byte)) continue;
          if (byte !== OPEN_BRACE) return this.#fail(`expected '{' between messages, got byte 0x${byte.toString(16)}`);
          this.#state = ScanState.OBJECT;
          this.#depth = 1;
          start = index;
          continue;
        case ScanState.OBJECT:
          if (byte === QUOTE) this.#state = ScanState.STRING;
          else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) this.#depth++;
          else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) this.#depth--;
          if (this.#depth === 0) {
            this.#take(chunk.subarray(Math.max(start, 0), index + 1));
            start = -1;
            messages.push(this.#finish());
            this.#state = ScanState.BETWEEN;
          }
          continue;
        case ScanState.STRING:
          if (byte === BACKSLASH) this.#state = ScanState.ESCAPE;
          else if (byte === QUOTE) this.#state = ScanState.OBJECT;
          continue;
        case ScanState.ESCAPE:
          this.#state = ScanState.STRING;
          continue;
        default:
          return this.#fail("unreachable scanner state");
      }
    }
    if (this.#state !== ScanState.BETWEEN) this.#take(chunk.subarray(Math.max(start, 0)));
    return messages;
  }

  #take(piece: Buffer): void {
    this.#pieceBytes += piece.length;
    if (this.#pieceBytes > messageBytesMax) this.#fail(`a QMP message over ${messageBytesMax} bytes`);
    this.#pieces.push(piece);
  }

  #finish(): QmpMessage {
    const text = Buffer.concat(this.#pieces, this.#pieceBytes).toString("utf8");
    this.#pieces = [];
    this.#pieceBytes = 0;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      return this.#fail(`invalid JSON from QMP: ${(error as Error).message}`);
    }
    const message = classify(value);
    if (message === undefined) return this.#fail(`a QMP message of no known shape: ${text.slice(0, 200)}`);
    return message;
  }

  #fail(message: string): never {
    this.#state = ScanState.FAILED;
    this.#pieces = [];
    throw new QmpProtocolError(message);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function idOf(value: Record<string, unknown>): QmpId | undefined {
  return typeof value["id"] === "number" ? value["id"] : undefined;
}

/** qmp-spec.rst 2.2 (greeting), 2.4.1 (success), 2.4.2 (error), 2.5 (events). */
export function classify(value: unknown): QmpMessage | undefined {
  if (!isRecord(value)) return undefined;
  const greeting = value["QMP"];
  if (isRecord(greeting)) {
    const capabilities = Array.isArray(greeting["capabilities"]) ? greeting["capabilities"].filter((item) => typeof item === "string") : [];
    return { kind: "greeting", version: greeting["version"], capabilities };
  }
  if ("return" in value) return { kind: "return", id: idOf(value), value: value["return"] };
  const error = value["error"];
  if (isRecord(error)) {
    return {
      kind: "error",
      id: idOf(value),
      errorClass: typeof error["class"] === "string" ? error["class"] : "GenericError",
      description: typeof error["desc"] === "string" ? error["desc"] : JSON.stringify(error),
    };
  }
  if (typeof value["event"] === "string") {
    const timestamp = isRecord(value["timestamp"]) ? value["timestamp"] : {};
    const seconds = typeof timestamp["seconds"] === "number" ? timestamp["seconds"] : 0;
    const micros = typeof timestamp["microseconds"] === "number" ? timestamp["microseconds"] : 0;
    return { kind: "event", event: value["event"], data: isRecord(value["data"]) ? value["data"] : {}, timestampMicros: seconds * 1_000_000 + micros };
  }
  return undefined;
}

/** One command, as the client sends it (qmp-spec.rst 2.3); CRLF as QEMU itself ends lines. */
export function encodeCommand(command: string, args: Record<string, unknown> | undefined, id: QmpId): Buffer {
  const message = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
  return Buffer.from(`${JSON.stringify(message)}\r\n`, "utf8");
}
