/**
 * The HTTP server's own refusals, each in the convention of the API its URL belongs to.
 * fastify answers some requests before any route or plugin error handler runs, and Node's
 * HTTP parser refuses others before fastify sees them:
 *
 *   FST_ERR_BAD_URL           400  a path that is no valid percent-encoding    frameworkErrors
 *   FST_ERR_MAX_PARAM_LENGTH  414  a path parameter over maxParamLength         frameworkErrors
 *   HPE_HEADER_OVERFLOW       431  headers over Node's maxHeaderSize (16 KiB)   clientError
 *   ERR_HTTP_REQUEST_TIMEOUT  408  a request not received within requestTimeout clientError
 *   any other HPE_…           400  bytes Node's parser cannot read as HTTP/1.1  clientError
 *
 * (An unsupported Content-Type, a body over the limit or bad JSON are refused while a route
 * runs, so each plugin's own error handler renders them already.) By mount prefix, with each
 * service's own mapping and renderer:
 *
 *   /compute                  Nova's fault JSON (its 4xx are 400 badRequest)  compute/api/faults.ts
 *   /volume                   Cinder's fault JSON (likewise)                  gateways/volumes/api/faults.ts
 *   /object-store, /public    Swift's page, X-Trans-Id                        gateways/pithos/wire/errors.ts
 *   /image                    Glance's webob rendering by Accept              gateways/plankton/errors.ts
 *   /identity/account         Astakos's fault JSON (400 badRequest)           identity/astakos-errors.ts
 *   /identity, /auth          Keystone's error JSON                           identity/errors.ts
 *   anything else             fastify's own JSON
 *
 * A parser error leaves the connection unreadable: its answer says `Connection: close` and
 * the socket is closed once the answer is written. The URL is read from the bytes the parser
 * failed on when they begin with the request line; otherwise fastify's JSON answers.
 */
import { randomUUID } from "node:crypto";
import { STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import type { FastifyBaseLogger, FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { novaFaultBody, toNovaFault } from "../compute/api/faults.ts";
import { errorResponse, toPithosError } from "../gateways/pithos/wire/errors.ts";
import { transId } from "../gateways/pithos/wire/timestamps.ts";
import { glanceErrorResponse } from "../gateways/plankton/errors.ts";
import { cinderFaultBody, toCinderFault } from "../gateways/volumes/api/faults.ts";
import { astakosFaultBody, astakosFaults, toAstakosFault } from "../identity/astakos-errors.ts";
import { IdentityError, keystoneErrorBody, keystoneStatusErrorBody } from "../identity/errors.ts";

/**
 * Bytes of one path parameter before the router refuses the URL (fastify's maxParamLength,
 * 100 by default): Nova's keypair names, flavor ids and metadata keys are up to 255
 * characters, and a space is 3 bytes percent-encoded (255 × 3 = 765), rounded up.
 */
export const pathParameterBytesMax = 1024;

/** A refusal before routing: a status, fastify's or Node's code, a sentence. */
export interface FrameworkError {
  statusCode: number;
  code: string;
  message: string;
}

export interface RefusedRequest {
  method: string;
  /** The path and query as received (the prefix decides the convention). */
  url: string;
  accept?: string | undefined;
  requestId: string;
}

export interface RenderedError {
  status: number;
  /** Lower-case names; Content-Type among them. */
  headers: Record<string, string>;
  /** Empty for HEAD. */
  body: string;
}

export type ApiConvention = "nova" | "cinder" | "swift" | "glance" | "astakos" | "keystone" | "fastify";

const prefixes: ReadonlyArray<[string, ApiConvention]> = [
  ["/compute", "nova"],
  ["/volume", "cinder"],
  ["/object-store", "swift"],
  ["/public", "swift"],
  ["/image", "glance"],
  ["/identity/account", "astakos"],
  ["/identity", "keystone"],
  ["/auth", "keystone"],
];

/** Whose convention a URL's errors follow: its mount prefix's, as serve/server.ts mounts them. */
export function conventionOf(url: string): ApiConvention {
  const queryStart = url.indexOf("?");
  const path = queryStart < 0 ? url : url.slice(0, queryStart);
  for (const [prefix, convention] of prefixes) {
    if (path === prefix || path.startsWith(`${prefix}/`)) return convention;
  }
  return "fastify";
}

function statusText(status: number): string {
  return STATUS_CODES[status] ?? "Error";
}

const json = "application/json";

/** The answer to a refusal, pure: what frameworkErrors sends through fastify and clientError writes. */
export function renderFrameworkError(error: FrameworkError, request: RefusedRequest): RenderedError {
  const rendered = renderBody(error, request);
  return request.method === "HEAD" ? { ...rendered, body: "" } : rendered;
}

function renderBody(error: FrameworkError, request: RefusedRequest): RenderedError {
  // Each service's mapping reads `statusCode` and `message` as it does for fastify's errors.
  const thrown = Object.assign(new Error(error.message), { statusCode: error.statusCode, code: error.code });
  switch (conventionOf(request.url)) {
    case "nova": {
      const fault = toNovaFault(thrown, request.requestId);
      return { status: fault.status, headers: { "content-type": json }, body: JSON.stringify(novaFaultBody(fault)) };
    }
    case "cinder": {
      const fault = toCinderFault(thrown, request.requestId);
      return { status: fault.status, headers: { "content-type": json }, body: JSON.stringify(cinderFaultBody(fault)) };
    }
    case "swift": {
      const response = errorResponse(toPithosError(thrown), "GET");
      const id = transId();
      const headers: Record<string, string> = { "x-trans-id": id, "x-openstack-request-id": id };
      for (const [name, value] of Object.entries(response.headers)) headers[name.toLowerCase()] = value;
      return { status: response.status, headers, body: response.body.toString("utf8") };
    }
    case "glance": {
      const response = glanceErrorResponse(thrown, request.accept);
      const headers: Record<string, string> = { "content-type": response.contentType };
      for (const [name, value] of Object.entries(response.headers)) headers[name.toLowerCase()] = value;
      return { status: response.status, headers, body: response.body };
    }
    case "astakos": {
      // Astakos's faults have no 414 or 431: whatever the server refused is a bad request.
      const fault = toAstakosFault(new IdentityError("EBAD_REQUEST", error.message));
      return { status: astakosFaults[fault.name], headers: { "content-type": json }, body: JSON.stringify(astakosFaultBody(fault)) };
    }
    case "keystone": {
      const body = error.statusCode === 400 ? keystoneErrorBody("EBAD_REQUEST", error.message) : keystoneStatusErrorBody(error.statusCode, statusText(error.statusCode), error.message);
      return { status: error.statusCode, headers: { "content-type": json }, body: JSON.stringify(body) };
    }
    case "fastify":
      return {
        status: error.statusCode,
        headers: { "content-type": "application/json; charset=utf-8" },
        body: JSON.stringify({ statusCode: error.statusCode, code: error.code, error: statusText(error.statusCode), message: error.message }),
      };
  }
}

/** Our sentences for fastify's, which quote the whole URL back (up to 16 KiB of it). */
const frameworkMessages: Readonly<Record<string, string>> = {
  FST_ERR_BAD_URL: "The request URL is not valid: a percent-escape is malformed or is not UTF-8.",
  FST_ERR_MAX_PARAM_LENGTH: `The request URL is too long: a path segment is over ${pathParameterBytesMax} bytes.`,
};

/** fastify's `frameworkErrors` option: a bad URL or an over-long path parameter. */
export function sendFrameworkError(thrown: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const error: FrameworkError = { statusCode: thrown.statusCode ?? 400, code: thrown.code, message: frameworkMessages[thrown.code] ?? thrown.message };
  const url = (request.raw as { originalUrl?: string }).originalUrl ?? request.raw.url ?? "/";
  const rendered = renderFrameworkError(error, { method: request.method, url, accept: request.headers.accept, requestId: request.id });
  request.log.info({ code: error.code, status: rendered.status }, "request refused before routing");
  // Only the server's onSend hooks would add it, and they do not run for these.
  reply.code(rendered.status).header("x-openstack-request-id", request.id).headers(rendered.headers);
  return reply.send(rendered.body === "" ? undefined : rendered.body);
}

interface ParserError extends Error {
  code?: string;
  /** The bytes the parser failed on (Node's clientError). */
  rawPacket?: unknown;
}

/** The request line at the start of the bytes a parser failed on, when they hold one. */
export function requestLineOf(rawPacket: unknown): { method: string; url: string } | undefined {
  if (!Buffer.isBuffer(rawPacket)) return undefined;
  const match = /^([A-Z][A-Z-]{0,19}) (\/[^\s]*) HTTP\/1\.[01]\r?\n/.exec(rawPacket.subarray(0, 16 * 1024).toString("latin1"));
  return match === null ? undefined : { method: match[1]!, url: match[2]! };
}

function parserFailure(error: ParserError): FrameworkError {
  switch (error.code) {
    case "HPE_HEADER_OVERFLOW":
      return { statusCode: 431, code: error.code, message: "Request header fields too large: at most 16 KiB of headers are read." };
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return { statusCode: 408, code: error.code, message: "The request was not received in time." };
    default:
      return { statusCode: 400, code: error.code ?? "HPE_INVALID", message: "Malformed HTTP request." };
  }
}

/**
 * The Node server's `clientError`: a well-formed answer in the URL's convention with
 * `Connection: close`, then the socket closed. Nothing is written once a response on this
 * connection has begun (a pipelined request's error): the socket is only destroyed.
 */
export function answerClientError(error: ParserError, socket: Socket, log: FastifyBaseLogger): void {
  if (error.code === "ECONNRESET" || socket.destroyed) return;
  // Node's own handler writes only while no response is under way on the socket (_http_server.js).
  const responding = (socket as Socket & { _httpMessage?: unknown })._httpMessage != null;
  if (!socket.writable || responding) {
    socket.destroy();
    return;
  }
  const failure = parserFailure(error);
  const line = requestLineOf(error.rawPacket);
  const request: RefusedRequest = { method: line?.method ?? "GET", url: line?.url ?? "/", requestId: `req-${randomUUID()}` };
  const rendered = renderFrameworkError(failure, line === undefined ? { ...request, url: "/" } : request);
  log.info({ code: failure.code, status: rendered.status, url: line?.url }, "request refused by the HTTP parser");
  const head = [
    `HTTP/1.1 ${rendered.status} ${statusText(rendered.status)}`,
    ...Object.entries(rendered.headers).map(([name, value]) => `${name}: ${value}`),
    `content-length: ${Buffer.byteLength(rendered.body)}`,
    "connection: close",
    "",
    "",
  ].join("\r\n");
  socket.end(head + rendered.body, () => socket.destroy());
}
