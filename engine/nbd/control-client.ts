/**
 * The client side of the control socket (control.ts): one request, one answer. The CLI uses
 * it when the engine refuses it a volume because a serving process on this host holds the
 * volume's lock.
 */
import { createConnection } from "node:net";
import {
  controlResponseMaxBytes,
  controlResponseTimeoutMs,
  LineSplitter,
  type ControlFailure,
  type ControlOp,
  type ControlRequest,
  type ControlSuccess,
  type LineEvent,
} from "./control-wire.ts";
import { findControlSocket } from "./runtime-dir.ts";

/** Nothing answered at the address: no such socket, or nobody listening (a dead server). */
export const controlUnreachable = Symbol("control socket unreachable");

/**
 * Sends one request to the control socket at `path` and resolves with its response, or with
 * controlUnreachable when nobody listens there. Once the request is sent, a connection closed
 * without an answer or no answer within the timeout rejects: the server may have acted.
 */
export function callControl<Op extends ControlOp>(
  path: string,
  request: ControlRequest & { op: Op },
  options: { timeoutMs?: number } = {},
): Promise<ControlSuccess<Op> | ControlFailure | typeof controlUnreachable> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    const splitter = new LineSplitter(controlResponseMaxBytes);
    let connected = false;
    let settled = false;
    const settle = (action: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      action();
    };
    const timeoutMs = options.timeoutMs ?? controlResponseTimeoutMs;
    const timer = setTimeout(() => settle(() => reject(new Error(`no answer on ${path} within ${timeoutMs} ms to ${request.op}; it may still complete`))), timeoutMs);
    socket.once("connect", () => {
      connected = true;
      socket.write(`${JSON.stringify(request)}\n`);
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      if (!connected) settle(() => resolve(controlUnreachable));
      else settle(() => reject(new Error(`control connection to ${path} failed during ${request.op}: ${error.message}`, { cause: error })));
    });
    socket.on("close", () => settle(() => reject(new Error(`${path} closed the connection without answering ${request.op}; it may or may not have been done`))));
    socket.on("data", (chunk: Buffer) => {
      const event = splitter.push(chunk)[0];
      if (event === undefined) return;
      settle(() => {
        try {
          resolve(parseControlResponse(event, request.op));
        } catch (error) {
          reject(error as Error);
        }
      });
    });
  });
}

function parseControlResponse<Op extends ControlOp>(event: LineEvent, op: Op): ControlSuccess<Op> | ControlFailure {
  if (event.kind === "too-long") throw new Error(`control response longer than ${controlResponseMaxBytes} bytes`);
  const value = JSON.parse(event.line) as Record<string, unknown> | null;
  if (typeof value !== "object" || value === null) throw new Error(`malformed control response: ${event.line.slice(0, 200)}`);
  if (value["ok"] === false && typeof value["code"] === "string" && typeof value["message"] === "string") return value as unknown as ControlFailure;
  if (value["ok"] === true && typeof value[op] === "object" && value[op] !== null) return value as unknown as ControlSuccess<Op>;
  throw new Error(`malformed control response to ${op}: ${event.line.slice(0, 200)}`);
}

/**
 * Sends `request` to the control socket of process `pid` on this host; controlUnreachable
 * when it has none (not an okeanos server, an old one, or one that died).
 */
export async function callServingProcess<Op extends ControlOp>(
  pid: number,
  request: ControlRequest & { op: Op },
  options: { timeoutMs?: number } = {},
): Promise<ControlSuccess<Op> | ControlFailure | typeof controlUnreachable> {
  const path = await findControlSocket(pid);
  return path === undefined ? controlUnreachable : callControl<Op>(path, request, options);
}
