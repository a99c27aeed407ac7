/**
 * Astakos's error body, for the account API (`/identity/account/v1.0`, quotas.ts): synnefo's
 * snf-django-lib faults, one key naming the fault:
 *
 *   {"overLimit": {"code": 413, "message": "…", "details": "", "data": {…}}}
 *
 * One mapping from DbError codes (db/errors.ts) and IdentityErrors to these faults; fastify's
 * own errors (bad JSON, body too large) go through errors.ts's table first.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { isDbError, type DbErrorCode } from "../db/index.ts";
import { identityErrors, toKeystoneError, type IdentityErrorCode } from "./errors.ts";

export const astakosFaults = {
  badRequest: 400,
  unauthorized: 401,
  forbidden: 403,
  itemNotFound: 404,
  conflict: 409,
  overLimit: 413,
  badMediaType: 415,
  tooManyRequests: 429,
  internalServerError: 500,
} as const;

export type AstakosFaultName = keyof typeof astakosFaults;

export interface AstakosFault {
  name: AstakosFaultName;
  message: string;
  data?: Record<string, unknown>;
}

const dbFaults: Record<DbErrorCode, AstakosFaultName> = {
  ENOT_FOUND: "itemNotFound",
  EEXISTS: "conflict",
  EINVALID: "badRequest",
  // quotaholder_app/exception.py: NoCapacityError and NoQuantityError are both 413 overLimit.
  EQUOTA_EXCEEDED: "overLimit",
  EQUOTA_NEGATIVE: "overLimit",
  ECOMMISSION_RESOLVED: "conflict",
  ECLIENT_KEY_REUSED: "conflict",
  EBUSY: "conflict",
  EUNSUPPORTED: "internalServerError",
  // The object store's; Astakos's quota API never raises them.
  ECONFLICT: "conflict",
  EPRECONDITION: "conflict",
};

const identityFaults: Record<IdentityErrorCode, AstakosFaultName> = {
  EBAD_REQUEST: "badRequest",
  EUNAUTHORIZED: "unauthorized",
  EFORBIDDEN: "forbidden",
  ENOT_FOUND: "itemNotFound",
  EBODY_TOO_LARGE: "overLimit",
  EUNSUPPORTED_MEDIA_TYPE: "badMediaType",
  ETOO_MANY_ATTEMPTS: "tooManyRequests",
  EINTERNAL: "internalServerError",
};

/** A holding's figures as Astakos reports a refused provision (synnefo.md D.3). */
function overLimitData(code: "EQUOTA_EXCEEDED" | "EQUOTA_NEGATIVE", details: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const userUuid = String(details["userUuid"]);
  const usage = Number(details["usage"]);
  const pendingIncrease = Number(details["pendingIncrease"]);
  return {
    provision: { holder: `user:${userUuid}`, source: `project:${userUuid}`, resource: details["resource"], quantity: details["quantity"] },
    name: code === "EQUOTA_EXCEEDED" ? "NoCapacityError" : "NoQuantityError",
    limit: details["limit"],
    // Astakos's usage is usage_max: accepted usage plus pending increases.
    usage: usage + pendingIncrease,
  };
}

export function toAstakosFault(error: unknown): AstakosFault {
  if (isDbError(error)) {
    const name = dbFaults[error.code];
    if (error.code === "EQUOTA_EXCEEDED" || error.code === "EQUOTA_NEGATIVE") {
      return { name, message: error.message, data: overLimitData(error.code, error.details) };
    }
    return { name, message: name === "internalServerError" ? "Internal server error" : error.message };
  }
  const { code, message } = toKeystoneError(error);
  return { name: identityFaults[code], message: identityErrors[code].status >= 500 ? "Internal server error" : message };
}

export function astakosFaultBody(fault: AstakosFault): Record<string, unknown> {
  return { [fault.name]: { code: astakosFaults[fault.name], message: fault.message, details: "", ...(fault.data !== undefined && { data: fault.data }) } };
}

/** The account API's setErrorHandler. */
export function sendAstakosError(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const fault = toAstakosFault(error);
  const status = astakosFaults[fault.name];
  if (status >= 500) request.log.error({ err: error }, "account: internal error");
  else request.log.info({ fault: fault.name, message: fault.message }, "account: request refused");
  if (status === 401) reply.header("www-authenticate", `Keystone uri="${request.protocol}://${request.host}/identity"`);
  return reply.code(status).type("application/json").send(astakosFaultBody(fault));
}
