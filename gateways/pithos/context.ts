/**
 * One request's context: who calls, which account/container/object it names, and the
 * authorisation rules every handler applies the same way:
 *
 *   owner (token's user = path's account)   everything
 *   read / write sharing (effective on the object or an ancestor directory object)
 *                                           that object's data and metadata, nothing else
 *   anyone else                             403 (404 would leak less, but Swift and
 *                                           Pithos+ both answer 403 to a valid token)
 *   no or bad token                         401 with Www-Authenticate (swift.md 1)
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import type { TokenValidator } from "../../identity/index.ts";
import { accessFor, getContainer, type PithosContainer } from "../../db/index.ts";
import type { PithosService } from "./service.ts";
import { PithosError, unauthorized } from "./wire/errors.ts";

export interface PithosCaller {
  userUuid: string;
  userName: string;
}

export interface PithosContext {
  request: FastifyRequest;
  reply: FastifyReply;
  service: PithosService;
  caller: PithosCaller;
  /** The account's user uuid (from `AUTH_<uuid>` or `<uuid>` in the path). */
  account: string;
  containerName: string | undefined;
  objectPath: string | undefined;
  query: URLSearchParams;
  publicUrl: string | undefined;
}

/** X-Auth-Token, or the `X-Auth-Token` query parameter (Pithos+ HTML forms, synnefo.md B.1). */
export async function authenticateRequest(tokens: TokenValidator, request: FastifyRequest, query: URLSearchParams, account: string | undefined): Promise<PithosCaller> {
  const header = request.headers["x-auth-token"];
  const secret = typeof header === "string" && header !== "" ? header : (query.get("X-Auth-Token") ?? undefined);
  // The realm is the account as the path names it (`AUTH_<uuid>`), swift.md 1.
  const realm = account ?? "unknown";
  if (secret === undefined) throw unauthorized(realm);
  const token = await tokens.validate(secret);
  if (token === undefined) {
    request.log.info("object-store: token refused");
    throw unauthorized(realm);
  }
  return { userUuid: token.userUuid, userName: token.userName };
}

export function isOwner(context: PithosContext): boolean {
  return context.caller.userUuid === context.account;
}

/** Account and container operations (and listing everything) are the owner's alone. */
export function requireOwner(context: PithosContext): void {
  if (!isOwner(context)) throw new PithosError("EFORBIDDEN");
}

export async function loadContainer(context: PithosContext, name: string | undefined = context.containerName, account = context.account): Promise<PithosContainer> {
  if (name === undefined) throw new PithosError("ENOT_FOUND");
  const container = await getContainer(context.service.db, account, name);
  // To anyone but the owner a missing container looks like a forbidden one: names in other
  // accounts cannot be probed.
  if (container === undefined) throw new PithosError(context.caller.userUuid === account ? "ENOT_FOUND" : "EFORBIDDEN");
  return container;
}

/** The owner may do anything; others what the object's effective sharing grants. */
export async function requireObjectAccess(context: PithosContext, container: PithosContainer, path: string, needed: "read" | "write"): Promise<void> {
  if (context.caller.userUuid === container.account) return;
  const access = await accessFor(context.service.db, context.caller.userUuid, container.account, container.id, path);
  if (access === "owner" || access === "write" || (needed === "read" && access === "read")) return;
  throw new PithosError("EFORBIDDEN");
}
