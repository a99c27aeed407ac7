/**
 * The control socket's wire format (control.ts serves it, control-client.ts speaks it):
 * newline-delimited JSON, one request object per line, answered in order with one response
 * line each.
 *
 *   request                                        response (ok)
 *   {"op":"status"}                                {"ok":true,"status":{…ControlStatus}}
 *   {"op":"snapshot","volume":V,"snapshot":S}      {"ok":true,"snapshot":{…MapHeader}}
 *   {"op":"resize","volume":V,"sizeBytes":N}       {"ok":true,"resize":{name,previousSizeBytes,sizeBytes}}
 *   any, failing                                   {"ok":false,"code":C,"message":M}
 *
 * Every request may carry an "id" (a string ≤ 64 characters or an integer), echoed in its
 * response. Unknown fields are refused (a typo must not be ignored). Error codes are the
 * engine's (engine/errors.ts, passed through unchanged, so the CLI exits as if it had done the
 * work itself) plus the socket's own (controlErrorCodes). A line that is not JSON, or not a
 * request, gets an error response and the connection goes on; a line longer than
 * controlLineMaxBytes gets one error response and is skipped up to its newline (lines are
 * self-delimiting, so the stream stays parseable).
 */
import { engineErrorCodes, type EngineErrorCode } from "../errors.ts";
import { volumeNameLengthMax, type MapHeader } from "../mapper/headers.ts";
import type { ListenAddress } from "./server.ts";

export const controlProtocolVersion = 1;

/**
 * Longest request line. The largest valid request — a resize or a snapshot naming two
 * 128-character names (volumeNameLengthMax, an alphabet JSON never escapes) and a 64-character
 * id — is under 400 bytes; 4 KiB leaves room for whitespace and later fields while one
 * connection's buffered input stays bounded.
 */
export const controlLineMaxBytes = 4096;
/** Longest response line a client accepts: a status lists ≤ 128 connections (connectionsMax) at ~60 bytes each, and exports. */
export const controlResponseMaxBytes = 1024 * 1024;
/** Control connections at once: each is one CLI command waiting for one answer. */
export const controlConnectionsMax = 16;
/** A control connection with no request running and no bytes for this long is closed. */
export const controlIdleTimeoutMs = 60_000;
/**
 * How long a client waits for an answer. A snapshot waits for the requests in flight (bounded
 * by the volume's own I/O) and one flush, whose cost grows with the dirty blocks: seconds on a
 * busy store. Two minutes is generous; past it the client says the outcome is unknown.
 */
export const controlResponseTimeoutMs = 120_000;
const requestIdLengthMax = 64;

/** The socket's own error codes; engine codes (EEXISTS, ENOT_FOUND…) pass through as they are. */
export const controlErrorCodes = {
  EBAD_JSON: "the line is not JSON",
  EBAD_REQUEST: "the JSON is not a valid request",
  EUNKNOWN_OP: "no such op",
  ELINE_TOO_LONG: `a request line is longer than ${controlLineMaxBytes} bytes`,
  EBUSY: `more than ${controlConnectionsMax} control connections`,
  EINTERNAL: "unexpected server error (a bug; the server logs it)",
} as const;

export type ControlErrorCode = EngineErrorCode | keyof typeof controlErrorCodes;
export type ControlRequestId = string | number;

export type ControlRequest =
  | { op: "status"; id?: ControlRequestId }
  | { op: "snapshot"; volume: string; snapshot: string; id?: ControlRequestId }
  | { op: "resize"; volume: string; sizeBytes: number; id?: ControlRequestId };
export type ControlOp = ControlRequest["op"];

export interface ControlStatus {
  protocol: number;
  pid: number;
  exports: readonly string[] | "all";
  readOnly: boolean;
  addresses: ListenAddress[];
  /** Exports with their volume open, and how many connections share it. */
  open: Array<{ name: string; connections: number }>;
  connections: Array<{ id: number; state: string; inFlight: number }>;
}

export interface ResizeResult {
  name: string;
  previousSizeBytes: number;
  sizeBytes: number;
}

/** What each op answers, under its own name. */
export interface ControlResults {
  status: ControlStatus;
  snapshot: MapHeader;
  resize: ResizeResult;
}

export type ControlSuccess<Op extends ControlOp = ControlOp> = Op extends ControlOp
  ? { ok: true; id?: ControlRequestId } & { [K in Op]: ControlResults[K] }
  : never;
export interface ControlFailure {
  ok: false;
  id?: ControlRequestId;
  code: ControlErrorCode;
  message: string;
}
export type ControlResponse = ControlSuccess | ControlFailure;

// ── parsing ──────────────────────────────────────────────────────────────────

type FieldKind = "name" | "size";
/** The fields each op takes besides op and id; any other field is refused (a typo must not be ignored). */
const requestFields: { readonly [Op in ControlOp]: Readonly<Record<string, FieldKind>> } = {
  status: {},
  snapshot: { volume: "name", snapshot: "name" },
  resize: { volume: "name", sizeBytes: "size" },
};

function isOp(value: string): value is ControlOp {
  return Object.hasOwn(requestFields, value);
}

/** A request line → the typed request, or the failure to answer it with. */
export function parseControlRequest(line: string): ControlRequest | ControlFailure {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    return controlFailure("EBAD_JSON", `not JSON: ${(error as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return controlFailure("EBAD_REQUEST", "a request is a JSON object");
  const fields = value as Record<string, unknown>;
  const id = fields["id"];
  if (id !== undefined && !(typeof id === "string" && id.length <= requestIdLengthMax) && !Number.isSafeInteger(id)) {
    return controlFailure("EBAD_REQUEST", `"id" must be a string of at most ${requestIdLengthMax} characters or an integer`);
  }
  const echo = id === undefined ? {} : { id: id as ControlRequestId };
  const op = fields["op"];
  if (typeof op !== "string") return controlFailure("EBAD_REQUEST", `"op" must be a string`, echo);
  if (!isOp(op)) return controlFailure("EUNKNOWN_OP", `unknown op ${JSON.stringify(op)}; known: ${Object.keys(requestFields).join(", ")}`, echo);
  const expected = requestFields[op];
  for (const key of Object.keys(fields)) {
    if (key !== "op" && key !== "id" && !Object.hasOwn(expected, key)) return controlFailure("EBAD_REQUEST", `${op} takes no field "${key}"`, echo);
  }
  for (const [key, kind] of Object.entries(expected)) {
    const problem = fieldProblem(fields[key], kind);
    if (problem !== undefined) return controlFailure("EBAD_REQUEST", `${op}: "${key}" ${problem}`, echo);
  }
  return { ...fields, ...echo, op } as ControlRequest;
}

function fieldProblem(value: unknown, kind: FieldKind): string | undefined {
  if (kind === "name") {
    // Only the type and length here: the engine validates names (EINVALID) as for any caller.
    if (typeof value !== "string" || value === "" || value.length > volumeNameLengthMax) {
      return `must be a name of 1 to ${volumeNameLengthMax} characters`;
    }
    return undefined;
  }
  return Number.isSafeInteger(value) && (value as number) >= 0 ? undefined : "must be a byte count (a non-negative integer)";
}

export function controlFailure(code: ControlErrorCode, message: string, echo: { id?: ControlRequestId } = {}): ControlFailure {
  return { ok: false, ...echo, code, message };
}

export function isControlFailure(value: ControlRequest | ControlResponse): value is ControlFailure {
  return "ok" in value && value.ok === false;
}

/**
 * Splits a byte stream into lines of at most `maxBytes` (newline excluded, a trailing CR
 * dropped), resumable over arbitrary chunk boundaries. A longer line yields one `too-long`
 * as soon as it passes the bound, and its bytes up to the next newline are dropped unbuffered.
 */
export type LineEvent = { kind: "line"; line: string } | { kind: "too-long" };

export class LineSplitter {
  readonly #maxBytes: number;
  #parts: Buffer[] = [];
  #bytes = 0;
  /** Inside an over-long line: drop everything up to its newline. */
  #skipping = false;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /** Bytes held for the line being received (never more than maxBytes). */
  get bufferedBytes(): number {
    return this.#bytes;
  }

  push(chunk: Buffer): LineEvent[] {
    const events: LineEvent[] = [];
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(0x0a, start);
      const end = newline === -1 ? chunk.length : newline;
      if (!this.#skipping) {
        if (this.#bytes + (end - start) > this.#maxBytes) {
          this.#parts = [];
          this.#bytes = 0;
          this.#skipping = true;
          events.push({ kind: "too-long" });
        } else if (end > start) {
          this.#parts.push(chunk.subarray(start, end));
          this.#bytes += end - start;
        }
      }
      if (newline === -1) break;
      if (this.#skipping) this.#skipping = false;
      else events.push(this.#take());
      start = newline + 1;
    }
    return events;
  }

  /** At the end of input: the last line if it had no newline. */
  end(): LineEvent[] {
    const events: LineEvent[] = this.#skipping || this.#bytes === 0 ? [] : [this.#take()];
    this.#skipping = false;
    return events;
  }

  #take(): LineEvent {
    let line = Buffer.concat(this.#parts, this.#bytes).toString("utf8");
    this.#parts = [];
    this.#bytes = 0;
    if (line.endsWith("\r")) line = line.slice(0, -1);
    return { kind: "line", line };
  }
}

/** Whether a failure's code is an engine error code (to be rethrown as an EngineError). */
export function isEngineCode(code: string): code is EngineErrorCode {
  return Object.hasOwn(engineErrorCodes, code);
}
