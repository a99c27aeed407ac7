/**
 * Plankton's one table of errors and its one mapping to the wire: Glance's error bodies, which
 * webob renders in the media type the Accept header prefers (webob/exc.py WSGIHTTPException):
 *
 *   Accept: application/json   {"message": "No image found with ID …", "code": "404 Not Found", "title": "Not Found"}
 *   none, any, text/html       webob's small HTML page (glanceclient reads it; its JSON reader
 *                              expects nested objects and fails on this flat form)
 *   anything else ("")         `404 Not Found\n\nNo image found with ID …`
 *
 * In JSON Glance appends webob's `<br /><br />` framing to the message; we send the sentence
 * alone (clients print `message` as it is). Database, object-store, identity, engine and
 * fastify errors are mapped here once; anything else is a 500 that says nothing of its cause.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { isDbError, type DbErrorCode } from "../../db/index.ts";
import { isEngineError } from "../../engine/errors.ts";
import { IdentityError } from "../../identity/index.ts";
import { PithosError } from "../pithos/wire/errors.ts";

/** Stable codes → status, webob's title and its default explanation. */
export const planktonErrors = {
  EBAD_REQUEST: { status: 400, title: "Bad Request", explanation: "The server could not comply with the request since it is either malformed or otherwise incorrect." },
  EUNAUTHORIZED: { status: 401, title: "Unauthorized", explanation: "The request you have made requires authentication." },
  EFORBIDDEN: { status: 403, title: "Forbidden", explanation: "Access was denied to this resource." },
  ENOT_FOUND: { status: 404, title: "Not Found", explanation: "The resource could not be found." },
  EMETHOD_NOT_ALLOWED: { status: 405, title: "Method Not Allowed", explanation: "The method is not allowed for this resource." },
  ECONFLICT: { status: 409, title: "Conflict", explanation: "There was a conflict when trying to complete your request." },
  ETOO_LARGE: { status: 413, title: "Request Entity Too Large", explanation: "The body of your request was too large for this server." },
  /** The HTTP server's own refusals before any route runs (serve/framework-errors.ts). */
  EURI_TOO_LONG: { status: 414, title: "Request-URI Too Long", explanation: "The request URI was too long for this server." },
  EUNSUPPORTED_MEDIA_TYPE: { status: 415, title: "Unsupported Media Type", explanation: "The request media type is not supported by this server." },
  EHEADERS_TOO_LARGE: { status: 431, title: "Request Header Fields Too Large", explanation: "The request header fields were too large" },
  EINTERNAL: { status: 500, title: "Internal Server Error", explanation: "The server has either erred or is incapable of performing the requested operation." },
  ENOT_IMPLEMENTED: { status: 501, title: "Not Implemented", explanation: "The request method is not implemented for this server." },
} as const;

export type PlanktonErrorCode = keyof typeof planktonErrors;

export class PlanktonError extends Error {
  readonly code: PlanktonErrorCode;
  readonly headers: Readonly<Record<string, string>>;

  constructor(code: PlanktonErrorCode, message?: string, options: { headers?: Record<string, string>; cause?: unknown } = {}) {
    super(message ?? planktonErrors[code].explanation, { cause: options.cause });
    this.name = "PlanktonError";
    this.code = code;
    this.headers = options.headers ?? {};
  }

  get status(): number {
    return planktonErrors[this.code].status;
  }
}

export function isPlanktonError(value: unknown, code?: PlanktonErrorCode): value is PlanktonError {
  return value instanceof PlanktonError && (code === undefined || value.code === code);
}

/** Glance's 404 wording (glance/api/v2/images.py). */
export function imageNotFound(id: string): PlanktonError {
  return new PlanktonError("ENOT_FOUND", `No image found with ID ${id}`);
}

const fromDb: Partial<Record<DbErrorCode, PlanktonErrorCode>> = {
  ENOT_FOUND: "ENOT_FOUND",
  EEXISTS: "ECONFLICT",
  ECONFLICT: "ECONFLICT",
  EPRECONDITION: "ECONFLICT",
  EINVALID: "EBAD_REQUEST",
  EQUOTA_EXCEEDED: "ETOO_LARGE",
};

const byStatus: ReadonlyMap<number, PlanktonErrorCode> = new Map(
  (Object.entries(planktonErrors) as Array<[PlanktonErrorCode, { status: number }]>).map(([code, { status }]) => [status, code]),
);

/** Any thrown value as a PlanktonError. */
export function toPlanktonError(error: unknown): PlanktonError {
  if (error instanceof PlanktonError) return error;
  if (isDbError(error)) {
    const code = fromDb[error.code];
    if (code !== undefined) return new PlanktonError(code, error.message, { cause: error });
  }
  if (error instanceof IdentityError) return new PlanktonError(byStatus.get(error.status) ?? "EUNAUTHORIZED", error.message, { cause: error });
  if (error instanceof PithosError) {
    // The object store's refusals while Plankton writes or reads a file for the caller.
    const status = error.status === 412 || error.status === 422 ? 409 : error.status;
    const code = byStatus.get(status);
    if (code !== undefined && status < 500) return new PlanktonError(code, error.message, { cause: error });
  }
  if (isEngineError(error, "EINVALID") && error.details["maxBytes"] !== undefined) {
    return new PlanktonError("ETOO_LARGE", "Image exceeds the storage limit.", { cause: error });
  }
  const statusCode = (error as { statusCode?: unknown } | null)?.statusCode;
  if (typeof statusCode === "number" && statusCode >= 400 && statusCode < 500) {
    // fastify's own (bad JSON, body too large, bad Content-Length): their status, their sentence.
    return new PlanktonError(byStatus.get(statusCode) ?? "EBAD_REQUEST", (error as Error).message, { cause: error });
  }
  return new PlanktonError("EINTERNAL", undefined, { cause: error });
}

export interface GlanceErrorBody {
  message: string;
  code: string;
  title: string;
}

export function glanceErrorBody(error: PlanktonError): GlanceErrorBody {
  const { status, title } = planktonErrors[error.code];
  return { message: error.message, code: `${status} ${title}`, title };
}

type ErrorMediaType = "json" | "html" | "plain";

/**
 * webob's choice (WSGIHTTPException.generate_response): the Accept header's best of
 * text/html and application/json, text/html on a tie or without the header; text/plain when
 * it accepts neither (the SDK's `Accept: ""` on uploads and patches).
 */
export function errorMediaType(accept: string | undefined): ErrorMediaType {
  if (accept === undefined) return "html";
  const ranges = accept
    .split(",")
    .map((part) => {
      const [range = "", ...params] = part.split(";").map((piece) => piece.trim().toLowerCase());
      const q = params.find((param) => param.startsWith("q="));
      return { range, q: q === undefined ? 1 : Number(q.slice(2)) || 0 };
    })
    .filter(({ range }) => range !== "");
  const quality = (offer: string) =>
    Math.max(0, ...ranges.filter(({ range }) => range === offer || range === "*/*" || range === `${offer.split("/")[0]}/*`).map(({ q }) => q));
  const html = quality("text/html");
  const json = quality("application/json");
  if (html === 0 && json === 0) return "plain";
  return json > html ? "json" : "html";
}

function htmlEscape(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/** The body and Content-Type webob renders for this error in that media type. */
function errorRendering(error: PlanktonError, type: ErrorMediaType): { contentType: string; body: string } {
  const { status, title } = planktonErrors[error.code];
  const statusLine = `${status} ${title}`;
  switch (type) {
    case "json":
      return { contentType: "application/json", body: JSON.stringify(glanceErrorBody(error)) };
    case "html":
      return {
        contentType: "text/html; charset=UTF-8",
        body: `<html>\n <head>\n  <title>${statusLine}</title>\n </head>\n <body>\n  <h1>${statusLine}</h1>\n  ${htmlEscape(error.message)}<br /><br />\n\n\n\n </body>\n</html>`,
      };
    case "plain":
      return { contentType: "text/plain; charset=UTF-8", body: `${statusLine}\n\n${error.message}\n\n   ` };
  }
}

export interface GlanceErrorResponse {
  error: PlanktonError;
  status: number;
  /** The error's own headers (Accept-Patch…), Content-Type not among them. */
  headers: Readonly<Record<string, string>>;
  contentType: string;
  body: string;
}

/**
 * Any thrown value as Glance answers it, apart from any reply: what sendPlanktonError sends,
 * and what serve's framework-error handlers send for `/image` before a route runs. A 401 is
 * what keystonemiddleware answers in front of Glance: Keystone's JSON
 * (`{"error": {code, title, message}}`), whatever the Accept header.
 */
export function glanceErrorResponse(error: unknown, accept: string | undefined): GlanceErrorResponse {
  const mapped = toPlanktonError(error);
  const rendering =
    mapped.status === 401
      ? { contentType: "application/json", body: JSON.stringify({ error: { code: 401, title: "Unauthorized", message: mapped.message } }) }
      : errorRendering(mapped, errorMediaType(accept));
  return { error: mapped, status: mapped.status, headers: mapped.headers, ...rendering };
}

/** The plugin's setErrorHandler: glanceErrorResponse, with the 401's Www-Authenticate challenge. */
export function sendPlanktonError(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const response = glanceErrorResponse(error, request.headers.accept);
  const mapped = response.error;
  if (mapped.status >= 500) request.log.error({ err: error }, "image: internal error");
  else request.log.info({ code: mapped.code, message: mapped.message }, "image: request refused");
  reply.code(response.status).headers(response.headers);
  if (mapped.status === 401) reply.header("www-authenticate", `Keystone uri="${request.protocol}://${request.host}/identity"`);
  return reply.type(response.contentType).send(request.method === "HEAD" ? undefined : response.body);
}
