/**
 * The compute API's one mapping to the wire: Nova's fault body (nova/api/openstack/wsgi.py
 * Fault), `{"<faultName>": {"code": N, "message": "…"}}`. novaclient prints `message`; a body
 * whose first value is not an object breaks it (openstack-clients.md 3.3, pitfall 7).
 *
 *   ComputeError        its code's status and fault name (../errors.ts)
 *   IdentityError 401   {"unauthorized": …} with keystonemiddleware's WWW-Authenticate
 *   fastify's own 4xx   bad JSON, bad Content-Length, a body over the limit: 400 badRequest
 *   anything else       500 computeFault that names the request id, never the cause
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { IdentityError } from "../../identity/index.ts";
import { publicBaseUrl } from "../../identity/wire.ts";
import { ComputeError, computeErrors, type ComputeErrorCode } from "../errors.ts";
import { requestBodyBytesMax } from "./input.ts";

export interface NovaFault {
  status: number;
  fault: string;
  message: string;
}

/** Nova's names for the statuses it answers (wsgi.py Fault._fault_names). */
const faultNames: ReadonlyMap<number, string> = new Map([
  [400, "badRequest"],
  [401, "unauthorized"],
  [403, "forbidden"],
  [404, "itemNotFound"],
  [405, "badMethod"],
  [409, "conflictingRequest"],
  [501, "notImplemented"],
]);

export function faultOf(code: ComputeErrorCode, message: string): NovaFault {
  const { status, fault } = computeErrors[code];
  return { status, fault, message };
}

/** Any thrown value as a Nova fault; `requestId` goes into the 500's message. */
export function toNovaFault(error: unknown, requestId: string): NovaFault {
  if (error instanceof ComputeError) return faultOf(error.code, error.message);
  if (error instanceof IdentityError) {
    const status = error.status;
    return { status, fault: faultNames.get(status) ?? "computeFault", message: error.message };
  }
  const statusCode = (error as { statusCode?: unknown } | null)?.statusCode;
  if (typeof statusCode === "number" && statusCode >= 400 && statusCode < 500) {
    // fastify's own refusals (body too large, bad Content-Length, malformed URL): the client's
    // fault, with fastify's sentence; a 413 is a 400 here as Nova's schema errors are.
    const status = statusCode === 404 ? 404 : 400;
    const message = statusCode === 413 ? `Request body is too large: at most ${requestBodyBytesMax} bytes are accepted.` : (error as Error).message;
    return { status, fault: faultNames.get(status)!, message };
  }
  return { status: 500, fault: "computeFault", message: `Unexpected API Error. Please report it with the request id ${requestId}.` };
}

export function novaFaultBody(fault: NovaFault): Record<string, { code: number; message: string }> {
  return { [fault.fault]: { code: fault.status, message: fault.message } };
}

/** The plugin's setErrorHandler and not-found handler both answer through this. */
export function sendNovaFault(error: unknown, request: FastifyRequest, reply: FastifyReply, publicUrl: string | undefined): FastifyReply {
  const fault = toNovaFault(error, request.id);
  if (fault.status >= 500) request.log.error({ err: error }, "compute: internal error");
  else request.log.info({ fault: fault.fault, message: fault.message }, "compute: request refused");
  if (fault.status === 401) {
    // What keystonemiddleware in front of Nova says: where to get a token.
    reply.header("www-authenticate", `Keystone uri="${publicBaseUrl(request, publicUrl)}/identity"`);
  }
  return reply
    .code(fault.status)
    .type("application/json")
    .send(request.method === "HEAD" ? undefined : JSON.stringify(novaFaultBody(fault)));
}

/** The 404 for a route that does not exist (Nova's own words for it). */
export function routeNotFound(): ComputeError {
  return new ComputeError("ENOT_FOUND", "The resource could not be found.");
}

export function badRequest(message: string): ComputeError {
  return new ComputeError("EBAD_REQUEST", message);
}
