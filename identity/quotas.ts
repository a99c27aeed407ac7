/**
 * Astakos's quota API (synnefo.md D.3), mounted by identityPlugin at `/identity/account/v1.0`
 * (Astakos's `<astakos>/account/v1.0`, with identity as the Astakos base):
 *
 *   GET  /quotas                     the caller's    {<uuid>: {resource: {limit, usage, pending, project_*}}}
 *   GET  /service_quotas?user=UUID   a user's        (service)
 *   POST /commissions                issue           (service) → 201 {"serial": n} | 413 overLimit
 *   GET  /commissions                pending serials (service) → [n, …]
 *   GET  /commissions/:serial        one commission  (service)
 *   POST /commissions/:serial/action {"accept": ""} | {"reject": ""}       (service), idempotent
 *   POST /commissions/action         {"accept": [n…], "reject": [n…]}      (service)
 *                                    → {accepted, rejected, failed: [[serial, fault]]}
 *
 * Every route needs X-Auth-Token (requireToken). "Service" routes need the token of a service
 * user: a user named (by name or uuid) in `serviceUsers` (`okeanos serve --service-user`), as
 * Astakos's components authenticate with their own service tokens. Anyone else gets 403.
 *
 * Holdings: only user holdings exist (no projects yet), and every user's base project is the
 * user (uuid = project id). A provision's holder is `user:<uuid>` (or the bare uuid); its
 * source is absent, null or the user's base project `project:<uuid>`. Project holdings
 * (`holder: project:…`) are refused with 400 until projects exist.
 *
 * Idempotency (okeanos's addition to Astakos): an issue body may carry `client_key`; a retry
 * with the same key and provisions returns the same serial. Keys are per service user (stored
 * as `<service uuid>:<key>`), so two services never collide. Without one, the issue is not
 * idempotent.
 *
 * Figures are Astakos's: `usage` is usage_max (accepted + pending increases), `pending` is
 * usage_max − usage_min. `project_*` repeat them: the base project holds what the user does.
 */
import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyRequest } from "fastify";
import {
  acceptCommission,
  getCommission,
  getQuotas,
  issueCommission,
  limits,
  listPendingCommissions,
  rejectCommission,
  resolveCommissions,
  type Commission,
  type Provision,
  type Quota,
} from "../db/index.ts";
import { astakosFaultBody, sendAstakosError, toAstakosFault } from "./astakos-errors.ts";
import { IdentityError } from "./errors.ts";
import { requireToken, type Caller } from "./require-token.ts";
import type { IdentityService } from "./service.ts";

/**
 * A commission of provisionsPerCommissionMax (64) provisions at ~150 bytes each is ~10 KiB; a
 * bulk action of a thousand serials ~10 KiB. 64 KiB bounds both with room.
 */
export const accountBodyBytesMax = 64 * 1024;
/** Serials one bulk action resolves: each is its own transaction, so bound the request's work. */
export const serialsPerActionMax = 1000;
/** Client keys are stored as `<service uuid>:<key>`: 37 characters of the column are ours. */
const clientKeyPrefixLength = 37;

export interface QuotaRoutesOptions {
  service: IdentityService;
  /** Names or uuids of the users whose tokens may use the service routes. */
  serviceUsers: readonly string[];
}

function isServiceCaller(caller: Caller, serviceUsers: readonly string[]): boolean {
  return serviceUsers.includes(caller.user.name) || serviceUsers.includes(caller.user.uuid);
}

function badRequest(message: string): IdentityError {
  return new IdentityError("EBAD_REQUEST", message);
}

function quotaJson(quota: Quota): Record<string, number> {
  const usage = quota.usage + quota.pendingIncrease;
  const pending = quota.pendingIncrease + quota.pendingDecrease;
  return { limit: quota.limit, usage, pending, project_limit: quota.limit, project_usage: usage, project_pending: pending };
}

function quotasJson(userUuid: string, quotas: readonly Quota[]): Record<string, Record<string, Record<string, number>>> {
  return { [userUuid]: Object.fromEntries(quotas.map((quota) => [quota.resource, quotaJson(quota)])) };
}

function commissionJson(commission: Commission, servicePrefix: string): Record<string, unknown> {
  return {
    serial: commission.serial,
    name: commission.name,
    state: commission.state,
    issue_time: new Date(commission.issuedAt).toISOString(),
    resolve_time: commission.resolvedAt === null ? null : new Date(commission.resolvedAt).toISOString(),
    client_key: commission.clientKey.startsWith(servicePrefix) ? commission.clientKey.slice(servicePrefix.length) : null,
    provisions: commission.provisions.map((p) => ({ holder: `user:${p.userUuid}`, source: `project:${p.userUuid}`, resource: p.resource, quantity: p.quantity })),
  };
}

function bodyObject(body: unknown): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw badRequest("the request body must be a JSON object");
  return body as Record<string, unknown>;
}

/** `user:<uuid>` or a bare uuid; source absent, null, or the user's base project. */
function parseProvision(value: unknown, index: number): Provision {
  const provision = bodyObject(value);
  const { holder, source, resource, quantity } = provision;
  if (typeof holder !== "string") throw badRequest(`provisions[${index}].holder must be a string`);
  if (holder.startsWith("project:")) throw badRequest(`provisions[${index}]: project holdings are not supported (charge the user: holder user:<uuid>)`);
  const userUuid = (holder.startsWith("user:") ? holder.slice("user:".length) : holder).toLowerCase();
  if (source !== undefined && source !== null && source !== userUuid && source !== `project:${userUuid}`) {
    throw new IdentityError("ENOT_FOUND", `provisions[${index}]: no holding of ${holder} from source ${String(source)} (only the base project)`);
  }
  if (typeof resource !== "string") throw badRequest(`provisions[${index}].resource must be a string`);
  if (typeof quantity !== "number") throw badRequest(`provisions[${index}].quantity must be an integer`);
  limits.checkUuid("holder", userUuid);
  return { userUuid, resource, quantity };
}

function parseSerial(text: string): number {
  const serial = Number(text);
  if (!/^[1-9][0-9]{0,15}$/.test(text) || !Number.isSafeInteger(serial)) throw new IdentityError("ENOT_FOUND", `no commission ${text}`);
  return serial;
}

function serialList(value: unknown, what: string): number[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((serial) => Number.isSafeInteger(serial) && (serial as number) > 0)) {
    throw badRequest(`${what} must be a list of serials`);
  }
  return value as number[];
}

export async function quotaRoutes(app: FastifyInstance, options: QuotaRoutesOptions): Promise<void> {
  const { service, serviceUsers } = options;
  const { db } = service;
  app.setErrorHandler(sendAstakosError);
  app.setNotFoundHandler((request, reply) => sendAstakosError(new IdentityError("ENOT_FOUND", `no such resource: ${request.method} ${request.url}`), request, reply));
  requireToken(app, service);

  const serviceCaller = (request: FastifyRequest): Caller => {
    const caller = request.caller!;
    if (!isServiceCaller(caller, serviceUsers)) throw new IdentityError("EFORBIDDEN", "this operation needs a service token");
    return caller;
  };
  const routeOptions = { bodyLimit: accountBodyBytesMax };

  app.get("/quotas", async (request) => {
    const { user } = request.caller!;
    return quotasJson(user.uuid, await getQuotas(db, user.uuid));
  });

  app.get("/service_quotas", async (request) => {
    serviceCaller(request);
    const { user } = request.query as { user?: unknown };
    if (typeof user !== "string") throw badRequest("give ?user=<uuid>");
    const userUuid = limits.checkUuid("user", user.toLowerCase());
    return quotasJson(userUuid, await getQuotas(db, userUuid));
  });

  app.post("/commissions", routeOptions, async (request, reply) => {
    const caller = serviceCaller(request);
    const body = bodyObject(request.body);
    if (!Array.isArray(body["provisions"])) throw badRequest("provisions must be a list");
    const provisions = body["provisions"].map(parseProvision);
    const { name, force, auto_accept: autoAccept, client_key: clientKey } = body;
    if (name !== undefined && typeof name !== "string") throw badRequest("name must be a string");
    if (force !== undefined && typeof force !== "boolean") throw badRequest("force must be true or false");
    if (autoAccept !== undefined && typeof autoAccept !== "boolean") throw badRequest("auto_accept must be true or false");
    if (clientKey !== undefined && (typeof clientKey !== "string" || clientKey.length === 0 || clientKey.length > limits.clientKeyLengthMax - clientKeyPrefixLength)) {
      throw badRequest(`client_key must be a string of 1 to ${limits.clientKeyLengthMax - clientKeyPrefixLength} characters`);
    }
    const commission = await issueCommission(
      db,
      {
        clientKey: `${caller.user.uuid}:${clientKey ?? randomUUID()}`,
        provisions,
        ...(name !== undefined && { name }),
        ...(force !== undefined && { force }),
        ...(autoAccept !== undefined && { autoAccept }),
      },
      service.now(),
    );
    return reply.code(201).send({ serial: commission.serial });
  });

  app.get("/commissions", async (request) => {
    serviceCaller(request);
    return (await listPendingCommissions(db)).map((commission) => commission.serial);
  });

  app.get("/commissions/:serial", async (request) => {
    const caller = serviceCaller(request);
    const serial = parseSerial((request.params as { serial: string }).serial);
    const commission = await getCommission(db, serial);
    if (commission === undefined) throw new IdentityError("ENOT_FOUND", `no commission ${serial}`);
    return commissionJson(commission, `${caller.user.uuid}:`);
  });

  app.post("/commissions/:serial/action", routeOptions, async (request) => {
    const caller = serviceCaller(request);
    const serial = parseSerial((request.params as { serial: string }).serial);
    const body = bodyObject(request.body);
    const accept = "accept" in body;
    if (accept === ("reject" in body)) throw badRequest('the body is {"accept": ""} or {"reject": ""}');
    const commission = accept ? await acceptCommission(db, serial, service.now()) : await rejectCommission(db, serial, service.now());
    return commissionJson(commission, `${caller.user.uuid}:`);
  });

  app.post("/commissions/action", routeOptions, async (request) => {
    serviceCaller(request);
    const body = bodyObject(request.body);
    const accept = serialList(body["accept"], "accept");
    const reject = serialList(body["reject"], "reject");
    if (accept.length + reject.length > serialsPerActionMax) throw badRequest(`at most ${serialsPerActionMax} serials per action`);
    const result = await resolveCommissions(db, { accept, reject }, service.now());
    return {
      accepted: result.accepted,
      rejected: result.rejected,
      failed: result.failed.map(({ serial, error }) => [serial, astakosFaultBody(toAstakosFault(error))]),
    };
  });
}
