/**
 * Token validation for the other services, in-process: a fastify onRequest hook that reads
 * X-Auth-Token, validates it against the database and puts the caller on `request.caller`.
 * A missing or bad token throws IdentityError EUNAUTHORIZED, which the service's own error
 * handler turns into its API's 401 (Swift: text, Nova: `{"unauthorized":{…}}`).
 *
 *   app.register(async (pithos) => {
 *     requireToken(pithos, identity);   // every route of this plugin needs a token
 *     pithos.get("/v1/:account", (request) => request.caller!.user.uuid …);
 *   }, { prefix: "/object-store" });
 *
 * Services deployed apart validate over HTTP instead: GET /identity/v3/auth/tokens.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { TokenRecord, User } from "../db/index.ts";
import { unauthorized } from "./errors.ts";
import type { IdentityService } from "./service.ts";
import { singleHeader } from "./wire.ts";

export interface Caller {
  user: User;
  token: TokenRecord;
}

declare module "fastify" {
  interface FastifyRequest {
    /** Set by requireToken's hook; null on routes of plugins that do not require a token. */
    caller: Caller | null;
  }
}

/** The caller of a request, or EUNAUTHORIZED. For services that check tokens route by route. */
export async function authenticate(service: IdentityService, request: FastifyRequest): Promise<Caller> {
  const secret = singleHeader(request, "x-auth-token");
  if (secret === undefined) throw unauthorized();
  const check = await service.checkToken(secret);
  if (check.status !== "valid") {
    request.log.info({ tokenStatus: check.status }, "token refused");
    throw unauthorized();
  }
  return { user: check.user, token: check.token };
}

/** Adds the hook to `app` (and the plugins it registers after this call). */
export function requireToken(app: FastifyInstance, service: IdentityService): void {
  if (!app.hasRequestDecorator("caller")) app.decorateRequest("caller", null);
  app.addHook("onRequest", async (request) => {
    request.caller = await authenticate(service, request);
  });
}
