/**
 * Identity's one table of errors and its one mapping to the wire: Keystone's JSON error body
 * (keystone/exception.py, api-ref "Errors"):
 *
 *   {"error": {"code": 401, "title": "Unauthorized", "message": "…"}}
 *
 * Anything thrown inside the identity plugin comes out in this form: IdentityErrors with their
 * status, fastify's own errors (bad JSON, body too large, schema validation) with theirs, and
 * anything else as a 500 whose message says nothing of the cause.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";

export const identityErrors = {
  EBAD_REQUEST: { status: 400, title: "Bad Request" },
  /** Keystone answers every failed authentication alike, so no answer says whether a user exists. */
  EUNAUTHORIZED: { status: 401, title: "Unauthorized" },
  EFORBIDDEN: { status: 403, title: "Forbidden" },
  ENOT_FOUND: { status: 404, title: "Not Found" },
  EBODY_TOO_LARGE: { status: 413, title: "Request Entity Too Large" },
  EUNSUPPORTED_MEDIA_TYPE: { status: 415, title: "Unsupported Media Type" },
  ETOO_MANY_ATTEMPTS: { status: 429, title: "Too Many Requests" },
  EINTERNAL: { status: 500, title: "Internal Server Error" },
} as const;

export type IdentityErrorCode = keyof typeof identityErrors;

/** keystone/exception.py Unauthorized.message_format. */
export const unauthorizedMessage = "The request you have made requires authentication.";

export class IdentityError extends Error {
  readonly code: IdentityErrorCode;
  /** Seconds, for 429's Retry-After. */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: IdentityErrorCode, message: string, options: { retryAfterSeconds?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "IdentityError";
    this.code = code;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  get status(): number {
    return identityErrors[this.code].status;
  }
}

export function unauthorized(message = unauthorizedMessage): IdentityError {
  return new IdentityError("EUNAUTHORIZED", message);
}

export interface KeystoneErrorBody {
  error: { code: number; title: string; message: string };
}

export function keystoneErrorBody(code: IdentityErrorCode, message: string): KeystoneErrorBody {
  const { status, title } = identityErrors[code];
  return { error: { code: status, title, message } };
}

/**
 * Keystone's body for a status outside identityErrors: the HTTP server's own refusals before
 * any identity route runs (serve/framework-errors.ts: 414 URI too long, 431 headers too large).
 */
export function keystoneStatusErrorBody(status: number, title: string, message: string): KeystoneErrorBody {
  return { error: { code: status, title, message } };
}

/** fastify's error codes (lib/errors.js) that are the client's fault, and what they become. */
const fastifyErrorCodes: Record<string, IdentityErrorCode> = {
  FST_ERR_BAD_URL: "EBAD_REQUEST",
  FST_ERR_CTP_INVALID_JSON_BODY: "EBAD_REQUEST",
  FST_ERR_CTP_EMPTY_JSON_BODY: "EBAD_REQUEST",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "EBAD_REQUEST",
  FST_ERR_CTP_BODY_TOO_LARGE: "EBODY_TOO_LARGE",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "EUNSUPPORTED_MEDIA_TYPE",
  FST_ERR_CTP_INVALID_TYPE: "EUNSUPPORTED_MEDIA_TYPE",
};

/** Maps any error to Keystone's status and body. */
export function toKeystoneError(error: unknown): { code: IdentityErrorCode; message: string; retryAfterSeconds?: number } {
  if (error instanceof IdentityError) {
    return { code: error.code, message: error.message, ...(error.retryAfterSeconds !== undefined && { retryAfterSeconds: error.retryAfterSeconds }) };
  }
  const fastifyError = error as Partial<FastifyError>;
  if (fastifyError.validation !== undefined) {
    // keystone/exception.py SchemaValidationError's wording.
    return { code: "EBAD_REQUEST", message: `Invalid input for field '${fastifyError.validationContext ?? "body"}': ${fastifyError.message}` };
  }
  const mapped = typeof fastifyError.code === "string" ? fastifyErrorCodes[fastifyError.code] : undefined;
  if (mapped !== undefined) return { code: mapped, message: fastifyError.message ?? identityErrors[mapped].title };
  return { code: "EINTERNAL", message: "An unexpected error prevented the server from fulfilling your request." };
}

/** The plugin's setErrorHandler. */
export function sendKeystoneError(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const { code, message, retryAfterSeconds } = toKeystoneError(error);
  const { status } = identityErrors[code];
  if (status >= 500) request.log.error({ err: error }, "identity: internal error");
  else request.log.info({ code, message }, "identity: request refused");
  if (retryAfterSeconds !== undefined) reply.header("retry-after", String(retryAfterSeconds));
  if (status === 401) reply.header("www-authenticate", `Keystone uri="${request.protocol}://${request.host}/identity"`);
  return reply.code(status).type("application/json").send(keystoneErrorBody(code, message));
}
