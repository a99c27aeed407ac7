/**
 * The volume API's one mapping to the wire: Cinder's fault body (cinder/api/openstack/wsgi.py
 * Fault), `{"<faultName>": {"code": N, "message": "…"}}`; cinderclient and the SDK print
 * `message` (cinderclient.exceptions.from_response reads the first key's object).
 *
 *   VolumeError         its code's status and fault name (../errors.ts)
 *   IdentityError 401   keystonemiddleware's `{"error": {code, title, message}}` and its
 *                       WWW-Authenticate (the token is refused before Cinder runs)
 *   fastify's own 4xx   bad JSON, bad Content-Length: 400 badRequest; a body over the limit:
 *                       413 overLimit (oslo.middleware sizelimit)
 *   anything else       500 computeFault naming the request id, never the cause
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { IdentityError } from "../../../identity/index.ts";
import { publicBaseUrl } from "../../../identity/wire.ts";
import { VolumeError, volumeErrors, type VolumeErrorCode } from "../errors.ts";
import { toVolumeError } from "../errors.ts";
import { requestBodyBytesMax } from "./input.ts";

export interface CinderFault {
  status: number;
  fault: string;
  message: string;
}

export function faultOf(code: VolumeErrorCode, message: string): CinderFault {
  const { status, fault } = volumeErrors[code];
  return { status, fault, message };
}

/** Any thrown value as a Cinder fault; `requestId` goes into the 500's message. */
export function toCinderFault(error: unknown, requestId: string): CinderFault {
  const mapped = toVolumeError(error);
  if (mapped instanceof VolumeError) return faultOf(mapped.code, mapped.message);
  if (mapped instanceof IdentityError) {
    return mapped.status === 401 ? { status: 401, fault: "error", message: mapped.message } : { status: mapped.status, fault: mapped.status === 403 ? "forbidden" : "badRequest", message: mapped.message };
  }
  const statusCode = (mapped as { statusCode?: unknown } | null)?.statusCode;
  if (typeof statusCode === "number" && statusCode >= 400 && statusCode < 500) {
    if (statusCode === 413) return faultOf("EQUOTA", `Request is too large: at most ${requestBodyBytesMax} bytes are accepted.`);
    if (statusCode === 404) return faultOf("ENOT_FOUND", "The resource could not be found.");
    return faultOf("EBAD_REQUEST", (mapped as Error).message);
  }
  return { status: 500, fault: "computeFault", message: `The server has either erred or is incapable of performing the requested operation. (request ${requestId})` };
}

export function cinderFaultBody(fault: CinderFault): Record<string, Record<string, unknown>> {
  if (fault.status === 401) return { error: { code: 401, title: "Unauthorized", message: fault.message } };
  return { [fault.fault]: { code: fault.status, message: fault.message } };
}

/** The plugin's setErrorHandler and not-found handler both answer through this. */
export function sendCinderFault(error: unknown, request: FastifyRequest, reply: FastifyReply, publicUrl: string | undefined): FastifyReply {
  const fault = toCinderFault(error, request.id);
  if (fault.status >= 500) request.log.error({ err: error }, "volume: internal error");
  else request.log.info({ fault: fault.fault, message: fault.message }, "volume: request refused");
  if (fault.status === 401) reply.header("www-authenticate", `Keystone uri="${publicBaseUrl(request, publicUrl)}/identity"`);
  return reply
    .code(fault.status)
    .type("application/json")
    .send(request.method === "HEAD" ? undefined : JSON.stringify(cinderFaultBody(fault)));
}

export function routeNotFound(): VolumeError {
  return new VolumeError("ENOT_FOUND", "The resource could not be found.");
}
